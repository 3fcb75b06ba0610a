#!/usr/bin/env python3
"""Holds Orchard's logits against a PEFT adapter applied the way PEFT applies it, with no
Orchard code and no transformers/peft/safetensors packages: the Hugging Face model folder
(config.json + model.safetensors) is read with the standard library and torch.frombuffer, each
target module's weight becomes W + (lora_alpha / r) B A (alpha / sqrt(r) under use_rslora, as
PEFT does), and a llama/qwen2/qwen3 forward written here runs in float64.

    peft_check.py --hf DIR --adapter DIR --tokens 1,2,3 --logits FILE.f32 [--tol 1e-4]

FILE.f32 holds [n_tokens, vocab] little-endian float32, as `orchard logits` writes it (for
example for the base GGUF with the adapter merged into it). Exits 0 with a one-line report when
max |torch - orchard| <= tol, 1 (printing the difference) otherwise, 2 on bad input.
Needs python3-torch (Debian's is /usr/bin/python3's).
"""
import argparse
import json
import math
import struct
import sys
from pathlib import Path

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def die(message):
    print(f"peft_check: {message}", file=sys.stderr)
    sys.exit(2)


def read_safetensors(path):
    """{name: float64 tensor} from one safetensors file."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        die(f"{path}: truncated (no header length)")
    (length,) = struct.unpack("<Q", data[:8])
    if 8 + length > len(data):
        die(f"{path}: header length {length} exceeds the file")
    header = json.loads(data[8:8 + length])
    body = memoryview(data)[8 + length:]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in DTYPES:
            die(f"{path}: tensor {name} has dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        dtype = DTYPES[entry["dtype"]]
        t = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype) if end > begin else torch.zeros(0, dtype=dtype)
        out[name] = t.reshape(entry["shape"]).to(torch.float64)
    return out


def read_model(folder):
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        weights = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            weights.update(read_safetensors(folder / shard))
        return weights
    return read_safetensors(folder / "model.safetensors")


def apply_peft(weights, adapter_dir):
    """Adds scale * B @ A to each target weight; returns (modules, r, alpha)."""
    adapter_dir = Path(adapter_dir)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    if cfg.get("peft_type") != "LORA":
        die(f"{adapter_dir}: peft_type is {cfg.get('peft_type')!r}, not LORA")
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    if cfg.get("fan_in_fan_out") or cfg.get("use_dora") or cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        die(f"{adapter_dir}: fan_in_fan_out, DoRA and per-module patterns are not handled here")
    targets = set(cfg["target_modules"])
    tensors = read_safetensors(adapter_dir / "adapter_model.safetensors")
    prefix = "base_model.model."
    pairs = {}
    for name, t in tensors.items():
        if not name.startswith(prefix) or not (name.endswith(".lora_A.weight") or name.endswith(".lora_B.weight")):
            die(f"{adapter_dir}: unexpected tensor {name}")
        module, which = name[len(prefix):-len(".lora_A.weight")], name[-len("A.weight")]
        if module.split(".")[-1] not in targets:
            die(f"{adapter_dir}: {name} is not under target_modules {sorted(targets)}")
        pairs.setdefault(module, {})[which] = t
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            die(f"{adapter_dir}: {module} lacks lora_A or lora_B")
        w = module + ".weight"
        if w not in weights:
            die(f"{adapter_dir}: {module} is not a module of the model")
        a, b = ab["A"], ab["B"]
        if a.shape[0] != r or b.shape[1] != r or (b.shape[0], a.shape[1]) != tuple(weights[w].shape):
            die(f"{adapter_dir}: {module}: A {list(a.shape)} and B {list(b.shape)} do not fit {list(weights[w].shape)}")
        weights[w] = weights[w] + scale * (b @ a)
    return len(pairs), r, alpha


def inv_freq(cfg, head_dim):
    theta = cfg.get("rope_theta", 10000.0)
    freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    scaling = cfg.get("rope_scaling")
    if not scaling:
        return freq
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "default":
        return freq
    if kind != "llama3":
        die(f"rope_scaling {kind!r} is not handled here")
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / freq
    scaled = torch.where(wavelen > old / low, freq / factor, freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / high) & (wavelen <= old / low)
    return torch.where(medium, smoothed, scaled)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(cfg, w, tokens):
    """Hugging Face's llama/qwen2/qwen3 forward (half-split RoPE, GQA, SwiGLU) in float64."""
    arch = cfg.get("model_type", "llama")
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KV, eps = cfg.get("num_key_value_heads", H), cfg.get("rms_norm_eps", 1e-6)
    hd = cfg.get("head_dim") or D // H
    T = len(tokens)
    pos = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq(cfg, hd)[None, :]
    cos, sin = torch.cat([pos.cos()] * 2, -1), torch.cat([pos.sin()] * 2, -1)

    def rope(x):  # [heads, T, hd]
        half = torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)
        return x * cos + half * sin

    def linear(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = linear(h, p + "self_attn.q_proj").view(T, H, hd).transpose(0, 1)
        k = linear(h, p + "self_attn.k_proj").view(T, KV, hd).transpose(0, 1)
        v = linear(h, p + "self_attn.v_proj").view(T, KV, hd).transpose(0, 1)
        if arch == "qwen3":
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, -1) @ v
        x = x + linear(att.transpose(0, 1).reshape(T, H * hd), p + "self_attn.o_proj")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = linear(h, p + "mlp.gate_proj"), linear(h, p + "mlp.up_proj")
        x = x + linear(torch.nn.functional.silu(gate) * up, p + "mlp.down_proj")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings"):
        head = w["model.embed_tokens.weight"]
    return x @ head.T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hf", required=True, help="Hugging Face model folder (config.json, model.safetensors)")
    ap.add_argument("--adapter", required=True, help="PEFT adapter folder (adapter_config.json, adapter_model.safetensors)")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--logits", required=True, help="Orchard's logits, [n_tokens, vocab] float32")
    ap.add_argument("--tol", type=float, default=1e-4, help="bound on max |torch - orchard| (default 1e-4)")
    args = ap.parse_args()

    torch.set_grad_enabled(False)
    cfg = json.loads((Path(args.hf) / "config.json").read_text())
    if cfg.get("model_type") not in ("llama", "qwen2", "qwen3") or cfg.get("hidden_act", "silu") != "silu":
        die(f"{args.hf}: model_type {cfg.get('model_type')!r} / hidden_act {cfg.get('hidden_act')!r} not handled")
    tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
    if not tokens or min(tokens) < 0 or max(tokens) >= cfg["vocab_size"]:
        die(f"token ids must lie in [0, {cfg['vocab_size']})")
    weights = read_model(args.hf)
    base = forward(cfg, weights, tokens)
    modules, r, alpha = apply_peft(weights, args.adapter)
    ours = forward(cfg, weights, tokens)

    raw = Path(args.logits).read_bytes()
    expected = len(tokens) * cfg["vocab_size"] * 4
    if len(raw) != expected:
        die(f"{args.logits}: {len(raw)} bytes, expected {expected} ([{len(tokens)}, {cfg['vocab_size']}] float32)")
    theirs = torch.frombuffer(bytearray(raw), dtype=torch.float32).to(torch.float64).view(len(tokens), -1)
    diff = (ours - theirs).abs().max().item()
    moved = (ours - base).abs().max().item()
    report = (f"{len(tokens)} tokens x {cfg['vocab_size']} logits, adapter of {modules} modules (r {r}, alpha {alpha}) "
              f"moves logits by up to {moved:.3g}; max |torch - orchard| = {diff:.3g} (bound {args.tol:g})")
    if not diff <= args.tol:
        print(f"peft_check: FAIL: {report}")
        return 1
    print(f"peft_check: ok: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
