#!/usr/bin/env python3
"""The router's quality curve on a real pair (issue 19, docs/router.md "The quality curve"): the
distilled student as the device, stories260K as the cloud, quality = the teacher's mean per-token
log-likelihood of the answer, against the fraction of requests sent to the cloud, for random
routing, `pre` (the C++ router's fitted prompt model: `orchard router calibrate --mode pre` on
training-split prompts, then `orchard router explain` per held-out prompt; also the old rule, the
prompt's mean surprisal), `cascade` (the device answer's confidence: mean log-probability, also
min 8-token margin and mean entropy) and the oracle.

    python3 bench/router_curve.py --orchard build/bin/orchard --out-dir /tmp/router-curve

Calibrates on the first --calibration-prompts of distill_prompts.py's training split (disjoint from
the held-out prompts the curve is measured on; no cloud answer, no label: the device's own answers),
starts the student (`orchard serve`), the teacher as a private cloud node behind nginx
(deploy/local_cluster.sh) with the device endpoint in front of it (`orchard serve --cloud-relay`:
the cloud's answers come back through OHTTP exactly as the router gets them; --plain-cloud asks
the teacher's server directly), asks for every held-out prompt's answer (temperature 0), scores
both answers under the teacher (echo, a plain `orchard serve` of it: the judge), writes results.json and router_curve.svg to
--out-dir, prints a table and the acceptance checks, and exits 1 when a check fails (after writing
everything). Standard library only.
"""
import argparse
import concurrent.futures
import json
import math
import os
import socket
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orchard_server import start_server  # noqa: E402

MARGIN_WINDOW = 8    # kMarginWindow
TOP_K = 5            # kCascadeTopLogprobs
FRACTIONS = [i / 20 for i in range(21)]


def post(port, body, route=None):
    """The answer; with `route`, the device endpoint's x-orchard-route must be it."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        if route and r.headers.get("x-orchard-route") != route:
            sys.exit(f"expected route {route}, got {r.headers.get('x-orchard-route')} ({r.headers.get('x-orchard-route-reason')})")
        return json.load(r)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token_bytes(text):
    # The legacy API writes a token that is not whole UTF-8 as "bytes:\xNN..." (chat_service.cpp).
    if text.startswith("bytes:\\x"):
        return text.count("\\x")
    return len(text.encode("utf-8"))


def answer(port, prompt, max_tokens, cloud=False):
    """(text, [(chosen logprob, [top-5 logprobs])]) at temperature 0. cloud: asked of the device
    endpoint for the cloud's model, which it must forward to the private node."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "logprobs": TOP_K}
    if cloud:
        body["model"] = "cloud"
    r = post(port, body, "cloud" if cloud else None)
    c = r["choices"][0]
    lp = c.get("logprobs") or {"token_logprobs": [], "top_logprobs": []}
    steps = []
    for chosen, top in zip(lp["token_logprobs"], lp["top_logprobs"]):
        # The legacy shape holds up to TOP_K + 1 entries (the chosen token is always there): keep the top 5.
        steps.append((chosen, sorted(top.values(), reverse=True)[:TOP_K]))
    return c["text"], steps


def cascade_signals(steps):
    """As router::answer_signals (src/router/signals.cpp): mean chosen logprob, the lowest mean
    top1-top2 margin over windows of 8 tokens, the mean entropy of the top-k renormalized."""
    n = len(steps)
    if n == 0:
        return {"tokens": 0, "mean_logprob": 0.0, "min_margin": 0.0, "mean_entropy": 0.0}
    margins, entropies = [], []
    for _, top in steps:
        margins.append(top[0] - top[1])
        z = sum(math.exp(v - top[0]) for v in top)
        entropies.append(-sum(p * math.log(p) for p in (math.exp(v - top[0]) / z for v in top) if p > 0))
    w = min(n, MARGIN_WINDOW)
    lowest = min(sum(margins[i:i + w]) for i in range(n - w + 1)) / w
    return {"tokens": n, "mean_logprob": sum(c for c, _ in steps) / n, "min_margin": lowest,
            "mean_entropy": sum(entropies) / n}


