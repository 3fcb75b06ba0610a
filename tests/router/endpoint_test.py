#!/usr/bin/env python3
"""The router's device endpoint end to end (issue 19, docs/router.md "The device endpoint").

    endpoint_test.py ORCHARD SHARED_DIR

A private cloud node (tiny-qwen2-chat) behind nginx (deploy/local_cluster.sh), and `orchard serve
--cloud-relay` on this device (the same model, a 96-token context) in front of it:

- Privacy: 1,000 `device-only` requests (header or body field; chat and completions; streamed or
  not; a canary in each; 100 of them longer than the device's context) while the cloud is up: none
  reaches the relay or the node (nginx's access log and the node's request and token counters do
  not move; then a few requests that may leave do move them, so the count can fail); the long ones
  get a 400 naming the reason; no canary in any file of the cluster or in the audit log.
- Redaction round trip: an e-mail and a phone number in a prompt that goes to the cloud; the node
  echoes the prompt it received (completions `echo` with `logprobs`): its tokens spell the
  placeholders and not the values, while the text the client gets has the values back, plain and
  streamed.
- Routes and reasons in the headers, /metrics and the audit log; cascade and pre modes.
- Fallback: relay stopped, 100 requests that would go to the cloud are all answered on the device
  within the deadline plus the local time, marked `cloud-unavailable`; a relay that accepts and
  never answers, the same within the deadline.
Python 3 standard library only; about a minute.
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

ORCHARD, SHARED = sys.argv[1], sys.argv[2]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(SHARED, "models/tiny-chat/tiny-qwen2-chat-q8_0.gguf")
DEVICE_CTX = 96
sys.path.insert(0, os.path.join(ROOT, "tests", "cloud"))
from cluster_support import check, failures, start_cluster, stop_cluster  # noqa: E402


def start_device(work, name, config, relay="", ca=""):
    path = os.path.join(work, f"{name}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    audit = os.path.join(work, f"{name}-audit.jsonl")
    args = [ORCHARD, "serve", "--model", MODEL, "--port", "0", "--ctx-size", str(DEVICE_CTX), "--parallel", "4",
            "--router-config", path, "--router-audit", audit]
    if relay:
        args += ["--cloud-relay", relay, "--cloud-ca-file", ca]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"http://[^:]+:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, int(m.group(1)), audit
    sys.exit(f"the device endpoint {name} did not start")


def post(port, path, body, headers=None, timeout=60):
    """(status, headers, body text)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def stream_text(body):
    """The concatenated text of an event stream's choices (completions' text, chat deltas' content)."""
    text = ""
    for line in body.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        for c in json.loads(line[6:]).get("choices", []):
            text += c.get("text") or (c.get("delta") or {}).get("content") or ""
    return text


def node_counters(admin_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10).read().decode()
    requests = sum(float(m.group(1)) for m in re.finditer(r"^orchard_requests_total\{[^}]*\} (\S+)$", text, re.M))
    tokens = float(re.search(r"^orchard_prompt_tokens_total (\S+)$", text, re.M).group(1))
    return requests, tokens


def relay_lines(cluster):
    path = os.path.join(cluster, "logs/access.log")
    return sum(1 for _ in open(path)) if os.path.exists(path) else 0


