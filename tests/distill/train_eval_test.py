#!/usr/bin/env python3
"""`orchard distill train` and `orchard distill eval` end to end (issue 18), against `orchard serve`
on stories260K as the teacher.

    python3 train_eval_test.py ORCHARD_BINARY SOURCE_DIR

Collects 40 training and 12 held-out prompts at top-8, makes a 2-layer student from random init
(`orchard train init`), trains it with `orchard distill train --eval` and checks: every evaluation
line of log.jsonl carries "eval": {agreement, kl, ce, rows} with sane values, the held-out KL goes
down over training, and the student file is written. Then `orchard distill eval` on the collected
held-out file and with `--teacher URL --prompts --teacher-score` (collecting into a cache first),
on the trained model and on a LoRA adapter: the JSON fields, their ranges, the metrics equal to
the training log's last evaluation of the same model and data, the teacher's own mean logprob
computed here from the collected file, and each student answer's teacher score asked of the server
here (echo) and summed in Python. Python 3 standard library only; ~15 s.
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import teacher_server

ORCHARD, SOURCE = sys.argv[1], sys.argv[2]
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def run(*args, timeout=120):
    r = subprocess.run([ORCHARD, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return r


def write_prompts(path, texts):
    with open(path, "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"q{i}", "prompt": t}) + "\n")


def echo_score(port, prompt, text):
    """The teacher's log-probability of `text` after `prompt`, asked here: the echoed tokens at or past the prompt."""
    body = json.dumps({"prompt": prompt + text, "echo": True, "max_tokens": 0, "logprobs": 0}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        lp = json.load(r)["choices"][0]["logprobs"]
    picked = [v for v, off in zip(lp["token_logprobs"], lp["text_offset"]) if off >= len(prompt)]
    return sum(picked), len(picked)


def check_eval_json(d, what, examples):
    for key in ("student", "data", "examples", "rows", "agreement", "kl", "ce", "per_example"):
        check(key in d, f"{what}: has \"{key}\"")
    if FAILURES:
        return
    check(d["examples"] == examples and d["rows"] > 0, f"{what}: {d['examples']} examples, {d['rows']} KD rows")
    check(0 <= d["agreement"] <= 1 and d["kl"] >= 0 and d["ce"] > 0,
          f"{what}: agreement {d['agreement']:.3f} in [0, 1], kl {d['kl']:.3f} >= 0, ce {d['ce']:.3f} > 0")
    pk, pc = d["per_example"]["kl"], d["per_example"]["ce"]
    check(len(pk) == examples and len(pc) == examples, f"{what}: per_example has one kl and ce per example")
    # The overall KL is the row-weighted mean of the per-example KLs: with every example's row count
    # unknown here, it must at least lie between their extremes.
    check(min(pk) - 1e-9 <= d["kl"] <= max(pk) + 1e-9 and min(pc) - 1e-9 <= d["ce"] <= max(pc) + 1e-9,
          f"{what}: kl and ce lie within their per-example ranges")


def main():
    tmp = tempfile.mkdtemp(prefix="distill-train-eval-")
    started = time.monotonic()
    model = os.path.join(SOURCE, "models", "stories260K", "stories260K.gguf")
    subjects = ["Lily", "Tom", "The cat", "A little bird", "Ben", "Sara", "The dog", "Mom", "The sun", "A big bear",
                "Tim", "Sue", "The girl"]
    verbs = ["wanted to", "went to", "saw a", "liked to"]
    texts = [f"{s} {v}" for s in subjects for v in verbs]
    train_prompts, eval_prompts = os.path.join(tmp, "train_prompts.jsonl"), os.path.join(tmp, "eval_prompts.jsonl")
    write_prompts(train_prompts, ["Once upon a time, " + t for t in texts[:40]])
    write_prompts(eval_prompts, ["One day, " + t for t in texts[40:52]])
    student = os.path.join(tmp, "student.gguf")
    r = run("train", "init", "--like", model, "--dim", 64, "--layers", 2, "--heads", 4, "--kv-heads", 4, "--ffn", 128,
            "--out", student)
    check(r.returncode == 0, f"a random 2-layer student made ({r.stderr[-200:]})")

    serve, port = teacher_server.start(ORCHARD, model, os.path.join(tmp, "serve.log"), 2)
    try:
        check(port is not None, "orchard serve started")
        if port is None:
            return
        url = f"http://127.0.0.1:{port}"
        train_data, eval_data = os.path.join(tmp, "train.jsonl"), os.path.join(tmp, "eval.jsonl")
        for prompts, out in ((train_prompts, train_data), (eval_prompts, eval_data)):
            r = run("distill", "collect", "--teacher", url, "--endpoint", "completions", "--prompts", prompts,
                    "--out", out, "--top-logprobs", 8, "--max-tokens", 32, "--concurrency", 2)
            check(r.returncode == 0, f"collected {os.path.basename(out)} (rc {r.returncode}: {r.stderr[-200:]})")

        # Training: 40 steps, an evaluation every 10.
        out_dir = os.path.join(tmp, "run")
        r = run("distill", "train", "--model", student, "--data", train_data, "--eval", eval_data, "--out", out_dir,
                "--steps", 40, "--batch-tokens", 1024, "--lr", "3e-3", "--eval-every", 10, "--threads", 2)
        check(r.returncode == 0, f"distill train ran (rc {r.returncode}: {r.stderr[-400:]})")
        check("40 records (40 exact" in r.stderr and "12 records (12 exact" in r.stderr,
              "the mapping's counts printed (same vocabulary: every record exact)")
        lines = [json.loads(x) for x in open(os.path.join(out_dir, "log.jsonl"))]
        check([x["step"] for x in lines] == list(range(1, 41)), "log.jsonl has steps 1 to 40")
        evals = [x for x in lines if "eval" in x]
        check([x["step"] for x in evals] == [10, 20, 30, 40], f"eval metrics at steps 10, 20, 30, 40 "
              f"({[x['step'] for x in evals]})")
        base_fields = {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"}
        check(all(base_fields <= set(x) for x in lines) and all("eval_loss" in x for x in evals),
              "every line has orchard train's fields; evaluation lines eval_loss too")
        sane = all(set(x["eval"]) == {"agreement", "kl", "ce", "rows"} and 0 <= x["eval"]["agreement"] <= 1
                   and x["eval"]["kl"] >= 0 and x["eval"]["ce"] > 0 and x["eval"]["rows"] > 0 for x in evals)
        check(sane, "each eval is {agreement in [0, 1], kl >= 0, ce > 0, rows > 0}: "
              f"{evals[-1]['eval'] if evals else None}")
        if len(evals) == 4:
            kls = [x["eval"]["kl"] for x in evals]
            check(kls[-1] < kls[0] - 0.1,
                  f"the held-out KL goes down over training ({' -> '.join(f'{k:.3f}' for k in kls)})")
            agr = [x["eval"]["agreement"] for x in evals]
            check(agr[-1] > agr[0], f"the held-out top-1 agreement goes up ({agr[0]:.3f} -> {agr[-1]:.3f})")
        trained = os.path.join(out_dir, "model.gguf")
        check(os.path.exists(trained), "the student's model.gguf written")

        # distill eval on the held-out file: the training log's last evaluation, recomputed from the written model.
        eval_json = os.path.join(tmp, "eval1.json")
        r = run("distill", "eval", "--student", trained, "--data", eval_data, "--out", eval_json)
        check(r.returncode == 0, f"distill eval --data ran (rc {r.returncode}: {r.stderr[-300:]})")
        if r.returncode == 0:
            d = json.load(open(eval_json))
            check(json.loads(r.stdout) == d, "the JSON printed is the one written")
            check_eval_json(d, "eval --data", 12)
            if evals:
                last = evals[-1]["eval"]
                check(d["rows"] == last["rows"] and all(abs(d[k] - last[k]) < 1e-6 for k in ("agreement", "kl", "ce")),
                      "eval --data equals the log's step-40 metrics (the same model and data)")
            r0 = run("distill", "eval", "--student", student, "--data", eval_data)
            d0 = json.loads(r0.stdout) if r0.returncode == 0 else {}
            check(d0.get("kl", 0) > d["kl"],
                  f"the untrained student is further from the teacher (kl {d0.get('kl')} > {d['kl']:.3f})")

        # A LoRA student: the adapter applied by distill eval gives the log's final metrics.
        lora_dir = os.path.join(tmp, "lora")
        r = run("distill", "train", "--model", student, "--data", train_data, "--eval", eval_data, "--out", lora_dir,
                "--steps", 10, "--batch-tokens", 1024, "--lr", "1e-2", "--lora-rank", 4, "--threads", 2)
        check(r.returncode == 0, f"distill train --lora-rank 4 ran (rc {r.returncode}: {r.stderr[-300:]})")
        r = run("distill", "eval", "--student", student, "--adapter", lora_dir, "--data", eval_data)
        if r.returncode == 0:
            d = json.loads(r.stdout)
            last = [json.loads(x) for x in open(os.path.join(lora_dir, "log.jsonl"))][-1]["eval"]
            check(all(abs(d[k] - last[k]) < 1e-5 for k in ("agreement", "kl", "ce")),
                  f"eval --adapter equals the LoRA run's last metrics ({d['kl']:.5f} vs {last['kl']:.5f})")
        else:
            check(False, f"distill eval --adapter ran ({r.stderr[-300:]})")

        # distill eval --teacher: collect the held-out prompts into a cache, then score the student's own answers.
        eval_json2 = os.path.join(tmp, "eval2.json")
        cache = os.path.join(tmp, "cache.jsonl")
        r = run("distill", "eval", "--student", trained, "--teacher", url, "--prompts", eval_prompts, "--endpoint",
                "completions", "--cache", cache, "--top-logprobs", 8, "--max-tokens", 24, "--teacher-score",
                "--out", eval_json2)
        check(r.returncode == 0, f"distill eval --teacher --teacher-score ran (rc {r.returncode}: {r.stderr[-300:]})")
        if r.returncode == 0:
            d = json.load(open(eval_json2))
            check_eval_json(d, "eval --teacher", 12)
            rows = [json.loads(x) for x in open(cache)]
            check(sorted(x["id"] for x in rows) == sorted(f"q{i}" for i in range(12)) and d["data"] == cache,
                  "the held-out prompts collected into --cache and evaluated from it")
            self_lp = [v for x in rows for v in x["teacher_logprobs"] if v is not None]
            check(abs(d["teacher_self_logprob_per_token"] - sum(self_lp) / len(self_lp)) < 1e-9
                  and d["teacher_self_tokens"] == len(self_lp),
                  "teacher_self_logprob_per_token is the collected answers' mean "
                  f"({d['teacher_self_logprob_per_token']:.4f})")
            ts = d.get("teacher_score", {})
            check(ts.get("answers") == 12 and ts.get("tokens", 0) > 0 and ts.get("mean_logprob_per_token", 1) < 0,
                  f"teacher_score: 12 answers scored, a negative mean logprob ({ts.get('mean_logprob_per_token')})")
            prompt_of = {x["id"]: x["prompt"] for x in rows}
            total, count, agree = 0.0, 0, 0
            for a in ts.get("per_answer", []):
                s, n = echo_score(port, prompt_of[a["id"]], a["text"])
                total, count = total + s, count + n
                agree += abs(s - a["logprob"]) < 1e-4 and n == a["tokens"]
            check(agree == 12 and count == ts.get("tokens"),
                  f"each answer's teacher score equals the server's echo asked here ({agree}/12)")
            if count:
                check(abs(ts["mean_logprob_per_token"] - total / count) < 1e-6, "mean_logprob_per_token = sum / tokens")
            # A second run reuses the cache: nothing collected again.
            r = run("distill", "eval", "--student", trained, "--teacher", url, "--prompts", eval_prompts, "--endpoint",
                    "completions", "--cache", cache, "--top-logprobs", 8, "--max-tokens", 24)
            check(r.returncode == 0 and "12 already in" in r.stderr and "0 collected" in r.stderr,
                  "a rerun takes the held-out answers from the cache")

        # Bad input.
        r = run("distill", "eval", "--student", trained)
        check(r.returncode == 2 and "--data" in r.stderr, "eval without --data or --teacher refused")
        r = run("distill", "eval", "--student", trained, "--data", eval_data, "--teacher-score")
        check(r.returncode == 2 and "--teacher-score needs" in r.stderr, "--teacher-score without a teacher refused")
    finally:
        teacher_server.stop(serve)

    print(f"{len(FAILURES)} failures, {time.monotonic() - started:.1f} s")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
