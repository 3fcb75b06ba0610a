#!/usr/bin/python3
"""Training speed of Orchard against PyTorch on this CPU, the same model, batch and sequence (issue 17).

    /usr/bin/python3 bench/train_vs_torch.py   (Debian's python, which has python3-torch)
    [--orchard build/bin/orchard] [--runs 3] [--steps 6]

For two shapes (stories260K's, from the real model file; and a llama of dim 512, 8 layers, 8 heads,
8 KV heads, FFN 1376, vocabulary 512, about 26M parameters, from `orchard train init`), and for full
fine-tuning and LoRA (rank 16 on q, k, v, o, gate, up, down), trains `--steps` AdamW steps of 8
sequences of 256 tokens with `orchard train` and with a PyTorch llama of the same shape (Debian's
python3-torch, float32, 2 threads), and prints the tokens/s of both and the ratio. Runs alternate
(Orchard, PyTorch, Orchard, ...) so that the neighbours' load falls on both; each run's figure is the
median over its steps after the first (the first pays for allocation and warm-up in both).
Needs nothing else running: this is a benchmark, not a test.

Debian's torch calls the system's libblas.so.3, which is netlib's reference BLAS unless a faster one
provides it: install libopenblas0-pthread (measured here: a 2048x512x1376 product at 5.6 GFLOP/s on
the reference BLAS, 70 on OpenBLAS). The header line says which one this run's PyTorch used.
"""
import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STORIES = os.path.join(ROOT, "models", "stories260K", "stories260K.gguf")
BATCH, SEQ = 8, 256
TARGETS = "q,k,v,o,gate,up,down"
SHAPES = {
    # dim, layers, heads, kv heads, ffn, vocab
    "stories260K": dict(dim=64, layers=5, heads=8, kv=4, ffn=172, vocab=512),
    "llama-26M": dict(dim=512, layers=8, heads=8, kv=8, ffn=1376, vocab=512),
}


# ---- PyTorch: a llama (RMSNorm, RoPE, GQA causal attention, SwiGLU, untied output) -------------------
class Lora(torch.nn.Module):
    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        self.a = torch.nn.Parameter(torch.empty(rank, base.in_features).uniform_(-1 / math.sqrt(base.in_features),
                                                                                  1 / math.sqrt(base.in_features)))
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + (x @ self.a.t()) @ self.b.t() * self.scale


