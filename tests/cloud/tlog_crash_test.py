#!/usr/bin/env python3
"""The transparency log under kill -9 (issue 16).

    tlog_crash_test.py ORCHARD

A child `orchard log append --dir DIR --entry F --repeat N` appends entries in a loop (entry k is
F's bytes, '#', k) and prints one line per append once it is durable; the test SIGKILLs it at a
random moment after its first append, then reopens the log with `orchard log serve` (which cuts a torn tail) and checks,
until at least 1,000 appends have landed and at least 30 kills happened:

- the file holds whole records only (read here, by this script's own parser of the documented
  format), each record's leaf hash is SHA-256(0x00 || entry);
- the served checkpoint's size is the number of records and its root is the RFC 9162 root that
  this script computes from the entries; its Ed25519 signature verifies with the log's vkey (by
  the openssl CLI, on a public key built here from the vkey string; the key id recomputed);
- sizes never decrease, and the entries under an earlier checkpoint are unchanged (the earlier
  root recomputed from today's entries);
- every append the child reported is there, with its bytes; /entries and an inclusion proof
  served for a random index agree with the file.
Entries are from 20 bytes to 70 KB, so a kill can land inside a write of many pages (a torn
record). Real kills rarely land inside a write (it takes microseconds, the fdatasync milliseconds),
so in a quarter of the runs the test also leaves a prefix of a record at the end itself before
reopening. Python 3 standard library and the openssl CLI (the test fails if openssl is missing).
"""
import base64
import hashlib
import json
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ORCHARD = sys.argv[1]
MIN_APPENDS = 1000
MIN_KILLS = 30
TIME_LIMIT_S = 240
failures = []


def check(ok, what):
    if not ok:
        print("FAIL " + what, flush=True)
        failures.append(what)
    return ok


def sha256(b):
    return hashlib.sha256(b).digest()


def leaf_hash(entry):
    return sha256(b"\x00" + entry)


