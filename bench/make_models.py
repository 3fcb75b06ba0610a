#!/usr/bin/env python3
"""Random-weight GGUF models at real shapes, for benchmarks that need no download.

    bench/make_models.py --shape qwen2.5-1.5b --type q4_0 --out /tmp/models/qwen2.5-1.5b-q4_0.gguf

Shapes: qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-3b, llama3.2-1b. Types: f16, q8_0, q4_0, q4_k_m, q5_k_m,
q3_k_m, q2_k.
The weights are random bytes with finite, moderate scales: speed does not depend on their values,
and every engine reads the same file. Q4_K_M uses llama.cpp's mix of Q4_K and Q6_K (output /
tied embedding, and attn_v / ffn_down on the layers it gives more bits), written directly; Q5_K_M
the same with Q5_K in Q4_K's place; Q3_K_M and Q2_K llama.cpp's mixes of Q3_K or Q2_K with Q4_K, Q5_K
and Q6_K (IQ4_NL for their rows that are not whole super-blocks, as llama.cpp writes them).
The tokenizer (needed by llama.cpp to load the file) comes from ../shared/tokenizers.
Standard library only, so it runs anywhere Python 3 does.
"""
import argparse
import json
import os
import random
import struct
import sys

SHAPES = {
    # hidden, layers, heads, kv heads, ffn, vocab, arch, rope theta, tokenizer
    "qwen2.5-0.5b": dict(dim=896, layers=24, heads=14, kv=2, ffn=4864, vocab=151936, arch="qwen2", theta=1e6, tok="qwen3"),
    "qwen2.5-1.5b": dict(dim=1536, layers=28, heads=12, kv=2, ffn=8960, vocab=151936, arch="qwen2", theta=1e6, tok="qwen3"),
    "qwen2.5-3b": dict(dim=2048, layers=36, heads=16, kv=2, ffn=11008, vocab=151936, arch="qwen2", theta=1e6, tok="qwen3"),
    "llama3.2-1b": dict(dim=2048, layers=16, heads=32, kv=8, ffn=8192, vocab=128256, arch="llama", theta=5e5, tok="llama3"),
}

# GGUF type ids and block geometry: (id, elements per block, bytes per block, byte offsets of f16 scales)
TYPES = {
    "F32": (0, 1, 4, None), "F16": (1, 1, 2, None), "Q4_0": (2, 32, 18, [0]), "Q5_0": (6, 32, 22, [0]),
    "Q5_1": (7, 32, 24, [0, 2]), "Q8_0": (8, 32, 34, [0]), "Q4_K": (12, 256, 144, [0, 2]),
    "Q5_K": (13, 256, 176, [0, 2]), "Q6_K": (14, 256, 210, [208]), "Q3_K": (11, 256, 110, [108]),
    "Q2_K": (10, 256, 84, [80, 82]), "IQ4_NL": (20, 32, 18, [0]),
}
ALIGN = 32

def f16_bits(x):
    return struct.unpack("<H", struct.pack("<e", x))[0]

def random_bytes(n, rng):
    # randbytes draws n*8 bits in one integer, which overflows for multi-GB tensors: go by chunks.
    chunk = 16 << 20
    buf = bytearray()
    while len(buf) < n:
        buf += rng.randbytes(min(chunk, n - len(buf)))
    return buf

def random_tensor_bytes(ttype, n_elements, rng):
    tid, be, bb, scales = TYPES[ttype]
    n_blocks = n_elements // be
    if ttype == "F32":
        return struct.pack(f"<{n_elements}f", *(rng.uniform(-1, 1) for _ in range(n_elements)))
    buf = random_bytes(n_blocks * bb, rng)
    if ttype == "F16":
        # Keep magnitudes between ~2^-9 and ~2^-4 (exponent fields 6..11): finite, like trained weights.
        table = bytes(((b & 0x80) | (((6 + (b & 0x7f) % 6) << 2) | (b & 3))) for b in range(256))
        buf[1::2] = bytes(buf[1::2]).translate(table)
        return bytes(buf)
    for off in scales:
        # One random step per tensor, varied per block by the low byte; always finite and small.
        step = f16_bits(rng.uniform(0.001, 0.004))
        buf[off::bb] = bytes([step & 0xff]) * n_blocks
        buf[off + 1::bb] = bytes([step >> 8]) * n_blocks
    return bytes(buf)

