#!/usr/bin/env python3
"""Learning runs of Orchard's trainer on stories260K (issue 17; results in docs/training.md).

    python3 bench/train_learning.py [--orchard build/bin/orchard] [--out /tmp/orchard-learning] [--only NAME]

1. style:  LoRA rank 8 on q,v over stories260K, trained on 400 stories of a style the model does not
           write by itself (its own samples with every name made "Zibble" and a closing sentence), must
           lower the cross-entropy of 100 held-out stories of that style by >= 20% while its
           cross-entropy on 100 of its own greedy continuations rises by < 10%.
2. quant:  LoRA rank 8 trained to convergence (300 steps) over stories260K in f32, q8_0 and q4_0 (the
           matrices that quantize; rows that are not whole blocks stay as the quantizer leaves them),
           adapters on q,v and on all seven projections: each quantized base's final held-out loss
           against the f32 base's (target: within 2%).
3. scratch: a 4-layer model from random init trained on stories260K's own generations (temperature 1)
           ends with a held-out cross-entropy below the unigram entropy of the held-out text.

Each figure comes from `orchard train eval` (the mean over texts of each text's mean cross-entropy, nats) and the
trainer's log. Runs take minutes on 2 cores: a benchmark, not a test.
"""
import argparse
import concurrent.futures
import json
import math
import os
import random
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORIES = os.path.join(ROOT, "models", "stories260K", "stories260K.gguf")

# The style: stories260K's own samples (temperature 1) with every name it uses replaced by
# "Zibble" and the sentence " Zibble the robot said beep boop." after the story: a recurring name
# and phrase the model never writes by itself, on text that is otherwise its own.
NAMES = ["Lily", "Tom", "Ben", "Sue", "Sam", "Tim", "Anna", "Max", "Mia", "Lucy", "Jack", "Sara", "Bob", "Amy",
         "Timmy", "Jane", "Mark", "Kitty", "Spot", "Tweety", "Sally", "Billy", "Mandy", "Molly", "Jill", "Joe"]
PHRASE = " Zibble the robot said beep boop."


def style_story(text):
    for name in NAMES:
        text = re.sub(rf"\b{name}\b", "Zibble", text)
    return text.rstrip() + PHRASE


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, **kw)


def write_jsonl(path, texts):
    with open(path, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")


def evaluate(orchard, model, data, adapter=None, field="loss"):
    cmd = [orchard, "train", "eval", "--model", model, "--data", data]
    if adapter:
        cmd += ["--adapter", adapter]
    out = run(cmd, capture_output=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])[field])


def generate(orchard, prompt, temperature, seed, max_tokens=64):
    cmd = [orchard, "run", "--model", STORIES, "--prompt", prompt, "--raw", "--max-tokens", str(max_tokens),
           "--temperature", str(temperature), "--seed", str(seed)]
    return prompt + run(cmd, capture_output=True).stdout.rstrip("\n")


OPENINGS = ["Once upon a time", "One day", "Tom had", "Lily saw", "The dog", "A little bird", "Sam and Sue",
            "There was a", "The sun was", "Mom said", "Ben liked", "The cat", "In the park", "A big truck",
            "The girl", "Max wanted", "It was a", "The boy", "Anna found", "The fish"]


