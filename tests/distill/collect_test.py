#!/usr/bin/env python3
"""`orchard distill collect` against a fake teacher that misbehaves (issue 18, "Collection
robustness"), and end to end against `orchard serve` on stories260K.

    python3 collect_test.py ORCHARD_BINARY SOURCE_DIR

The fake teacher (http.server, one thread per connection) answers /v1/completions in OpenAI's
legacy logprobs shape with an answer derived from the prompt, so that every line written can be
checked against what it should hold. It answers ~10% of requests 429, ~10% 500, closes ~7% part
way through the body, and answers ~10% slowly. Checks: every (id, sample) written exactly once and
matching its prompt, every line parsing; a collector SIGKILLed mid-run (and a torn line left at the
end of the file) resumes to the complete set without asking for what was already written; bad
input refused with an error that names the problem; failures after the retries reported and not
written; the API key sent as Bearer and never printed; an HTTPS teacher with a self-signed
certificate trusted with --ca-file and refused without; `orchard distill eval --teacher-score`
(TeacherClient's scoring by echo) through 429s and a 500. Python 3 standard library only; ~22 s.
"""
import http.server
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import teacher_server

ORCHARD, SOURCE = sys.argv[1], sys.argv[2]
SECRET = "sk-test-7c1e0f2bd95a"
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def expected_tokens(prompt, sample):
    """The fake teacher's answer for a prompt: its words reversed, then the sample number."""
    words = prompt.split()[::-1] + [f"s{sample}"]
    return [" " + w for w in words]