def main():
    work = tempfile.mkdtemp(prefix="orchard-router-")
    cluster = os.path.join(work, "cluster")
    conf = start_cluster(ORCHARD, cluster, MODEL, 1, ["--parallel", "2"])
    admin = int(conf["ADMIN_PORTS"].split()[0])
    base = {"default_class": "private-cloud-allowed", "cloud_models": ["cloud"],
            "pii": {"email": "redact", "phone": "redact"}}
    device, port, audit = start_device(work, "device", base, conf["RELAY"], conf["CA"])
    procs = [device]
    try:
        # -- Privacy: 1,000 device-only requests while the cloud is up.
        canaries = [f"CANARY{uuid.uuid4().hex[:12]}" for _ in range(1000)]
        long_text = " ".join(["Once upon a time there was a little dog."] * 20)  # > 96 tokens

        def pinned(i):
            canary = canaries[i]
            long = i % 10 == 0
            text = (long_text if long else "Once upon a time") + " " + canary
            chat = i % 3 == 0
            body = ({"messages": [{"role": "user", "content": text}]} if chat else {"prompt": text})
            body.update({"max_tokens": 2, "stream": i % 4 == 1})
            if i % 10 == 5:  # the cloud's model asked for by name: the device has no such model
                body["model"] = "cloud"
            headers = {}
            if i % 2:
                headers["x-orchard-privacy-class"] = "device-only"
            else:
                body["privacy_class"] = "device-only"
            status, h, text_out = post(port, "/v1/chat/completions" if chat else "/v1/completions", body, headers)
            return long, status, h, text_out

        before = (relay_lines(cluster), node_counters(admin))
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(pinned, range(1000)))
        after = (relay_lines(cluster), node_counters(admin))
        long = [r for i, r in enumerate(results) if r[0]]
        named = [r for i, r in enumerate(results) if i % 10 == 5]
        short = [r for i, r in enumerate(results) if not r[0] and i % 10 != 5]
        check(all(s == 200 and h.get("x-orchard-route") == "device" and "privacy-device-only" in h.get("x-orchard-route-reason", "")
                  for _, s, h, _ in short), f"{len(short)} device-only requests answered on the device "
              f"({sorted({(s, h.get('x-orchard-route-reason'), t[:100]) for _, s, h, t in short if s != 200})[:3]})")
        check(all(s == 400 and "context-exceeds-device" in t and h.get("x-orchard-route") == "device" for _, s, h, t in long),
              f"{len(long)} device-only requests longer than the device's context refused with a 400 naming why "
              f"({long[0][1]} {long[0][3][:160]})")
        check(all(s == 400 and "cloud-model-requested" in t for _, s, _, t in named),
              f"{len(named)} device-only requests for the cloud's model refused with a 400 naming why")
        check(after == before, f"no device-only request reached the relay or the node (relay log lines {before[0]} -> "
              f"{after[0]}, node requests/prompt tokens {before[1]} -> {after[1]})")
        # The same long request, allowed to leave: the counters move (so the check above can fail).
        status, h, _ = post(port, "/v1/completions", {"prompt": long_text, "max_tokens": 2})
        moved = (relay_lines(cluster), node_counters(admin))
        check(status == 200 and h.get("x-orchard-route") == "cloud" and "context-exceeds-device" in h["x-orchard-route-reason"],
              f"an allowed request longer than the device's context goes to the cloud ({status} {h.get('x-orchard-route-reason')})")
        check(moved[0] > after[0] and moved[1][1] > after[1][1],
              f"and it is counted at the relay ({after[0]} -> {moved[0]}) and the node ({after[1]} -> {moved[1]})")

        # -- Redaction: the node sees placeholders, the client the values.
        email, phone = "jane.doe@example.org", "+44 20 7946 0958"
        prompt = f"Write to {email} or call {phone} about the dog."
        status, h, text = post(port, "/v1/completions", {"prompt": prompt, "model": "cloud", "max_tokens": 4, "echo": True,
                                                         "logprobs": 1})
        c = json.loads(text)["choices"][0] if status == 200 else {}
        node_saw = "".join(c.get("logprobs", {}).get("tokens", []))
        check(status == 200 and h.get("x-orchard-route") == "cloud", f"a request with PII goes to the cloud ({status})")
        check("[EMAIL_1]" in node_saw and "[PHONE_1]" in node_saw and email not in node_saw and "7946" not in node_saw,
              f"the node saw placeholders only: {node_saw[:90]!r}")
        check(c.get("text", "").startswith(prompt), f"the client sees the values restored: {c.get('text', '')[:90]!r}")
        status, h, text = post(port, "/v1/completions", {"prompt": prompt, "model": "cloud", "max_tokens": 4, "echo": True,
                                                         "stream": True})
        check(status == 200 and h.get("x-orchard-route") == "cloud" and stream_text(text).startswith(prompt),
              f"streamed from the cloud, placeholders restored across deltas: {stream_text(text)[:90]!r}")
        status, h, text = post(port, "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}],
                                                              "model": "cloud", "max_tokens": 4, "stream": True})
        check(status == 200 and h.get("x-orchard-route") == "cloud" and text.rstrip().endswith("data: [DONE]"),
              f"a streamed chat answer from the cloud ({status} {text[-200:]!r})")
        # A value whose action is local pins the request.
        status, h, _ = post(port, "/v1/completions", {"prompt": "Card 4111 1111 1111 1111 ok", "model": "cloud", "max_tokens": 2})
        check(status == 400 and "pii-local:card" in h.get("x-orchard-route-reason", ""),
              f"a card number (local) keeps a request that asked for the cloud model on the device: refused ({status})")
        status, _, text = post(port, "/v1/completions", {"prompt": "hi", "privacy_class": "secret"})
        check(status == 400 and "unknown privacy class" in text, f"an unknown privacy class is a 400 ({text[:100]})")
        status, _, text = post(port, "/v1/completions", {"prompt": "hi", "privacy_class": {"nested": [1]}})
        check(status == 400 and "privacy_class must be a string" in text, f"a privacy class that is no string is a 400 ({text[:100]})")

        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        m = re.search(r'orchard_router_requests_total\{route="device",reason="privacy-device-only"\} (\d+)', metrics)
        check(m is not None and int(m.group(1)) == 1000, f"/metrics counts 1000 device-only routes ({m and m.group(1)})")
        check('route="cloud",reason="context-exceeds-device"' in metrics, "/metrics counts the cloud route by reason")
        lines = [json.loads(l) for l in open(audit)]
        check(len(lines) >= 1005 and all({"time", "route", "reasons", "pii"} <= set(l) for l in lines),
              f"one audit line per request ({len(lines)})")
        check(any(p["type"] == "email" and p["action"] == "redact" for l in lines for p in l["pii"]),
              "the audit log names the PII types found")
        audit_text = open(audit).read()
        check(email not in audit_text and "7946" not in audit_text and "little dog" not in audit_text,
              "the audit log holds no text of any request")

        found = []
        for folder, _, files in os.walk(cluster):
            for name in files:
                data = open(os.path.join(folder, name), "rb").read()
                found += [name for c in canaries[:50] + [email] if c.encode() in data]
        check(not found and not any(c in audit_text for c in canaries), f"no canary in any cluster file nor the audit log {found[:3]}")

        # -- Cascade and pre on the same pair.
        def mode_device(name, config):
            proc, p, _ = start_device(work, name, {**base, **config}, conf["RELAY"], conf["CA"])
            procs.append(proc)
            return p
        escalate = mode_device("cascade-up", {"mode": "cascade", "cascade": {"threshold": 0}})
        status, h, text = post(escalate, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 6})
        check(status == 200 and h.get("x-orchard-route") == "cloud" and "low-confidence-cascade" in h["x-orchard-route-reason"],
              f"cascade: an answer below the threshold goes to the cloud ({h.get('x-orchard-route-reason')})")
        keep = mode_device("cascade-keep", {"mode": "cascade", "cascade": {"threshold": -1000}})
        status, h, text = post(keep, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6,
                                                              "stream": True})
        check(status == 200 and h.get("x-orchard-route") == "device" and "cascade-accepted" in h["x-orchard-route-reason"]
              and text.rstrip().endswith("data: [DONE]") and stream_text(text) != "",
              f"cascade: a confident answer stays on the device, streamed once accepted ({h.get('x-orchard-route-reason')})")
        status, h, text = post(keep, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 6})
        check(status == 200 and json.loads(text)["choices"][0]["logprobs"] is None,
              "cascade: the client that asked no logprobs gets none")
        pre_up = mode_device("pre-up", {"mode": "pre", "pre": {"threshold": -1}})
        status, h, _ = post(pre_up, "/v1/completions", {"prompt": "Once upon a time there was", "max_tokens": 2})
        check(status == 200 and h.get("x-orchard-route") == "cloud" and "low-confidence-pre" in h["x-orchard-route-reason"],
              f"pre: a prompt above the threshold goes to the cloud ({h.get('x-orchard-route-reason')})")

        # -- Fallback: the relay stopped.
        local_times = []
        for _ in range(5):
            t = time.monotonic()
            post(port, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 4, "privacy_class": "device-only"})
            local_times.append(time.monotonic() - t)
        local = max(local_times)
        os.kill(int(conf["NGINX_PID"]), 15)
        time.sleep(0.5)

        def to_cloud(p):
            t = time.monotonic()
            status, h, _ = post(p, "/v1/completions", {"prompt": "Once upon a time", "model": "cloud", "max_tokens": 4})
            return status, h, time.monotonic() - t

        with ThreadPoolExecutor(4) as pool:
            stopped = list(pool.map(lambda _: to_cloud(port), range(100)))
        check(all(s == 200 and h.get("x-orchard-route") == "device" and "cloud-unavailable" in h["x-orchard-route-reason"]
                  for s, h, _ in stopped),
              f"relay stopped: 100 requests answered on the device, marked cloud-unavailable "
              f"({sorted({h.get('x-orchard-route-reason') for _, h, _ in stopped})})")
        worst = max(t for _, _, t in stopped)
        check(worst <= 2.0 + 2 * local + 0.5, f"relay stopped: each within the deadline + local time ({worst:.2f} s, local {local:.2f} s)")

        # -- Fallback: a relay that accepts connections and never answers.
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(256)
        held = []
        threading.Thread(target=lambda: [held.append(hole.accept()) for _ in iter(int, 1)], daemon=True).start()
        _, dark, _ = (lambda r: (procs.append(r[0]), r[1], r[2]))(
            start_device(work, "blackholed", base, f"https://127.0.0.1:{hole.getsockname()[1]}", conf["CA"]))
        with ThreadPoolExecutor(4) as pool:
            holed = list(pool.map(lambda _: to_cloud(dark), range(100)))
        check(all(s == 200 and h.get("x-orchard-route") == "device" and "cloud-unavailable" in h["x-orchard-route-reason"]
                  for s, h, _ in holed),
              f"relay blackholed: 100 requests answered on the device ({sorted({h.get('x-orchard-route-reason') for _, h, _ in holed})})")
        worst = max(t for _, _, t in holed)
        check(worst <= 2.0 + 2 * local + 0.5, f"relay blackholed: each within the deadline + local time ({worst:.2f} s)")
        check(sum(1 for _, h, _ in holed if "cloud-deadline" in h["x-orchard-route-reason"]) <= 8,
              "the circuit breaker stops waiting on the dead relay after a few deadlines")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        stop_cluster(cluster)
    subprocess.run(["rm", "-rf", work])
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("router endpoint: all checks passed")


main()
