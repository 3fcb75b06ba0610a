#!/usr/bin/env python3
"""Learning runs of Orchard's trainer on stories260K (issue 17; results in docs/training.md).

    python3 bench/train_learning.py [--orchard build/bin/orchard] [--out /tmp/orchard-learning] [--only NAME]

1. style:  LoRA rank 8 on q,v over stories260K, trained on 400 stories of a style the model does not
           write by itself (every story stars "Pip the otter" and ends "and the stars sang along"), must
           lower the cross-entropy of 100 held-out stories of that style by >= 20% while its
           cross-entropy on 100 of its own greedy continuations rises by < 10%.
2. quant:  the same run over stories260K quantized to q8_0 and to q4_0: the final held-out loss within
           2% of the f32 base's.
3. scratch: a 4-layer model from random init trained on stories260K's own generations (temperature 1)
           ends with a held-out cross-entropy below the unigram entropy of the held-out text.

Each figure comes from `orchard train eval` (mean cross-entropy per predicted token, nats) and the
trainer's log. Runs take minutes on 2 cores: a benchmark, not a test.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORIES = os.path.join(ROOT, "models", "stories260K", "stories260K.gguf")

NAMES = ["Pip the otter"]
PLACES = ["the river", "the old mill", "the reed bank", "the sunny rock", "the muddy pond", "the tall grass",
          "the little bridge", "the quiet lake"]
THINGS = ["a shiny shell", "a blue pebble", "a lost boot", "a paper boat", "a round stone", "a green leaf",
          "a tiny fish", "a soft feather"]
FRIENDS = ["a duck", "a frog", "a beaver", "a heron", "a mouse", "a turtle"]
FEELINGS = ["happy", "curious", "brave", "sleepy", "proud", "excited"]
ACTS = ["swam in circles", "splashed the water", "rolled on the sand", "dove under a log", "floated on his back",
        "clapped his paws"]


def style_story(rng):
    """A short story in the target style: the recurring hero and closing phrase are what is learnt."""
    place, thing, friend, feeling, act = (rng.choice(PLACES), rng.choice(THINGS), rng.choice(FRIENDS),
                                          rng.choice(FEELINGS), rng.choice(ACTS))
    return (f"Pip the otter lived by {place}. One morning Pip the otter found {thing}. "
            f"He showed it to {friend}, and the {friend.split()[-1]} was {feeling}. "
            f"Pip the otter {act}. At night they looked up, and the stars sang along.")


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
    args = ap.parse_args()
    o, work = args.orchard, args.out
    os.makedirs(work, exist_ok=True)
    rng = random.Random(17)
    style = [style_story(rng) for _ in range(500)]
    write_jsonl(f"{work}/style_train.jsonl", style[:400])
    write_jsonl(f"{work}/style_heldout.jsonl", style[400:])
    only = args.only.split(",")
    lora = ["--lora-rank", "8", "--lora-alpha", "16", "--lora-targets", "q,v", "--steps", "150", "--batch-tokens",
            "2048", "--lr", "3e-3", "--warmup", "10", "--seed", "1"]

    if "style" in only or "quant" in only:
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
            for qtype in ["q8_0", "q4_0"]:
                qpath = f"{work}/stories260K-{qtype}.gguf"
                run([o, "quantize", "--model", STORIES, "--type", qtype, "--out", qpath], capture_output=True)
                train(o, qpath, f"{work}/style_train.jsonl", f"{work}/lora-{qtype}", f"{work}/style_heldout.jsonl", lora)
                q_style = evaluate(o, qpath, f"{work}/style_heldout.jsonl", f"{work}/lora-{qtype}")
                gap = q_style / after_style - 1
                print(f"quant: LoRA over {qtype}: style held-out CE {q_style:.4f} vs f32 base {after_style:.4f} "
                      f"({100 * gap:+.2f}%, need within 2%): {'PASS' if abs(gap) <= 0.02 else 'FAIL'}")

    if "scratch" in only:
        texts = [generate(o, OPENINGS[i % len(OPENINGS)], 1.0, i, 128) for i in range(600)]
        write_jsonl(f"{work}/gen_train.jsonl", texts[:500])
        write_jsonl(f"{work}/gen_heldout.jsonl", texts[500:])
        init = f"{work}/scratch-init.gguf"
        run([o, "train", "init", "--like", STORIES, "--layers", "4", "--seed", "3", "--out", init], capture_output=True)
        start = evaluate(o, init, f"{work}/gen_heldout.jsonl")
        train(o, init, f"{work}/gen_train.jsonl", f"{work}/scratch", f"{work}/gen_heldout.jsonl",
              ["--steps", "600", "--batch-tokens", "4096", "--lr", "3e-3", "--warmup", "30", "--min-lr", "3e-4",
               "--seed", "1", "--eval-every", "100"])
        end = evaluate(o, f"{work}/scratch/model.gguf", f"{work}/gen_heldout.jsonl")
        h = evaluate(o, init, f"{work}/gen_heldout.jsonl", field="unigram_entropy")
        print(f"scratch: 4-layer from random init: held-out CE {start:.4f} -> {end:.4f}, unigram entropy {h:.4f}: "
              f"{'PASS' if end < h else 'FAIL'}")


if __name__ == "__main__":
    sys.exit(main())