class Teacher(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, faults=True, slow=0.0, tls=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls is not None:  # HTTPS: each connection's handshake in its own handler thread
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
            self.scheme = "https"
        self.faults, self.slow = faults, slow
        self.lock = threading.Lock()
        self.requests = []       # (prompt, outcome)
        self.auth = set()
        self.rng = random.Random(18)
        self.always_fail = {}    # prompt -> status answered every time
        self.think = set()       # prompts answered with a <think> block
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):  # a killed collector; a refused certificate
            return
        super().handle_error(request, client_address)

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.shutdown()
        self.server_close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, obj, cut=False):
        try:
            self.send_json_unchecked(status, obj, cut)
        except (BrokenPipeError, ConnectionResetError):  # the collector was killed
            self.close_connection = True

    def send_json_unchecked(self, status, obj, cut):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:  # the connection closes part way through the body
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)

    def do_POST(self):
        t = self.server
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/v1/chat/completions":
            return self.chat(req)
        if req.get("echo"):
            return self.echo(req)
        prompt = req.get("prompt")
        with t.lock:
            t.auth.add(self.headers.get("Authorization"))
            roll = t.rng.random() if t.faults else 1.0
        if self.path != "/v1/completions" or not isinstance(prompt, str) or req.get("logprobs") != 5:
            outcome = "bad"
            self.send_json(400, {"error": {"message": f"unexpected request {self.path} {req}"}})
        elif prompt in t.always_fail:
            outcome = "always"
            self.send_json(t.always_fail[prompt], {"error": {"message": "refused"}})
        elif roll < 0.10:
            outcome = "429"
            self.send_json(429, {"error": {"message": "slow down"}})
        elif roll < 0.20:
            outcome = "500"
            self.send_json(500, {"error": {"message": "oops"}})
        else:
            if roll > 0.90 or t.slow:  # ~10% slow answers
                time.sleep(t.slow or random.uniform(0.2, 0.6))
            words = prompt.split()[::-1]
            toks = [" " + w for w in words] + ["<eos>"]
            n = min(len(toks), req.get("max_tokens", 16))
            toks = toks[:n]
            # a 6th entry beyond the top 5, as OpenAI adds the sampled token: the collector keeps the top 5
            top = [{tok: -0.1, " other": -2.5, " x": -3.0, " y": -3.5, " z": -4.0, " extra": -9.0} for tok in toks]
            text = "<think> because\n</think>\n\nthe answer" if prompt in t.think else "".join(toks)
            answer = {"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": "stop",
                      "logprobs": {"tokens": toks, "token_logprobs": [-0.1] * n, "top_logprobs": top,
                                   "text_offset": list(range(n))}}]}
            outcome = "cut" if roll < 0.27 else "ok"  # ~7% cut part way through the body
            self.send_json(200, answer, cut=(outcome == "cut"))
        with t.lock:
            t.requests.append((prompt, outcome))


    def echo(self, req):
        """Scoring (distill eval --teacher-score): the text echoed as whitespace-led words, each -0.5
        (the first null), top rows one entry wider than asked. With faults, the 1st and 3rd scoring
        requests are answered 429 (with Retry-After) and the 2nd 500."""
        t = self.server
        ok = req.get("max_tokens") == 0 and isinstance(req.get("prompt"), str) and isinstance(req.get("logprobs"), int)
        with t.lock:
            n = sum(o.startswith("echo") for _, o in t.requests)
            fault = {0: "echo-429", 1: "echo-500", 2: "echo-429"}.get(n) if t.faults else None
            outcome = "echo-bad" if not ok else fault or "echo"
            t.requests.append((req.get("prompt"), outcome))
        if outcome == "echo-bad":
            return self.send_json(400, {"error": {"message": f"unexpected scoring request {req}"}})
        if outcome == "echo-429":
            body = json.dumps({"error": {"message": "slow down"}}).encode()
            self.send_response(429)
            self.send_header("Retry-After", "0.05")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.wfile.write(body)
        if outcome == "echo-500":
            return self.send_json(500, {"error": {"message": "oops"}})
        toks, offsets = echo_tokens(req["prompt"])
        k = req["logprobs"]
        top = [None] + [dict([(tok, -0.5)] + [(f" alt{j}", -1.0 - j) for j in range(k)]) for tok in toks[1:]]
        self.send_json(200, {"object": "text_completion", "choices": [{"index": 0, "text": req["prompt"],
                       "finish_reason": "length", "logprobs": {"tokens": toks,
                       "token_logprobs": [None] + [-0.5] * (len(toks) - 1), "top_logprobs": top,
                       "text_offset": offsets}}]})

    def chat(self, req):
        """A chat teacher that thinks aloud in reasoning_content; echoes the last user message."""
        t = self.server
        messages = req.get("messages")
        ok = (isinstance(messages, list) and req.get("logprobs") is True and req.get("top_logprobs") == 3
              and req.get("model") == "big-teacher")
        with t.lock:
            t.requests.append((json.dumps(messages), "chat"))
        if not ok:
            return self.send_json(400, {"error": {"message": f"unexpected chat request {req}"}})
        # The last two tokens are the two bytes of one character ("é"): as OpenAI and Orchard's server send
        # them, each token text is U+FFFD and only "bytes" tells them apart.
        toks = ["re", ":", " " + messages[-1]["content"], b"\xc3", b"\xa9"]
        text = lambda tok: tok if isinstance(tok, str) else "\ufffd"
        raw = lambda tok: list(tok.encode() if isinstance(tok, str) else tok)
        content = [{"token": text(tok), "logprob": -0.2, "bytes": raw(tok),
                    "top_logprobs": [{"token": text(tok), "logprob": -0.2, "bytes": raw(tok)},
                                     {"token": "no", "logprob": -2.0, "bytes": []},
                                     {"token": "yes", "logprob": -3.0, "bytes": []}]} for tok in toks]
        answer = "".join(tok if isinstance(tok, str) else "" for tok in toks) + "\u00e9"
        self.send_json(200, {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
                       "message": {"role": "assistant", "content": answer, "reasoning_content": "thought"},
                       "logprobs": {"content": content}}]})


def echo_tokens(text):
    """The fake teacher's tokens of a text: each run of spaces with the word after it."""
    toks, offsets = [], []
    for m in re.finditer(r"\s*\S+|\s+$", text):
        toks.append(m.group())
        offsets.append(m.start())
    return toks, offsets


def write_prompts(path, n, prefix="p"):
    rows = []
    with open(path, "w") as f:
        for i in range(n):
            pid = i if i % 2 else f"{prefix}{i}"  # ids both numbers and strings
            prompt = f"story {i} begins with word{i} and more"
            rows.append((pid, prompt))
            f.write(json.dumps({"id": pid, "prompt": prompt}) + "\n")
    return rows


def collect(teacher_url, prompts, out, *extra, env_key=True, top=5, **kw):
    cmd = [ORCHARD, "distill", "collect", "--teacher", teacher_url, "--endpoint", "completions", "--prompts", prompts,
           "--out", out, "--top-logprobs", str(top), "--max-tokens", "16", *map(str, extra)]
    env = dict(os.environ)
    if env_key:
        env["DISTILL_TEST_KEY"] = SECRET
        cmd += ["--api-key-env", "DISTILL_TEST_KEY"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=kw.get("timeout", 120))


