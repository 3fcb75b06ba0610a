#!/usr/bin/env python3
"""A copy of a GGUF model with only its first N layers: a draft model for speculative decoding
that shares the target's vocabulary, embedding and output matrix (what issue 20's benchmark uses
until the trainer distills a draft).

    bench/truncate_gguf.py --in /tmp/models/qwen2.5-1.5b-q4_0.gguf --layers 4 --out /tmp/models/draft.gguf

Metadata is copied with `<arch>.block_count` set to N; tensors of layers N and beyond are left out
and the rest are re-laid at the file's alignment. Standard library only.
"""
import argparse
import re
import shutil
import struct

SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class Reader:
    def __init__(self, f):
        self.f = f

    def take(self, fmt):
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.f.read(size))[0]

    def string(self):
        return self.f.read(self.take("Q"))

    def value(self, kind):
        if kind in SCALAR:
            return self.take(SCALAR[kind])
        if kind == 8:
            return self.string()
        if kind == 9:
            inner, count = self.take("I"), self.take("Q")
            return (inner, [self.value(inner) for _ in range(count)])
        raise SystemExit(f"unknown GGUF value type {kind}")


def write_value(out, kind, value):
    if kind in SCALAR:
        out.write(struct.pack("<" + SCALAR[kind], value))
    elif kind == 8:
        out.write(struct.pack("<Q", len(value)) + value)
    else:
        inner, items = value
        out.write(struct.pack("<IQ", inner, len(items)))
        for item in items:
            write_value(out, inner, item)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--in", dest="src", required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.src, "rb") as f:
        r = Reader(f)
        if f.read(4) != b"GGUF":
            raise SystemExit(f"{a.src}: not a GGUF file")
        version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
        kvs = []
        for _ in range(n_kv):
            key = r.string()
            kind = r.take("I")
            kvs.append((key, kind, r.value(kind)))
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            dims = [r.take("Q") for _ in range(r.take("I"))]
            tensors.append((name, dims, r.take("I"), r.take("Q")))
        meta = {k: v for k, _, v in kvs}
        align = meta.get(b"general.alignment", 32)
        data_start = (f.tell() + align - 1) // align * align
        arch = meta[b"general.architecture"].decode()
        layers = meta[f"{arch}.block_count".encode()]
        if not 1 <= a.layers <= layers:
            raise SystemExit(f"--layers must be between 1 and {layers}")
        # Each tensor's size: up to the next tensor's offset (or the end of the file).
        f.seek(0, 2)
        end = f.tell() - data_start
        by_offset = sorted(t[3] for t in tensors) + [end]
        size = {off: by_offset[i + 1] - off for i, off in enumerate(by_offset[:-1])}
        kept = [t for t in tensors if not (m := re.match(rb"blk\.(\d+)\.", t[0])) or int(m.group(1)) < a.layers]
        with open(a.out, "wb") as out:
            out.write(b"GGUF" + struct.pack("<IQQ", version, len(kept), len(kvs)))
            for key, kind, value in kvs:
                if key == f"{arch}.block_count".encode():
                    value = a.layers
                out.write(struct.pack("<Q", len(key)) + key + struct.pack("<I", kind))
                write_value(out, kind, value)
            offset, placed = 0, []
            for name, dims, kind, old in kept:
                out.write(struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims)))
                out.write(b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", kind, offset))
                placed.append((old, offset))
                offset = (offset + size[old] + align - 1) // align * align
            out.write(b"\0" * ((-out.tell()) % align))
            base = out.tell()
            for old, new in placed:
                out.seek(base + new)
                f.seek(data_start + old)
                remaining = size[old]
                while remaining:
                    chunk = f.read(min(remaining, 64 << 20))
                    out.write(chunk)
                    remaining -= len(chunk)
            out.truncate(base + offset)
    print(f"{a.out}: the first {a.layers} of {layers} layers, {len(kept)} of {len(tensors)} tensors")


if __name__ == "__main__":
    main()