def echo(port, text):
    """The echoed tokens of `text` under the model: [(text_offset, token bytes, logprob)] and the shift
    between the offsets and `text`'s bytes (a BOS and SentencePiece's leading space come first)."""
    r = post(port, {"prompt": text, "echo": True, "max_tokens": 0, "temperature": 0, "logprobs": 0})
    lp = r["choices"][0]["logprobs"]
    rows = list(zip(lp["text_offset"], (token_bytes(t) for t in lp["tokens"]), lp["token_logprobs"]))
    # Offsets that count the BOS's and the leading space's bytes end past the text by that much; offsets
    # that index the text itself (OpenAI's convention) end at its length: the shift is 0.
    shift = max(0, rows[-1][0] + rows[-1][1] - len(text.encode("utf-8")))
    return rows, shift


def explain(orchard, model, config, prompt):
    """The C++ router's decision for a prompt: `orchard router explain` with the calibrated config."""
    r = subprocess.run([orchard, "router", "explain", "--model", model, "--prompt", prompt, "--config", config],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def calibrate(orchard, model, prompts, base, out, mode, fraction):
    r = subprocess.run([orchard, "router", "calibrate", "--model", model, "--prompts", prompts, "--config", base,
                        "--out", out, "--mode", mode, "--cloud-fraction", str(fraction)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def quality(port, prompt, answer_text):
    """The teacher's mean log-likelihood of the answer's tokens after the prompt: the echoed tokens
    that start at or after the prompt's end in bytes, offsets corrected for what precedes the text
    (a token that straddles the boundary belongs to the prompt)."""
    rows, shift = echo(port, prompt + answer_text)
    start = len(prompt.encode("utf-8"))
    scored = [lp for off, _, lp in rows if off - shift >= start]
    if not scored:
        return None, 0
    return sum(scored) / len(scored), len(scored)


def one_prompt(ports, item, max_tokens, router):
    device, cloud, endpoint = ports
    prompt = item["prompt"]
    d_text, d_steps = answer(device, prompt, max_tokens)
    c_text, c_steps = answer(endpoint, prompt, max_tokens, cloud=True) if endpoint else answer(cloud, prompt, max_tokens)
    d_q, d_n = quality(cloud, prompt, d_text)
    c_q, c_n = quality(cloud, prompt, c_text)
    decision = explain(*router, prompt)
    return {"id": item.get("id"), "prompt": prompt, "device_answer": d_text, "cloud_answer": c_text,
            "pre_score": decision["pre_score"], "pre_route": decision["route"],
            "pre_surprisal": decision["signals"]["mean_surprisal"], "pre_signals": decision["signals"],
            "cascade": cascade_signals(d_steps),
            "device_quality": d_q, "device_scored_tokens": d_n, "cloud_quality": c_q, "cloud_scored_tokens": c_n,
            # The teacher's own logprobs while generating: its echo of its answer should give the same mean.
            "cloud_generation_mean_logprob": (sum(c for c, _ in c_steps) / len(c_steps)) if c_steps else None}


def routed_quality(rows, order, f):
    """Mean quality when the first round(f * n) prompts of `order` go to the cloud."""
    k = round(f * len(rows))
    cloud = set(order[:k])
    return sum(r["cloud_quality"] if i in cloud else r["device_quality"] for i, r in enumerate(rows)) / len(rows)


def curves(rows):
    n = len(rows)
    idx = range(n)
    # Ties keep the prompt order (a stable sort), so every router is deterministic.
    orders = {
        "pre": sorted(idx, key=lambda i: -rows[i]["pre_score"]),
        "pre_surprisal": sorted(idx, key=lambda i: -rows[i]["pre_surprisal"]),
        "cascade": sorted(idx, key=lambda i: rows[i]["cascade"]["mean_logprob"]),
        "cascade_margin": sorted(idx, key=lambda i: rows[i]["cascade"]["min_margin"]),
        "cascade_entropy": sorted(idx, key=lambda i: -rows[i]["cascade"]["mean_entropy"]),
        "oracle": sorted(idx, key=lambda i: -(rows[i]["cloud_quality"] - rows[i]["device_quality"])),
    }
    mean_d = sum(r["device_quality"] for r in rows) / n
    mean_c = sum(r["cloud_quality"] for r in rows) / n
    out = {"fractions": FRACTIONS, "random": [(1 - f) * mean_d + f * mean_c for f in FRACTIONS]}
    for name, order in orders.items():
        out[name] = [routed_quality(rows, order, f) for f in FRACTIONS]
    return out


STYLE = {"oracle": ("#222222", ""), "cascade": ("#d62728", ""), "pre": ("#1f77b4", ""),
         "pre_surprisal": ("#aec7e8", "3,3"),
         "random": ("#7f7f7f", "6,4"), "cascade_margin": ("#ff9896", "3,3"), "cascade_entropy": ("#e377c2", "3,3")}
LABEL = {"oracle": "oracle", "cascade": "cascade (mean logprob)", "pre": "pre (fitted prompt model)",
         "pre_surprisal": "pre (old: mean surprisal)",
         "random": "random", "cascade_margin": "cascade (min margin)", "cascade_entropy": "cascade (mean entropy)"}


def svg(c, path, title):
    W, H, L, R, T, B = 780, 440, 70, 220, 40, 50
    pw, ph = W - L - R, H - T - B
    names = ["oracle", "cascade", "cascade_margin", "cascade_entropy", "pre", "pre_surprisal", "random"]
    lo = min(min(c[k]) for k in names)
    hi = max(max(c[k]) for k in names)
    step = nice_step((hi - lo) / 6)
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    x = lambda f: L + f * pw  # noqa: E731
    y = lambda q: T + (hi - q) / (hi - lo) * ph  # noqa: E731
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>']
    for i in range(11):
        f = i / 10
        s.append(f'<line x1="{x(f):.1f}" y1="{T}" x2="{x(f):.1f}" y2="{T + ph}" stroke="#eee"/>')
        s.append(f'<line x1="{x(f):.1f}" y1="{T + ph}" x2="{x(f):.1f}" y2="{T + ph + 5}" stroke="black"/>')
        s.append(f'<text x="{x(f):.1f}" y="{T + ph + 18}" text-anchor="middle">{int(f * 100)}</text>')
    q = lo
    while q <= hi + step / 2:
        s.append(f'<line x1="{L}" y1="{y(q):.1f}" x2="{L + pw}" y2="{y(q):.1f}" stroke="#eee"/>')
        s.append(f'<line x1="{L - 5}" y1="{y(q):.1f}" x2="{L}" y2="{y(q):.1f}" stroke="black"/>')
        s.append(f'<text x="{L - 8}" y="{y(q) + 4:.1f}" text-anchor="end">{q:.2f}</text>')
        q += step
    s.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="black"/>')
    s.append(f'<text x="{L + pw / 2}" y="{H - 12}" text-anchor="middle">% of requests sent to the cloud</text>')
    s.append(f'<text transform="translate(18,{T + ph / 2}) rotate(-90)" text-anchor="middle">'
             'quality: teacher mean log-likelihood per token</text>')
    for k, name in enumerate(names):
        color, dash = STYLE[name]
        pts = " ".join(f"{x(f):.1f},{y(v):.1f}" for f, v in zip(c["fractions"], c[name]))
        width = 1.2 if name.startswith("cascade_") or name == "pre_surprisal" else 2
        d = f' stroke-dasharray="{dash}"' if dash else ""
        s.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}"{d}/>')
        ly = T + 10 + k * 20
        s.append(f'<line x1="{L + pw + 12}" y1="{ly}" x2="{L + pw + 40}" y2="{ly}" stroke="{color}" '
                 f'stroke-width="{width}"{d}/>')
        s.append(f'<text x="{L + pw + 46}" y="{ly + 4}">{LABEL[name]}</text>')
    s.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")


def nice_step(raw):
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orchard", default=os.path.join(root, "build/bin/orchard"))
    ap.add_argument("--student", default="/tmp/o/ds3/kd-1/model.gguf", help="the device model")
    ap.add_argument("--teacher-model", default=os.path.join(root, "../shared/models/stories260K/stories260K.gguf"),
                    help="the cloud model, also the judge")
    ap.add_argument("--prompts", help="JSONL of {id, prompt}; default: distill_prompts.py's 300 held-out")
    ap.add_argument("--calibration-prompts", type=int, default=2000,
                    help="how many of the training split's prompts calibrate the router (pre's model, thresholds)")
    ap.add_argument("--calibration-fraction", type=float, default=0.3,
                    help="the cloud fraction the written thresholds aim at (the curves rank at every fraction)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--plain-cloud", action="store_true",
                    help="ask the teacher's server directly instead of the private node (no nginx needed)")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    if not args.prompts:
        subprocess.run([sys.executable, os.path.join(here, "distill_prompts.py"), "--train", "2000",
                        "--held-out", "300", "--out-dir", args.out_dir], check=True)
        args.prompts = os.path.join(args.out_dir, "held_out_prompts.jsonl")
    with open(args.prompts) as f:
        items = [json.loads(line) for line in f if line.strip()]
    # Calibration on the training split only: the held-out prompts are never seen by the fit.
    train_path = os.path.join(args.out_dir, "train_prompts.jsonl")
    if not os.path.exists(train_path):
        subprocess.run([sys.executable, os.path.join(here, "distill_prompts.py"), "--train", "2000",
                        "--held-out", "300", "--out-dir", args.out_dir], check=True)
    with open(train_path) as f:
        train = [json.loads(line) for line in f if line.strip()][:args.calibration_prompts]
    overlap = {t["prompt"] for t in train} & {it["prompt"] for it in items}
    if overlap:
        sys.exit(f"{len(overlap)} calibration prompts are also curve prompts")
    calib_path = os.path.join(args.out_dir, "calibration_prompts.jsonl")
    with open(calib_path, "w") as f:
        for t in train:
            f.write(json.dumps({"prompt": t["prompt"]}) + "\n")
    base = os.path.join(args.out_dir, "router_base.json")
    with open(base, "w") as f:
        json.dump({"default_class": "private-cloud-allowed"}, f)
    pre_config = os.path.join(args.out_dir, "router_pre.json")
    cascade_config = os.path.join(args.out_dir, "router_cascade.json")
    calibration = {
        "prompts": len(train),
        "pre": calibrate(args.orchard, args.student, calib_path, base, pre_config, "pre", args.calibration_fraction),
        "cascade": calibrate(args.orchard, args.student, calib_path, base, cascade_config, "cascade",
                             args.calibration_fraction)}
    with open(pre_config) as f:
        calibration["pre_config"] = json.load(f)["pre"]
    with open(cascade_config) as f:
        calibration["cascade_config"] = json.load(f)["cascade"]
    print(f"calibrated on {len(train)} training-split prompts: pre fit r = "
          f"{calibration['pre']['fit']['r_predicted_vs_answer']:.3f} (predicted vs the device answer's mean logprob), "
          f"pre threshold {calibration['pre']['threshold']:.4f}, cascade threshold "
          f"{calibration['cascade']['threshold']:.4f} (both for {args.calibration_fraction:.0%} cloud)")

    servers, stops = [], []
    try:
        # start_server exits when a server does not start: the finally ends the one already running.
        device, d_port = start_server(args.orchard, args.student)
        servers.append(device)
        # The judge: the teacher's echo scores every answer.
        cloud, c_port = start_server(args.orchard, args.teacher_model)
        servers.append(cloud)
        e_port = None
        if not args.plain_cloud:
            # The cloud's answers as the router gets them: the teacher as a private node behind nginx
            # (OHTTP), reached through the device endpoint (`orchard serve --cloud-relay`).
            cluster = os.path.join(args.out_dir, "cluster")
            subprocess.run(["bash", os.path.join(root, "deploy/local_cluster.sh"), "start", cluster, "--model",
                            args.teacher_model, "--nodes", "1", "--port", str(free_port()), "--", "--parallel", "4"],
                           env=dict(os.environ, ORCHARD=args.orchard), check=True, capture_output=True)
            stops.append(lambda: subprocess.run(["bash", os.path.join(root, "deploy/local_cluster.sh"), "stop", cluster]))
            conf = dict(line.strip().replace('"', "").split("=", 1) for line in open(os.path.join(cluster, "cluster.env")))
            routed = os.path.join(args.out_dir, "router_endpoint.json")
            with open(routed, "w") as f:
                json.dump({"default_class": "private-cloud-allowed", "cloud_models": ["cloud"]}, f)
            endpoint, e_port = start_server(args.orchard, args.student, "--router-config", routed,
                                            "--cloud-relay", conf["RELAY"], "--cloud-ca-file", conf["CA"])
            servers.append(endpoint)
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            rows = list(pool.map(lambda it: one_prompt((d_port, c_port, e_port), it, args.max_tokens,
                                                       (args.orchard, args.student, pre_config)), items))
    finally:
        for p in servers:
            p.terminate()
            p.wait()
        for stop in stops:
            stop()

    unscored = [r["id"] for r in rows if r["device_quality"] is None or r["cloud_quality"] is None]
    if unscored:
        print(f"left out (an empty answer, nothing to score): {unscored}")
    rows = [r for r in rows if r["id"] not in unscored]
    c = curves(rows)
    # Echo scoring of the teacher's own answer reproduces its generation logprobs when the boundary is exact.
    drift = max(abs(r["cloud_quality"] - r["cloud_generation_mean_logprob"]) for r in rows)

    if drift > 1e-3:
        print(f"WARNING: the teacher's echo of its own answers differs from its generation by up to {drift:.3g} "
              "per token: the answer's boundary in the echo is off")
    at = {f: FRACTIONS.index(f) for f in FRACTIONS}
    names = ["random", "pre", "pre_surprisal", "cascade", "cascade_margin", "cascade_entropy", "oracle"]
    print(f"{len(rows)} prompts; device mean quality {c['random'][0]:.4f}, cloud {c['random'][-1]:.4f}; "
          f"teacher echo vs generation, max |diff| of the mean {drift:.2e}")
    # The thresholds written at calibration, applied to the held-out prompts: the share they send.
    held_pre = sum(r["pre_route"] == "cloud" for r in rows) / len(rows)
    held_cascade = sum(r["cascade"]["mean_logprob"] < calibration["cascade"]["threshold"] for r in rows) / len(rows)
    calibration["held_out_cloud_share"] = {"pre": held_pre, "cascade": held_cascade}
    print(f"calibrated thresholds on the held-out prompts (aimed at {args.calibration_fraction:.0%}): pre sends "
          f"{held_pre:.1%}, cascade {held_cascade:.1%}")
    print("cloud %  " + "  ".join(f"{n:>15}" for n in names))
    check_fs = [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]
    for f in check_fs:
        i = at[f]
        print(f"{int(round(f * 100)):>7}  " + "  ".join(f"{c[n][i]:>15.4f}" for n in names))
    checks = {}
    for name in ("pre", "cascade"):
        worst = min(c[name][at[f]] - c["random"][at[f]] for f in check_fs)
        checks[f"{name} > random at every f in [0.1, 0.5]"] = (worst > 0, f"smallest lead {worst:+.4f}")
    i = at[0.3]
    rec = {}
    for name in ("cascade", "cascade_margin", "cascade_entropy", "pre", "pre_surprisal"):
        rec[name] = {"vs_random": (c[name][i] - c["random"][i]) / (c["oracle"][i] - c["random"][i]),
                     "vs_all_device": (c[name][i] - c["random"][0]) / (c["oracle"][i] - c["random"][0])}
    checks["cascade recovers >= half the oracle's gain over random at 30%"] = (
        rec["cascade"]["vs_random"] >= 0.5,
        f"{rec['cascade']['vs_random']:.3f} (vs all-device: {rec['cascade']['vs_all_device']:.3f})")
    print("share of the oracle's gain recovered at 30% cloud (over random | over all-device):")
    for name, v in rec.items():
        print(f"  {name:>15}: {v['vs_random']:.3f} | {v['vs_all_device']:.3f}")
    ok = True
    for what, (passed, detail) in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {what}: {detail}")
        ok = ok and passed

    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump({"student": args.student, "teacher": args.teacher_model, "prompts": args.prompts,
                   "max_tokens": args.max_tokens, "calibration": calibration, "left_out": unscored, "echo_drift": drift, "curves": c,
                   "recovered_at_30": rec, "checks": {k: {"pass": p, "detail": d} for k, (p, d) in checks.items()},
                   "rows": rows}, f, indent=1)
    svg(c, os.path.join(args.out_dir, "router_curve.svg"),
        f"Quality vs cloud share: KD student (device), stories260K (cloud), {len(rows)} prompts")
    print(f"wrote {args.out_dir}/results.json and router_curve.svg")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