def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    check(data.endswith(b"\n") or not data, f"{os.path.basename(path)} ends with a whole line")
    rows = []
    for number, line in enumerate(data.split(b"\n")[:-1], 1):
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            check(False, f"line {number} of {path} parses: {e}")
    return rows


def check_complete(rows, prompts, samples, what):
    by_key = {}
    for r in rows:
        by_key.setdefault((json.dumps(r["id"]), r["sample"]), []).append(r)
    want = {(json.dumps(pid), s) for pid, _ in prompts for s in range(samples)}
    check(set(by_key) == want, f"{what}: every (id, sample) collected ({len(set(by_key) & want)}/{len(want)})")
    dups = [k for k, v in by_key.items() if len(v) > 1]
    check(not dups, f"{what}: nothing duplicated ({len(dups)} duplicates)")
    text_of = {json.dumps(pid): p for pid, p in prompts}
    wrong = 0
    for (key, s), [r, *_] in by_key.items():
        toks = (" " + w for w in text_of.get(key, "").split()[::-1])
        want_toks = (list(toks) + ["<eos>"])[:16]
        ok = (r.get("prompt") == text_of.get(key) and r["teacher_tokens"] == want_toks
              and r["completion"] == "".join(want_toks) and len(r["teacher_top"]) == len(want_toks)
              and all(len(row) == 5 and row[t] == -0.1 for row, t in zip(r["teacher_top"], want_toks))
              and "reasoning" not in r)
        wrong += not ok
    check(wrong == 0, f"{what}: each line holds its own prompt's answer and top-5 rows ({wrong} wrong)")


