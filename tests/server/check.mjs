// The node clients' one assertion runner: runs a named check, prints "ok" with its time, or the
// failure's stack and exits non-zero, so the first failed check fails the client.
export async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    console.error(`FAIL ${name}: ${e.stack || e}`);
    process.exit(1);
  }
}