def mth(hashes):
    """RFC 9162 §2.1.1 Merkle tree hash over leaf hashes."""
    n = len(hashes)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return hashes[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return sha256(b"\x01" + mth(hashes[:k]) + mth(hashes[k:]))


def root_from_path(index, size, leaf, proof):
    """RFC 9162 §2.1.3.2, to check a served inclusion proof."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            while fn != 0 and fn & 1 == 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def read_log(path):
    """The documented format: header, then u32 length || leaf hash || entry per record.
    Returns (origin, entries, bytes after the last whole record)."""
    with open(path, "rb") as f:
        data = f.read()
    magic = b"orchard-tlog-v1\n"
    assert data.startswith(magic), "no header"
    end = data.index(b"\n", len(magic))
    origin = data[len(magic):end].decode()
    pos, entries = end + 1, []
    while len(data) - pos >= 36:
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        if n > (1 << 20) or pos + 36 + n > len(data):
            break
        entry = data[pos + 36:pos + 36 + n]
        if leaf_hash(entry) != data[pos + 4:pos + 36]:
            break
        entries.append(entry)
        pos += 36 + n
    return origin, entries, len(data) - pos


class Ed25519Verifier:
    """A C2SP vkey (name+hex(id)+base64(0x01 || key)) checked with the openssl CLI."""

    def __init__(self, vkey, work):
        name, key_id, key64 = vkey.split("+", 2)
        raw = base64.b64decode(key64)
        assert raw[0] == 1 and len(raw) == 33, "not an Ed25519 vkey"
        self.name, self.key_id, self.public = name, bytes.fromhex(key_id), raw[1:]
        check(sha256(name.encode() + b"\n\x01" + self.public)[:4] == self.key_id, "the vkey's id is its key's")
        der = bytes.fromhex("302a300506032b6570032100") + self.public  # SubjectPublicKeyInfo, Ed25519
        self.pem = os.path.join(work, "log-public.pem")
        with open(self.pem, "w") as f:
            f.write("-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n")
        self.work = work

    def verify(self, message, signature):
        msg, sig = os.path.join(self.work, "msg"), os.path.join(self.work, "sig")
        with open(msg, "wb") as f:
            f.write(message)
        with open(sig, "wb") as f:
            f.write(signature)
        r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", self.pem, "-rawin", "-in", msg,
                            "-sigfile", sig], capture_output=True)
        return r.returncode == 0

    def verify_note(self, note):
        """The checkpoint's text if a signature line by this key verifies over it, else None."""
        text, _, signatures = note.rpartition("\n\n")
        text += "\n"
        for line in signatures.splitlines():
            prefix = "\u2014 " + self.name + " "
            if not line.startswith(prefix):
                continue
            raw = base64.b64decode(line[len(prefix):])
            if raw[:4] == self.key_id and self.verify(text.encode(), raw[4:]):
                return text
        return None


class Server:
    """`orchard log serve` on a free port, for one reopening."""

    def __init__(self, log_dir, key):
        self.proc = subprocess.Popen([ORCHARD, "log", "serve", "--dir", log_dir, "--key", key, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError("log serve did not start: " + line + self.proc.stderr.read())
        self.url = line.split()[-1]

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return r.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)


def main():
    if shutil.which("openssl") is None:
        print("FAIL the openssl CLI is not installed (apt install openssl): it checks the signatures")
        return 1
    work = tempfile.mkdtemp(prefix="orchard-tlog-crash-")
    try:
        return run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work):
    seed = int(os.environ.get("TLOG_CRASH_SEED", time.time_ns() % 1000003))
    print(f"seed {seed} (TLOG_CRASH_SEED to repeat)", flush=True)
    rng = random.Random(seed)
    key = os.path.join(work, "log.key")
    vkey = subprocess.run([ORCHARD, "key", "generate", "--name", "crash.example/log", "--out", key],
                          capture_output=True, text=True, check=True).stdout.strip()
    verifier = Ed25519Verifier(vkey, work)
    log_dir = os.path.join(work, "log")
    log_file = os.path.join(log_dir, "log")

    # The checkpoint check can fail: a note whose text was changed is refused.
    server = Server(log_dir, key)  # creates the log
    note = server.get("/checkpoint").decode()
    check(server.stop() == 0, "log serve exits 0 on SIGTERM")
    check(verifier.verify_note(note) is not None, "the empty log's checkpoint verifies")
    check(verifier.verify_note(note.replace("\n0\n", "\n1\n", 1)) is None, "a changed checkpoint does not verify")

    history = []  # (size, root) of every checkpoint seen
    acked = {}    # index -> bytes the child reported as appended
    kills = torn = simulated = runs = 0
    started = time.monotonic()
    while len(history) == 0 or history[-1][0] < MIN_APPENDS or kills < MIN_KILLS:
        if time.monotonic() - started > TIME_LIMIT_S:
            check(False, f"time limit: {history[-1][0] if history else 0} appends and {kills} kills in {TIME_LIMIT_S} s")
            break
        runs += 1
        base = f"run {runs} ".encode() + bytes(rng.randrange(256) for _ in range(16))
        base += b"x" * rng.choice([0, 0, 500, 5000, 70000])
        entry_file = os.path.join(work, "entry")
        with open(entry_file, "wb") as f:
            f.write(base)
        child = subprocess.Popen([ORCHARD, "log", "append", "--dir", log_dir, "--entry", entry_file,
                                  "--repeat", "1000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # The random moment is counted from the child's first durable append, not from its start:
        # under the sanitizers a start takes most of a second, and a kill during it tests nothing.
        # (Waiting for the output without reading it: communicate reads the pipe itself.)
        select.select([child.stdout.fileno()], [], [], 60)
        time.sleep(rng.uniform(0.0, 0.08))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate()
        if not check(child.returncode == -signal.SIGKILL, f"run {runs}: the child was killed (rc {child.returncode}, "
                                                          f"{err.decode(errors='replace')[:300]})"):
            break
        kills += 1
        lines = out.decode().split("\n")[:-1]  # a line cut by the kill has no newline
        for k, line in enumerate(lines):
            acked[json.loads(line)["index"]] = base + b"#" + str(k).encode()

        _, _, tail_before = read_log(log_file)
        torn += tail_before > 0
        if tail_before == 0 and rng.random() < 0.25:
            # What a kill inside a write leaves, made here since real kills rarely land in one (the
            # write takes microseconds, the fdatasync milliseconds): a prefix of a record.
            entry = b"never appended " + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9000)))
            record = struct.pack(">I", len(entry)) + leaf_hash(entry) + entry
            with open(log_file, "ab") as f:
                f.write(record[:rng.randrange(1, len(record))])
            simulated += 1
        server = Server(log_dir, key)
        note = server.get("/checkpoint").decode()
        origin, entries, tail = read_log(log_file)  # serve cut the torn tail when it opened the log
        size = len(entries)
        sample = rng.randrange(size) if size else None
        if sample is not None:
            served_entry = server.get(f"/entries/{sample}")
            proof = json.loads(server.get(f"/proof/inclusion?index={sample}&size={size}"))
        check(server.stop() == 0, f"run {runs}: log serve exits 0 on SIGTERM")

        text = verifier.verify_note(note)
        if not check(text is not None, f"run {runs}: the checkpoint verifies with the log's vkey"):
            break
        lines = text.split("\n")
        cp_origin, cp_size, cp_root = lines[0], int(lines[1]), base64.b64decode(lines[2])
        hashes = [leaf_hash(e) for e in entries]
        check(tail == 0, f"run {runs}: after reopening, the file holds whole records only ({tail} bytes more)")
        check(cp_origin == origin == "crash.example/log", f"run {runs}: origin")
        check(cp_size == size, f"run {runs}: checkpoint size {cp_size} is the {size} records in the file")
        check(cp_root == mth(hashes), f"run {runs}: the checkpoint's root is the root of the file's entries")
        for old_size, old_root in history[-1:]:
            check(size >= old_size, f"run {runs}: size {size} is not below the last one, {old_size}")
            check(mth(hashes[:old_size]) == old_root, f"run {runs}: the first {old_size} entries are unchanged")
        for index, entry in acked.items():
            if not check(index < size and entries[index] == entry, f"run {runs}: acknowledged append {index} is there"):
                break
        if sample is not None:
            check(served_entry == entries[sample], f"run {runs}: /entries/{sample} is the file's")
            path = [base64.b64decode(h) for h in proof["hashes"]]
            check(root_from_path(sample, size, hashes[sample], path) == cp_root,
                  f"run {runs}: the inclusion proof of {sample} leads to the root")
        history.append((size, cp_root))
        if failures:
            break

    seconds = time.monotonic() - started
    size = history[-1][0] if history else 0
    print(f"{size} appends landed ({len(acked)} acknowledged) in {runs} runs, {kills} kills, "
          f"{torn} torn tails left by kills and {simulated} written here cut, {seconds:.1f} s", flush=True)
    check(size >= MIN_APPENDS, f"at least {MIN_APPENDS} appends landed")
    if failures:
        print(f"{len(failures)} checks failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
