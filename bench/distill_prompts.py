#!/usr/bin/env python3
"""Story openings for the stories260K distillation example (issue 18, docs/distillation.md): every
combination of an opener, a character, a name and a first action, in words the TinyStories model
knows, shuffled with a fixed seed and split into a training set and a held-out set that share no
prompt.

    bench/distill_prompts.py --train 2000 --held-out 200 --out-dir /tmp/distill

writes train_prompts.jsonl and held_out_prompts.jsonl there: one {"id", "prompt"} per line, as
`orchard distill collect` reads them. Standard library only.
"""
import argparse
import itertools
import json
import os
import random

OPENERS = ["Once upon a time, there was", "One day,", "Once there was", "There was once",
           "One sunny day,", "Long ago, there was", "One morning,", "Yesterday,"]
CHARACTERS = ["a little girl", "a little boy", "a big dog", "a small cat", "a happy bird", "a kind mom",
              "a funny fish", "a brave bear", "a tiny bug", "a shy bunny", "a old man", "a red car"]
NAMES = ["Lily", "Tom", "Ben", "Sue", "Max", "Mia", "Sam", "Tim", "Anna", "Jack"]
ACTIONS = ["", " who liked to play", " who wanted to go to the park", " who had a red ball", " who was sad"]


def openings():
    for opener, character, name, action in itertools.product(OPENERS, CHARACTERS, NAMES, ACTIONS):
        # "One day," reads on with the character as the subject; the others name it.
        if opener.endswith(","):
            yield f"{opener} {character} named {name}{action}"
        else:
            yield f"{opener} {character} named {name}{action}."


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--held-out", type=int, default=200)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    prompts = sorted(set(openings()))
    if args.train + args.held_out > len(prompts):
        ap.error(f"only {len(prompts)} distinct openings")
    random.Random(args.seed).shuffle(prompts)
    os.makedirs(args.out_dir, exist_ok=True)
    sets = {"train_prompts.jsonl": prompts[:args.train],
            "held_out_prompts.jsonl": prompts[args.train:args.train + args.held_out]}
    for name, chosen in sets.items():
        with open(os.path.join(args.out_dir, name), "w") as f:
            for i, prompt in enumerate(chosen):
                f.write(json.dumps({"id": f"{name.split('_')[0]}-{i}", "prompt": prompt}) + "\n")
        print(f"{len(chosen)} prompts in {os.path.join(args.out_dir, name)}")


if __name__ == "__main__":
    main()