def own_continuations(orchard, n):
    texts = []
    for i in range(n):
        prompt = OPENINGS[i % len(OPENINGS)] + ("" if i < len(OPENINGS) else " " + ["and", "with", "but", "so",
                                                                                    "then"][i // len(OPENINGS) % 5])
        texts.append(generate(orchard, prompt, 0, 0))
    return texts


def train(orchard, model, data, out, eval_data, extra):
    cmd = [orchard, "train", "--model", model, "--data", data, "--eval", eval_data, "--out", out] + extra
    log = run(cmd, capture_output=True).stdout
    print("   ", log.strip().splitlines()[-1])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orchard", default=os.path.join(ROOT, "build", "bin", "orchard"))
    ap.add_argument("--out", default="/tmp/orchard-learning")
    ap.add_argument("--only", default="style,quant,scratch")
    ap.add_argument("--style-steps", default="45")
    ap.add_argument("--style-lr", default="1e-3")
    args = ap.parse_args()
    o, work = args.orchard, args.out
    os.makedirs(work, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        style = list(pool.map(lambda i: style_story(generate(o, OPENINGS[i % len(OPENINGS)], 1.0, 1000 + i, 100)),
                              range(500)))
    write_jsonl(f"{work}/style_train.jsonl", style[:400])
    write_jsonl(f"{work}/style_heldout.jsonl", style[400:])
    only = args.only.split(",")
    lora = ["--lora-rank", "8", "--lora-alpha", "16", "--lora-targets", "q,v", "--steps", args.style_steps,
            "--batch-tokens", "2048", "--lr", args.style_lr, "--warmup", "5", "--seed", "1"]

    if "style" in only:
        own = own_continuations(o, 100)
        write_jsonl(f"{work}/own_greedy.jsonl", own)
        base_style = evaluate(o, STORIES, f"{work}/style_heldout.jsonl")
        base_own = evaluate(o, STORIES, f"{work}/own_greedy.jsonl")
        print(f"stories260K base: style held-out CE {base_style:.4f}, own greedy CE {base_own:.4f}")
        train(o, STORIES, f"{work}/style_train.jsonl", f"{work}/lora-f32", f"{work}/style_heldout.jsonl", lora)
        after_style = evaluate(o, STORIES, f"{work}/style_heldout.jsonl", f"{work}/lora-f32")
        after_own = evaluate(o, STORIES, f"{work}/own_greedy.jsonl", f"{work}/lora-f32")
        drop, rise = 1 - after_style / base_style, after_own / base_own - 1
        print(f"style: LoRA r8 q,v: style CE {base_style:.4f} -> {after_style:.4f} ({100 * drop:.1f}% lower, need >= 20%); "
              f"own greedy CE {base_own:.4f} -> {after_own:.4f} ({100 * rise:+.1f}%, need < +10%): "
              f"{'PASS' if drop >= 0.20 and rise < 0.10 else 'FAIL'}")
    if "quant" in only:
        # At convergence (300 steps), with the style run's adapters (q,v) and with adapters on all
        # seven projections (the "accuracy-recovery" form): each quantized base against the f32 one.
        for targets in ["q,v", "q,k,v,o,gate,up,down"]:
            final = {}
            for qtype in ["f32", "q8_0", "q4_0"]:
                qpath = STORIES if qtype == "f32" else f"{work}/stories260K-{qtype}.gguf"
                if qtype != "f32" and not os.path.exists(qpath):
                    run([o, "quantize", "--model", STORIES, "--type", qtype, "--out", qpath], capture_output=True)
                base = evaluate(o, qpath, f"{work}/style_heldout.jsonl")
                out = f"{work}/conv-{qtype}-{targets.count(',') + 1}"
                train(o, qpath, f"{work}/style_train.jsonl", out, f"{work}/style_heldout.jsonl",
                      ["--lora-rank", "8", "--lora-alpha", "16", "--lora-targets", targets, "--steps", "300",
                       "--batch-tokens", "2048", "--lr", "1e-3", "--warmup", "5", "--seed", "1"])
                final[qtype] = evaluate(o, qpath, f"{work}/style_heldout.jsonl", out)
                gap = final[qtype] / final["f32"] - 1
                print(f"quant: LoRA r8 on {targets} over {qtype}: style held-out CE {base:.4f} -> {final[qtype]:.4f} "
                      f"({100 * gap:+.2f}% against the f32 base's {final['f32']:.4f}, need within 2%): "
                      f"{'PASS' if abs(gap) <= 0.02 else 'FAIL'}")
                sys.stdout.flush()

    if "scratch" in only:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            texts = list(pool.map(lambda i: generate(o, OPENINGS[i % len(OPENINGS)], 1.0, i, 128), range(1600)))
        write_jsonl(f"{work}/gen_train.jsonl", texts[:1500])
        write_jsonl(f"{work}/gen_heldout.jsonl", texts[1500:])
        init = f"{work}/scratch-init.gguf"
        run([o, "train", "init", "--like", STORIES, "--layers", "4", "--seed", "3", "--out", init], capture_output=True)
        start = evaluate(o, init, f"{work}/gen_heldout.jsonl")
        train(o, init, f"{work}/gen_train.jsonl", f"{work}/scratch", f"{work}/gen_heldout.jsonl",
              ["--steps", "400", "--batch-tokens", "2048", "--lr", "3e-3", "--warmup", "20", "--min-lr", "3e-4",
               "--weight-decay", "0.01", "--seed", "1", "--eval-every", "50"])
        end = evaluate(o, f"{work}/scratch/model.gguf", f"{work}/gen_heldout.jsonl")
        h = evaluate(o, init, f"{work}/gen_heldout.jsonl", field="unigram_entropy")
        print(f"scratch: 4-layer from random init: held-out CE {start:.4f} -> {end:.4f}, unigram entropy {h:.4f}: "
              f"{'PASS' if end < h else 'FAIL'}")


if __name__ == "__main__":
    sys.exit(main())