def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2

def matrix_type(ftype, name, layer, n_layers, n_in):
    if ftype == "f16": t = "F16"
    elif ftype == "q8_0": t = "Q8_0"
    elif ftype == "q4_0": t = "Q6_K" if name in ("output", "token_embd") else "Q4_0"
    elif ftype == "q3_k_m":  # llama.cpp's mix for a model that is not Falcon
        t = "Q3_K"
        if name in ("output", "token_embd"): t = "Q6_K"
        elif name == "attn_v": t = "Q5_K" if layer < 2 else "Q4_K"
        elif name == "ffn_down": t = "Q5_K" if layer < n_layers // 16 else "Q4_K"
        elif name == "attn_output": t = "Q4_K"
    elif ftype == "q2_k":  # llama.cpp's mix for a model that is not Falcon, with 4+ query heads per KV head
        t = "Q2_K"
        if name in ("output", "token_embd"): t = "Q6_K"
        elif name == "attn_v": t = "Q4_K"
        elif name in ("ffn_down", "attn_output"): t = "Q3_K"
    else:  # q4_k_m, q5_k_m
        t = "Q4_K" if ftype == "q4_k_m" else "Q5_K"
        if name in ("output", "token_embd"): t = "Q6_K"
        elif name in ("attn_v", "ffn_down") and use_more_bits(layer, n_layers): t = "Q6_K"
    # K-quants need rows of whole 256-element super-blocks; llama.cpp falls back like this.
    if t in ("Q2_K", "Q3_K") and n_in % 256 != 0:
        t = "IQ4_NL"
    if t in ("Q4_K", "Q5_K", "Q6_K") and n_in % 256 != 0:
        t = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}[t]
    return t