class Block(torch.nn.Module):
    def __init__(self, s):
        super().__init__()
        d, h, kv, f = s["dim"], s["heads"], s["kv"], s["ffn"]
        self.h, self.kv, self.hd = h, kv, d // h
        self.attn_norm = torch.nn.Parameter(torch.ones(d))
        self.ffn_norm = torch.nn.Parameter(torch.ones(d))
        self.q = torch.nn.Linear(d, h * self.hd, bias=False)
        self.k = torch.nn.Linear(d, kv * self.hd, bias=False)
        self.v = torch.nn.Linear(d, kv * self.hd, bias=False)
        self.o = torch.nn.Linear(h * self.hd, d, bias=False)
        self.gate = torch.nn.Linear(d, f, bias=False)
        self.up = torch.nn.Linear(d, f, bias=False)
        self.down = torch.nn.Linear(f, d, bias=False)
        self.register_buffer("causal", torch.triu(torch.ones(SEQ, SEQ, dtype=torch.bool), diagonal=1))

    def forward(self, x, cos, sin):
        B, T, D = x.shape
        a = rmsnorm(x, self.attn_norm)
        q = self.q(a).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k(a).view(B, T, self.kv, self.hd).transpose(1, 2)
        v = self.v(a).view(B, T, self.kv, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if self.kv != self.h:
            k = k.repeat_interleave(self.h // self.kv, dim=1)
            v = v.repeat_interleave(self.h // self.kv, dim=1)
        # torch 1.13 (Debian's) has no scaled_dot_product_attention: the plain causal softmax.
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd))
        scores = scores.masked_fill(self.causal[:T, :T], float("-inf"))
        o = torch.softmax(scores, dim=-1) @ v
        x = x + self.o(o.transpose(1, 2).reshape(B, T, D))
        f = rmsnorm(x, self.ffn_norm)
        return x + self.down(torch.nn.functional.silu(self.gate(f)) * self.up(f))


def rmsnorm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Llama(torch.nn.Module):
    def __init__(self, s):
        super().__init__()
        self.embd = torch.nn.Embedding(s["vocab"], s["dim"])
        self.blocks = torch.nn.ModuleList(Block(s) for _ in range(s["layers"]))
        self.norm = torch.nn.Parameter(torch.ones(s["dim"]))
        self.out = torch.nn.Linear(s["dim"], s["vocab"], bias=False)
        hd = s["dim"] // s["heads"]
        freq = 10000.0 ** (-torch.arange(0, hd // 2, dtype=torch.float32) * 2 / hd)
        angle = torch.arange(SEQ, dtype=torch.float32)[:, None] * freq[None, :]
        self.register_buffer("cos", angle.cos())
        self.register_buffer("sin", angle.sin())

    def forward(self, tokens):
        x = self.embd(tokens)
        for b in self.blocks:
            x = b(x, self.cos, self.sin)
        return self.out(rmsnorm(x, self.norm))


def torch_run(shape, lora, steps):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    s = SHAPES[shape]
    model = Llama(s)
    if lora:
        for p in model.parameters():
            p.requires_grad_(False)
        for b in model.blocks:
            for name in ["q", "k", "v", "o", "gate", "up", "down"]:
                setattr(b, name, Lora(getattr(b, name), 16, 32))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    tokens = torch.randint(0, s["vocab"], (BATCH, SEQ + 1))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, s["vocab"]), tokens[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return BATCH * SEQ / statistics.median(times[1:])


# ---- Orchard: the CLI on the same shape ------------------------------------------------------------------
def orchard_model(orchard, shape, work):
    if shape == "stories260K":
        return STORIES
    s = SHAPES[shape]
    path = os.path.join(work, shape + ".gguf")
    if not os.path.exists(path):
        subprocess.run([orchard, "train", "init", "--like", STORIES, "--layers", str(s["layers"]), "--dim",
                        str(s["dim"]), "--heads", str(s["heads"]), "--kv-heads", str(s["kv"]), "--ffn", str(s["ffn"]),
                        "--seed", "1", "--out", path], check=True, stdout=subprocess.DEVNULL)
    return path


def orchard_data(work, vocab):
    # Pre-tokenized sequences of exactly SEQ + 1 ids: what the batch is made of does not change the speed.
    path = os.path.join(work, "tokens.jsonl")
    rng = random.Random(0)
    with open(path, "w") as f:
        for _ in range(64):
            f.write(json.dumps({"tokens": [rng.randrange(3, vocab) for _ in range(SEQ + 1)]}) + "\n")
    return path


def orchard_run(orchard, shape, lora, steps, work):
    model = orchard_model(orchard, shape, work)
    data = orchard_data(work, SHAPES[shape]["vocab"])
    out = tempfile.mkdtemp(dir=work)
    cmd = [orchard, "train", "--model", model, "--data", data, "--steps", str(steps), "--batch-tokens",
           str(BATCH * (SEQ + 1)), "--lr", "1e-3", "--threads", "2", "--out", out]
    if lora:
        cmd += ["--lora-rank", "16", "--lora-alpha", "32", "--lora-targets", TARGETS]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rates = []
    with open(os.path.join(out, "log.jsonl")) as f:
        for line in f:
            entry = json.loads(line)
            if "tokens_per_s" in entry:
                rates.append(entry["tokens_per_s"])
    return statistics.median(rates[1:])


def torch_blas():
    torch.ones(64, 64) @ torch.ones(64, 64)
    with open("/proc/self/maps") as f:
        maps = f.read()
    return "OpenBLAS" if "openblas" in maps else "the reference BLAS (slow: install libopenblas0-pthread)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orchard", default=os.path.join(ROOT, "build", "bin", "orchard"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__} on {torch_blas()}, {torch.get_num_threads()} threads; batch {BATCH} x {SEQ} tokens, "
          f"{args.steps} steps per run, {args.runs} runs, median of each run's steps after the first")
    with tempfile.TemporaryDirectory() as work:
        for shape in args.shapes.split(","):
            for lora in (False, True):
                ours, theirs = [], []
                for _ in range(args.runs):
                    ours.append(orchard_run(args.orchard, shape, lora, args.steps, work))
                    theirs.append(torch_run(shape, lora, args.steps))
                mode = "LoRA r16 x7" if lora else "full"
                o, t = statistics.median(ours), statistics.median(theirs)
                print(f"{shape:12s} {mode:12s} orchard {o:9.0f} tok/s  pytorch {t:9.0f} tok/s  ratio {o / t:5.2f}x"
                      f"   (orchard runs {', '.join(f'{x:.0f}' for x in ours)}; pytorch {', '.join(f'{x:.0f}' for x in theirs)})")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
