// transformers.js peer for bench/tokenizer_bench.sh: encodes a text file with a local
// tokenizer.json folder (offline) and prints the best MB/s of three runs.
import { env, AutoTokenizer } from '@huggingface/transformers';
import fs from 'fs';
import path from 'path';
const [dir, file] = process.argv.slice(2);
env.allowRemoteModels = false;
env.localModelPath = path.dirname(path.resolve(dir)) + '/';
const tok = await AutoTokenizer.from_pretrained(path.basename(path.resolve(dir)));
const text = fs.readFileSync(file, 'utf8');
let best = 1e30, n = 0;
for (let i = 0; i < 3; i++) {
  const t0 = process.hrtime.bigint();
  n = tok.encode(text, { add_special_tokens: false }).length;
  best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
}
console.log(`transformers.js: ${Buffer.byteLength(text)} bytes -> ${n} tokens, best of 3: ${best.toFixed(3)} s, ${(Buffer.byteLength(text) / best / 1e6).toFixed(2)} MB/s`);