def tokenizer_metadata(name, n_vocab, shared):
    tok = json.load(open(os.path.join(shared, "tokenizers", name, "tokenizer.json"), encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    tokens = [""] * n_vocab
    types = [1] * n_vocab
    for text, i in vocab.items():
        if i < n_vocab: tokens[i] = text
    for added in tok["added_tokens"]:
        if added["id"] < n_vocab:
            tokens[added["id"]] = added["content"]
            types[added["id"]] = 3 if added.get("special") else 4
    for i in range(n_vocab):
        if not tokens[i]:
            tokens[i] = f"[PAD{i}]"
            types[i] = 5  # unused
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    meta = [("tokenizer.ggml.model", "str", "gpt2"),
            ("tokenizer.ggml.pre", "str", "qwen2" if name == "qwen3" else "llama-bpe"),
            ("tokenizer.ggml.tokens", "arr_str", tokens),
            ("tokenizer.ggml.token_type", "arr_i32", types),
            ("tokenizer.ggml.merges", "arr_str", merges)]
    if name == "qwen3":
        meta += [("tokenizer.ggml.bos_token_id", "u32", 151643), ("tokenizer.ggml.eos_token_id", "u32", 151645),
                 ("tokenizer.ggml.padding_token_id", "u32", 151643), ("tokenizer.ggml.add_bos_token", "bool", False)]
    else:
        meta += [("tokenizer.ggml.bos_token_id", "u32", 128000), ("tokenizer.ggml.eos_token_id", "u32", 128009)]
    return meta

def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b

def gguf_kv(key, kind, value):
    out = gguf_string(key)
    if kind == "str": return out + struct.pack("<I", 8) + gguf_string(value)
    if kind == "u32": return out + struct.pack("<II", 4, value)
    if kind == "f32": return out + struct.pack("<If", 6, value)
    if kind == "bool": return out + struct.pack("<IB", 7, 1 if value else 0)
    if kind == "arr_str":
        return out + struct.pack("<IIQ", 9, 8, len(value)) + b"".join(gguf_string(v) for v in value)
    if kind == "arr_i32":
        return out + struct.pack("<IIQ", 9, 5, len(value)) + struct.pack(f"<{len(value)}i", *value)
    raise ValueError(kind)

def llama3_rope_factors(theta, dims, factor=32.0, low=1.0, high=4.0, orig=8192.0):
    import math
    out = []
    for i in range(dims // 2):
        freq = theta ** (-2.0 * i / dims)
        wavelen = 2 * math.pi / freq
        if wavelen < orig / high: out.append(1.0)
        elif wavelen > orig / low: out.append(factor)
        else:
            smooth = (orig / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--type", required=True, choices=["f16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q3_k_m", "q2_k"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    s = SHAPES[args.shape]
    rng = random.Random(args.seed)
    arch, dim, hd = s["arch"], s["dim"], s["dim"] // s["heads"]
    q_dim, kv_dim = s["heads"] * hd, s["kv"] * hd

    tensors = []  # (name, shape {fastest first}, type, payload-or-None)
    def add(name, shape, ttype, payload=None): tensors.append((name, shape, ttype, payload))
    add("token_embd.weight", [dim, s["vocab"]], matrix_type(args.type, "token_embd", 0, s["layers"], dim))
    add("output_norm.weight", [dim], "F32")
    if arch == "llama": add("rope_freqs.weight", [hd // 2], "F32", struct.pack(f"<{hd // 2}f", *llama3_rope_factors(s["theta"], hd)))
    for l in range(s["layers"]):
        p = f"blk.{l}."
        mt = lambda n, n_in: matrix_type(args.type, n, l, s["layers"], n_in)
        add(p + "attn_norm.weight", [dim], "F32")
        add(p + "attn_q.weight", [dim, q_dim], mt("attn_q", dim))
        add(p + "attn_k.weight", [dim, kv_dim], mt("attn_k", dim))
        add(p + "attn_v.weight", [dim, kv_dim], mt("attn_v", dim))
        if arch == "qwen2":
            add(p + "attn_q.bias", [q_dim], "F32")
            add(p + "attn_k.bias", [kv_dim], "F32")
            add(p + "attn_v.bias", [kv_dim], "F32")
        add(p + "attn_output.weight", [q_dim, dim], mt("attn_output", q_dim))
        add(p + "ffn_norm.weight", [dim], "F32")
        add(p + "ffn_gate.weight", [dim, s["ffn"]], mt("ffn_gate", dim))
        add(p + "ffn_up.weight", [dim, s["ffn"]], mt("ffn_up", dim))
        add(p + "ffn_down.weight", [s["ffn"], dim], mt("ffn_down", s["ffn"]))

    a = arch + "."
    meta = [("general.architecture", "str", arch), ("general.name", "str", f"random {args.shape} {args.type}"),
            ("general.alignment", "u32", ALIGN),
            (a + "context_length", "u32", 32768 if arch == "qwen2" else 131072),
            (a + "embedding_length", "u32", dim), (a + "block_count", "u32", s["layers"]),
            (a + "feed_forward_length", "u32", s["ffn"]), (a + "attention.head_count", "u32", s["heads"]),
            (a + "attention.head_count_kv", "u32", s["kv"]), (a + "rope.freq_base", "f32", s["theta"]),
            (a + "attention.layer_norm_rms_epsilon", "f32", 1e-6 if arch == "qwen2" else 1e-5)]
    if arch == "llama":
        meta += [(a + "rope.dimension_count", "u32", hd), (a + "attention.key_length", "u32", hd),
                 (a + "attention.value_length", "u32", hd)]
    meta += tokenizer_metadata(s["tok"], s["vocab"], args.shared)

    def nbytes(shape, ttype):
        n = 1
        for d in shape: n *= d
        _, be, bb, _ = TYPES[ttype]
        return n // be * bb

    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)) + b"".join(gguf_kv(*m) for m in meta)
    offset = 0
    infos = []
    for name, shape, ttype, _ in tensors:
        infos.append(gguf_string(name) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *shape) +
                     struct.pack("<IQ", TYPES[ttype][0], offset))
        offset += (nbytes(shape, ttype) + ALIGN - 1) // ALIGN * ALIGN
    head = header + b"".join(infos)
    head += b"\0" * ((-len(head)) % ALIGN)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(head)
        for name, shape, ttype, payload in tensors:
            n = 1
            for d in shape: n *= d
            if payload is None:
                if ttype == "F32":  # norms near 1, small biases
                    base = 1.0 if name.endswith("norm.weight") else 0.0
                    payload = struct.pack(f"<{n}f", *(base + rng.uniform(-0.1, 0.1) for _ in range(n)))
                else:
                    payload = random_tensor_bytes(ttype, n, rng)
            f.write(payload)
            f.write(b"\0" * ((-len(payload)) % ALIGN))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {os.path.getsize(args.out) / 2**20:.0f} MiB", file=sys.stderr)

if __name__ == "__main__":
    main()