def main():
    tmp = tempfile.mkdtemp(prefix="distill-collect-")
    started = time.monotonic()

    # 1. A misbehaving teacher, 2 samples each, 8 workers.
    teacher = Teacher()
    prompts_path = os.path.join(tmp, "prompts.jsonl")
    prompts = write_prompts(prompts_path, 60)
    out = os.path.join(tmp, "out.jsonl")
    r = collect(teacher.url, prompts_path, out, "--samples", 2, "--concurrency", 8, "--retries", 12)
    check(r.returncode == 0, f"collector succeeds against the faulty teacher (rc {r.returncode}: {r.stderr[-500:]})")
    outcomes = [o for _, o in teacher.requests]
    check(all(outcomes.count(o) > 0 for o in ("429", "500", "cut")), "the teacher did fail: " +
          ", ".join(f"{o} {outcomes.count(o)}" for o in ("ok", "429", "500", "cut")))
    check_complete(read_lines(out), prompts, 2, "faulty teacher")
    check(teacher.auth == {"Bearer " + SECRET}, f"the key went as Bearer on every request ({teacher.auth})")
    check(SECRET not in r.stdout + r.stderr, "the key is never printed")
    check("120/120" in r.stderr and "tokens" in r.stderr and "ETA" in r.stderr,
          f"progress line with done/total, tokens and ETA: {r.stderr.strip().splitlines()[-1:]}")

    # A rerun over a complete file sends nothing.
    before = len(teacher.requests)
    r = collect(teacher.url, prompts_path, out, "--samples", 2)
    check(r.returncode == 0 and len(teacher.requests) == before, "a rerun over a complete output sends no request")
    check_complete(read_lines(out), prompts, 2, "rerun")
    teacher.close()

    # 2. SIGKILL mid-run, a torn line, then resume.
    teacher = Teacher(faults=True, slow=0.05)
    prompts2 = write_prompts(prompts_path, 150, prefix="k")
    out2 = os.path.join(tmp, "killed.jsonl")
    cmd = [ORCHARD, "distill", "collect", "--teacher", teacher.url, "--endpoint", "completions", "--prompts",
           prompts_path, "--out", out2, "--top-logprobs", "5", "--max-tokens", "16", "--concurrency", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(out2) and open(out2, "rb").read().count(b"\n") >= 30:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open(out2, "rb") as f:
        kept = f.read()
    whole = kept[: kept.rfind(b"\n") + 1]
    n_kept = whole.count(b"\n")
    check(30 <= n_kept < 150, f"the collector was killed mid-run ({n_kept} of 150 lines written)")
    with open(out2, "ab") as f:  # what a kill in the middle of a write would leave
        f.write(b'{"id": "torn", "sample": 0, "completion": "half a li')
    done_before = {(json.dumps(r["id"]), r["sample"]) for r in (json.loads(l) for l in whole.splitlines())}
    before = len(teacher.requests)
    r = collect(teacher.url, prompts_path, out2, "--concurrency", 4, "--retries", 12, env_key=False)
    check(r.returncode == 0, f"the resumed run succeeds (rc {r.returncode}: {r.stderr[-300:]})")
    with open(out2, "rb") as f:
        check(f.read().startswith(whole), "the lines written before the kill are kept as they were")
    rows = read_lines(out2)
    check_complete(rows, prompts2, 1, "after SIGKILL and resume")
    asked = {p for p, o in teacher.requests[before:]}
    asked_done = {p for p in asked if (json.dumps(next(pid for pid, q in prompts2 if q == p)), 0) in done_before}
    check(not asked_done, f"the resumed run asks for nothing already written ({len(asked_done)} asked again)")
    teacher.close()

    # 3. Failures: always 503 after the retries, and a 400 at once; neither written, rc 1.
    teacher = Teacher(faults=False)
    prompts3 = write_prompts(prompts_path, 6, prefix="f")
    teacher.always_fail = {prompts3[1][1]: 503, prompts3[2][1]: 400}
    teacher.think = {prompts3[3][1]}
    out3 = os.path.join(tmp, "fail.jsonl")
    r = collect(teacher.url, prompts_path, out3, "--retries", 2, env_key=False)
    check(r.returncode == 1, f"failures give exit code 1 (rc {r.returncode})")
    rows = read_lines(out3)
    written = sorted(json.dumps(x["id"]) for x in rows)
    check(written == sorted(json.dumps(p) for i, (p, _) in enumerate(prompts3) if i not in (1, 2)),
          "the failed prompts are not written, the others are")
    think = [x for x in rows if x["id"] == prompts3[3][0]]
    check(len(think) == 1 and think[0].get("reasoning") == "because" and think[0]["completion"] == "the answer",
          f"a <think> block becomes the reasoning: {think}")
    check(all("reasoning" not in x for x in rows if x["id"] != prompts3[3][0]), "no reasoning field without one")
    tries = {p: sum(1 for q, _ in teacher.requests if q == p) for p in teacher.always_fail}
    check(tries[prompts3[1][1]] == 3 and tries[prompts3[2][1]] == 1, f"503 tried 1 + 2 retries, 400 once: {tries}")
    check("HTTP 503" in r.stderr and "HTTP 400" in r.stderr and json.dumps(prompts3[1][0]) in r.stderr,
          "each failure reported with its id and status")
    teacher.close()

    # The chat endpoint: a "prompt" goes as one user message, "messages" as they are; reasoning_content kept.
    teacher = Teacher(faults=False)
    chat_prompts = os.path.join(tmp, "chat.jsonl")
    conversation = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "two"}]
    with open(chat_prompts, "w") as f:
        f.write(json.dumps({"id": "a", "prompt": "one"}) + "\n")
        f.write(json.dumps({"id": "b", "messages": conversation}) + "\n")
    out4 = os.path.join(tmp, "chat_out.jsonl")
    r = subprocess.run([ORCHARD, "distill", "collect", "--teacher", teacher.url + "/v1/", "--prompts", chat_prompts,
                        "--out", out4, "--top-logprobs", "3", "--model", "big-teacher"], capture_output=True, text=True)
    rows = {x["id"]: x for x in read_lines(out4)}
    sent = sorted(json.dumps(json.loads(m), sort_keys=True) for m, _ in teacher.requests)
    want = sorted(json.dumps(m, sort_keys=True) for m in ([{"role": "user", "content": "one"}], conversation))
    check(r.returncode == 0 and sent == want,
          f"chat: a prompt sent as one user message, messages as given (rc {r.returncode}, {sent})")
    check(set(rows) == {"a", "b"} and rows["a"].get("prompt") == "one" and rows["b"].get("messages") == conversation
          and rows["b"]["completion"] == "re: two\u00e9" and rows["b"].get("reasoning") == "thought"
          and rows["b"]["teacher_tokens"] == ["re", ":", " two", "bytes:\\xc3", "bytes:\\xa9"]
          and rows["b"]["teacher_top"][2] == {" two": -0.2, "no": -2.0, "yes": -3.0}
          and rows["b"]["teacher_top"][4] == {"bytes:\\xa9": -0.2, "no": -2.0, "yes": -3.0},
          f"chat: answer, reasoning_content, top-3 rows and a split character's bytes kept ({rows.get('b')})")
    teacher.close()

    # 4. Bad input, refused before anything is sent.
    def refused(lines, extra, needle, what, top=5):
        path = os.path.join(tmp, "bad.jsonl")
        with open(path, "w") as f:
            f.write("".join(l + "\n" for l in lines))
        res = collect("http://127.0.0.1:9", path, os.path.join(tmp, "never.jsonl"), *extra, env_key=False, top=top)
        check(res.returncode == 2 and needle in res.stderr,
              f"{what}: refused with '{needle}' ({res.stderr.strip()[:200]})")
        check(not os.path.exists(os.path.join(tmp, "never.jsonl")), f"{what}: no output written")
    good = '{"id": 1, "prompt": "a"}'
    refused([good, '{"id": 2, "prompt": "b"}', '{"id": 1, "prompt": "c"}'], [],
            "line 3: duplicate id 1 (first on line 1)",
            "duplicate ids")
    refused([good, '{"id": 2, "prompt": '], [], "bad.jsonl line 2", "a malformed line")
    refused([good, '{"id": 2}'], [], "line 2: give exactly one of \"prompt\" and \"messages\"",
            "a line without a prompt")
    refused([good, '{"id": [2], "prompt": "x"}'], [], "line 2: \"id\" must be a string or an integer",
            "an id that is a list")
    refused([good], [], "--top-logprobs must be from 0 to 20", "top-logprobs 21", top=21)
    refused([good, '{"id": 2, "messages": [{"role": "user", "content": "hi"}]}'], [],
            "--endpoint completions cannot send", "messages to the completions endpoint")
    res = collect("ftp://x", prompts_path, os.path.join(tmp, "never.jsonl"), env_key=False)
    check(res.returncode == 2 and "not an http:// or https:// URL" in res.stderr,
          "a teacher URL that is not http(s) refused")
    res = subprocess.run([ORCHARD, "distill", "collect", "--teacher", "http://127.0.0.1:9", "--prompts", prompts_path,
                          "--out", os.path.join(tmp, "never.jsonl"), "--api-key-env", "DISTILL_UNSET_VAR_X"],
                         capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "DISTILL_UNSET_VAR_X"})
    check(res.returncode == 2 and "DISTILL_UNSET_VAR_X" in res.stderr, "an unset --api-key-env variable refused")

    # 4b. An HTTPS teacher with a private CA: a self-signed certificate made here. --ca-file trusts
    # it; without it the collector stops at once with a certificate error (no retries: no retry mends it).
    cert, key = os.path.join(tmp, "teacher.pem"), os.path.join(tmp, "teacher.key")
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                           "-days", "2", "-keyout", key, "-out", cert], capture_output=True, text=True)
    check(made.returncode == 0,
          f"a self-signed certificate made ({made.stderr[-200:] if made.returncode else 'openssl req'})")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    https_teacher = Teacher(faults=False, tls=tls)
    try:
        prompts4 = write_prompts(prompts_path, 6, prefix="h")
        out4 = os.path.join(tmp, "https.jsonl")
        res = collect(https_teacher.url, prompts_path, out4, "--ca-file", cert)
        check(https_teacher.url.startswith("https://") and res.returncode == 0,
              f"collected over HTTPS with --ca-file (rc {res.returncode}: {res.stderr[-300:]})")
        check_complete(read_lines(out4), prompts4, 1, "HTTPS teacher")
        t0 = time.monotonic()
        res = collect(https_teacher.url, prompts_path, os.path.join(tmp, "https-untrusted.jsonl"))
        check(res.returncode != 0 and "certificate" in res.stderr and "--ca-file" in res.stderr,
              f"without --ca-file refused with a certificate error (rc {res.returncode}: {res.stderr.strip()[-200:]})")
        check(time.monotonic() - t0 < 10, f"... at once ({time.monotonic() - t0:.1f} s)")
        check(not os.path.exists(os.path.join(tmp, "https-untrusted.jsonl")) or
              os.path.getsize(os.path.join(tmp, "https-untrusted.jsonl")) == 0, "... and nothing written")
        res = collect(https_teacher.url, prompts_path, os.path.join(tmp, "never.jsonl"), "--ca-file",
                      os.path.join(tmp, "no-such.pem"))
        check(res.returncode == 2 and "no-such.pem" in res.stderr, "an unreadable --ca-file refused by name")
    finally:
        https_teacher.close()

    # 4c. distill eval --teacher --teacher-score against the faulty teacher: the held-out prompts
    # collected, stories260K's greedy answers scored by echo through 429s (Retry-After) and 500s.
    model = os.path.join(SOURCE, "models", "stories260K", "stories260K.gguf")
    faulty = Teacher()
    try:
        with open(prompts_path, "w") as f:
            for i, p in enumerate(["Once upon a time there was", "The little dog ran to", "Lily saw a big",
                                   "Tom and Sue went", "One day the sun"]):
                f.write(json.dumps({"id": i, "prompt": p}) + "\n")
        eval_out = os.path.join(tmp, "eval.json")
        res = subprocess.run([ORCHARD, "distill", "eval", "--student", model, "--teacher", faulty.url, "--prompts",
                              prompts_path, "--endpoint", "completions", "--top-logprobs", "5", "--max-tokens", "12",
                              "--teacher-score", "--out", eval_out], capture_output=True, text=True, timeout=120)
        check(res.returncode == 0, f"distill eval --teacher-score against the faulty teacher (rc {res.returncode}: "
              f"{res.stderr[-300:]})")
        outcomes = [o for _, o in faulty.requests]
        check(outcomes.count("echo-429") == 2 and outcomes.count("echo-500") == 1 and outcomes.count("echo") == 5,
              "scoring met 429s and 500s and got through: " +
              ", ".join(f"{o} {outcomes.count(o)}" for o in ("echo", "echo-429", "echo-500", "echo-bad")))
        if res.returncode == 0:
            d = json.load(open(eval_out))
            ts = d.get("teacher_score", {})
            answers = ts.get("per_answer", [])
            prompt_of = {json.dumps(x["id"]): x["prompt"] for x in map(json.loads, open(prompts_path))}
            good = 0
            for a in answers:
                prompt = prompt_of[json.dumps(a["id"])]
                _, offsets = echo_tokens(prompt + a["text"])
                n = sum(off >= len(prompt) for off in offsets)
                good += a["tokens"] == n and abs(a["logprob"] + 0.5 * n) < 1e-9
            check(len(answers) == 5 and good == 5, f"each greedy answer scored as the teacher's tokens past the prompt "
                  f"({good}/{len(answers)})")
            check(abs(ts.get("mean_logprob_per_token", 0) + 0.5) < 1e-9, "mean_logprob_per_token -0.5")
            check(abs(d.get("teacher_self_logprob_per_token", 0) + 0.1) < 1e-9,
                  "teacher_self_logprob_per_token -0.1 (the collected answers' logprobs)")
    finally:
        faulty.close()

    # 5. End to end: `orchard serve` on stories260K as the teacher, top-20 logprobs.
    serve, port = teacher_server.start(ORCHARD, model, os.path.join(tmp, "serve.log"), 4)
    try:
        check(port is not None, "orchard serve started")
        if port is not None:
            openings = ["Once upon a time", "Lily wanted to", "The little dog", "One day, Tom", "There was a big",
                        "The sun was", "Sara and Ben", "A small bird", "Mom said", "The cat"]
            with open(prompts_path, "w") as f:
                for i, p in enumerate(openings):
                    f.write(json.dumps({"id": f"s{i}", "prompt": p}) + "\n")
            out5 = os.path.join(tmp, "stories.jsonl")
            r = subprocess.run([ORCHARD, "distill", "collect", "--teacher", f"http://127.0.0.1:{port}", "--endpoint",
                                "completions", "--prompts", prompts_path, "--out", out5, "--top-logprobs", "20",
                                "--max-tokens", "24", "--temperature", "0.8", "--concurrency", "4"],
                               capture_output=True, text=True, timeout=120)
            check(r.returncode == 0, f"collected from orchard serve (rc {r.returncode}: {r.stderr[-300:]})")
            rows = read_lines(out5)
            check(sorted(x["id"] for x in rows) == sorted(f"s{i}" for i in range(10)), "all 10 prompts once")
            good = 0
            for x in rows:
                tops = x["teacher_top"]
                ok = (len(x["teacher_tokens"]) >= 1 and len(tops) == len(x["teacher_tokens"])
                      and "".join(x["teacher_tokens"]) == x["completion"]
                      and all(len(row) == 20 and all(v <= 1e-6 for v in row.values()) for row in tops)
                      and all(0.0 < sum(2.718281828459045 ** v for v in row.values()) <= 1.0 + 1e-4 for row in tops)
                      and all(lp <= max(row.values()) + 1e-6 for lp, row in zip(x["teacher_logprobs"], tops)))
                good += ok
            check(good == len(rows),
                  f"each answer has 20 logprobs per token, a distribution's part ({good}/{len(rows)})")
    finally:
        teacher_server.stop(serve)

    print(f"{len(FAILURES)} failures, {time.monotonic() - started:.1f} s")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
