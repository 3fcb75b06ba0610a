#!/usr/bin/env python3
"""On-policy distillation end to end (issue 18): `orchard serve` on stories260K is the teacher, a
small random student (`orchard train init`, dim 64, 2 layers) trains with `orchard distill train
--on-policy 1 --teacher URL` on a few story openings. Checked: every step is on-policy and its log
line says so with what it generated; the teacher answered one echo request per scored answer (its
/metrics counter of completions); the student's forward KL to the teacher on held-out collected
answers falls over the run; bad flags are refused by name; at --on-policy 0.5 the steps drawn from (seed, step) are the on-policy
ones and only they ask the teacher. Python 3 standard library only; about 10 s.

usage: on_policy_test.py ORCHARD SOURCE_DIR
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

import teacher_server

ORCHARD, SOURCE = sys.argv[1], sys.argv[2]
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILURES.append(what)


def run(*cmd, timeout=120):
    return subprocess.run([ORCHARD, *map(str, cmd)], capture_output=True, text=True, timeout=timeout)


def completions_served(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    m = re.search(r'orchard_requests_total\{endpoint="/v1/completions",status="200"\} (\d+)', text)
    return int(m.group(1)) if m else 0


def write_prompts(path, openings, prefix):
    with open(path, "w") as f:
        for i, p in enumerate(openings):
            f.write(json.dumps({"id": f"{prefix}{i}", "prompt": p}) + "\n")


def main():
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="orchard-on-policy-")
    teacher_model = os.path.join(SOURCE, "models", "stories260K", "stories260K.gguf")
    serve, port = teacher_server.start(ORCHARD, teacher_model, os.path.join(tmp, "serve.log"), 4)
    try:
        check(port is not None, "orchard serve started")
        if port is None:
            return
        url = f"http://127.0.0.1:{port}"

        student = os.path.join(tmp, "student.gguf")
        r = run("train", "init", "--like", teacher_model, "--dim", 64, "--layers", 2, "--heads", 4, "--kv-heads", 4,
                "--ffn", 128, "--seed", 1, "--out", student)
        check(r.returncode == 0, f"a random student (rc {r.returncode}: {r.stderr[-300:]})")

        # The prompts (the data's teacher answers are not trained on at lambda 1: the prompts are) and
        # held-out answers of the teacher, where the student's KL is measured.
        train_prompts, held_prompts = os.path.join(tmp, "train.prompts"), os.path.join(tmp, "held.prompts")
        write_prompts(train_prompts, ["Once upon a time", "Lily wanted to", "The little dog", "One day, Tom",
                                      "There was a big", "The sun was", "Sara and Ben", "A small bird"], "t")
        write_prompts(held_prompts, ["Mom said", "The cat", "Tim and his mom", "Once there was a girl",
                                     "The big tree", "One morning"], "h")
        data, held = os.path.join(tmp, "train.jsonl"), os.path.join(tmp, "held.jsonl")
        for prompts, out in ((train_prompts, data), (held_prompts, held)):
            r = run("distill", "collect", "--teacher", url, "--endpoint", "completions", "--prompts", prompts,
                    "--out", out, "--top-logprobs", 20, "--max-tokens", 24, "--temperature", 1.0, "--concurrency", 4)
            check(r.returncode == 0, f"collected {os.path.basename(out)} (rc {r.returncode}: {r.stderr[-300:]})")

        # Bad flags, refused by name before any training.
        common = ["distill", "train", "--model", student, "--data", data, "--out", os.path.join(tmp, "bad"),
                  "--steps", 2, "--batch-tokens", 4096, "--lr", 1e-3]
        for extra, needle in ((["--on-policy", 1.5, "--teacher", url], "--on-policy"),
                              (["--on-policy", 1], "teacher"),
                              (["--on-policy", 1, "--teacher", url, "--on-policy-max-tokens", 0], "--on-policy-max-tokens"),
                              (["--on-policy", 1, "--teacher", url, "--loss", "ce"], "--loss kd, rkl or jsd")):
            r = run(*common, *extra)
            error = [x for x in r.stderr.splitlines() if "error" in x]
            check(r.returncode != 0 and needle in r.stderr, f"{' '.join(map(str, extra))}: refused naming {needle} "
                  f"(rc {r.returncode}: {error[-1] if error else r.stderr[-200:]})")

        def held_out_kl(model):
            r = run("distill", "eval", "--student", model, "--data", held)
            check(r.returncode == 0, f"distill eval of {os.path.basename(model)} (rc {r.returncode}: {r.stderr[-300:]})")
            return json.loads(r.stdout)["kl"] if r.returncode == 0 else float("nan")

        kl_start = held_out_kl(student)
        before = completions_served(port)
        out = os.path.join(tmp, "run")
        t0 = time.monotonic()
        r = run("distill", "train", "--model", student, "--data", data, "--eval", held, "--out", out, "--steps", 30,
                "--lr", 1e-2, "--warmup", 2, "--eval-every", 5, "--batch-tokens", 4096, "--seed", 3, "--threads", 2,
                "--on-policy", 1, "--teacher", url, "--on-policy-max-tokens", 24, timeout=300)
        seconds = time.monotonic() - t0
        check(r.returncode == 0, f"distill train --on-policy 1 ran ({seconds:.1f} s; rc {r.returncode}: {r.stderr[-400:]})")
        served = completions_served(port) - before
        lines = []
        if os.path.exists(os.path.join(out, "log.jsonl")):
            with open(os.path.join(out, "log.jsonl")) as f:
                lines = [json.loads(x) for x in f if x.strip()]
        check(len(lines) == 30, f"30 log lines ({len(lines)})")
        check(all(x.get("on_policy") is True for x in lines), "every step's line says on_policy: true")
        check(all(not x.get("skipped") for x in lines), "no step skipped")
        gen = [x.get("generation", {}) for x in lines]
        answers = sum(g.get("answers", 0) for g in gen)
        prompts = sum(g.get("prompts", 0) for g in gen)
        check(all(g.get("prompts") == 8 for g in gen), "each step generated for the 8 prompts")
        check(answers >= 0.8 * prompts, f"most answers scored and kept ({answers} of {prompts})")
        check(answers <= served <= prompts,
              f"the teacher answered one echo request per scored answer ({served} requests, {answers} kept, "
              f"{prompts} prompts)")
        kl = [(x["step"], x["eval"]["kl"]) for x in lines if "eval" in x]
        print("held-out KL by step: " + ", ".join(f"{s}: {v:.3f}" for s, v in kl))
        print("train loss by step: " + ", ".join(f"{x['step']}: {x['loss']:.3f}" for x in lines[::5]))
        check(len(kl) == 6, f"6 evaluations ({len(kl)})")
        if len(kl) == 6:
            kl_end = held_out_kl(os.path.join(out, "model.gguf"))
            print(f"held-out KL of the student: {kl_start:.3f} before, {kl_end:.3f} after (distill eval)")
            check(abs(kl_end - kl[-1][1]) < 1e-3 * kl_end, "distill eval of the trained model gives the log's last KL")
            check(kl_end < 0.8 * kl_start, f"the held-out KL fell by over 20% ({kl_start:.3f} -> {kl_end:.3f})")
            check(kl[-1][1] < kl[0][1], f"and went on falling after step 5 ({kl[0][1]:.3f} -> {kl[-1][1]:.3f})")

        # lambda 0.5: the steps whose draw from (seed, step) is below it are on-policy (trainer.cpp's
        # splitmix64 draw, written out here), the others train on the collected data with no request.
        def mix(x):
            x = (x + 0x9E3779B97F4A7C15) & M64
            x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
            x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
            return x ^ (x >> 31)

        M64 = (1 << 64) - 1
        seed, steps = 5, 8
        want = [(mix(mix(seed ^ 0x6F6E2D706F6C6963) ^ s) >> 11) * 2.0 ** -53 < 0.5 for s in range(1, steps + 1)]
        before = completions_served(port)
        out = os.path.join(tmp, "half")
        r = run("distill", "train", "--model", student, "--data", data, "--out", out, "--steps", steps, "--lr", 1e-2,
                "--batch-tokens", 4096, "--seed", seed, "--threads", 2, "--on-policy", 0.5, "--teacher", url,
                "--on-policy-max-tokens", 8)
        check(r.returncode == 0, f"distill train --on-policy 0.5 ran (rc {r.returncode}: {r.stderr[-300:]})")
        served = completions_served(port) - before
        lines = []
        if os.path.exists(os.path.join(out, "log.jsonl")):
            with open(os.path.join(out, "log.jsonl")) as f:
                lines = [json.loads(x) for x in f if x.strip()]
        got = [x.get("on_policy") for x in lines]
        check(got == want and 0 < sum(want) < steps, f"on-policy steps as drawn from (seed, step): {got}, want {want}")
        check(all(("generation" in x) == x.get("on_policy") for x in lines), "a generation record on on-policy steps only")
        answers = sum(x.get("generation", {}).get("answers", 0) for x in lines)
        check(answers <= served <= 8 * sum(want), f"echo requests only for on-policy steps ({served}, {sum(want)} steps)")
    finally:
        teacher_server.stop(serve)
    print(f"{len(FAILURES)} failures, {time.monotonic() - started:.1f} s")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
