"""API keys, CORS, paths without /v1, --alias and --chat-template-file on the real binary (issue 21):
what a browser and a client that is not the official one send, over real sockets. Python 3 standard
library only; about 2 s.

    python3 api_surface_test.py ORCHARD_BINARY SHARED_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "hardening"))
from server_harness import MODEL_REL, Checks, Server, json_error  # noqa: E402

ORIGIN = "https://app.example"
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "temperature": 0}


def main():
    orchard, shared = sys.argv[1], sys.argv[2]
    checks = Checks()
    tmp = tempfile.mkdtemp(prefix="orchard-api-surface-")
    key_file = os.path.join(tmp, "keys")
    with open(key_file, "w") as f:
        f.write("# keys\nsk-from-file\n")
    # A template of our own: the prompt it renders shows in usage.prompt_tokens.
    template = os.path.join(tmp, "plain.jinja")
    with open(template, "w") as f:
        f.write("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:")
    args = ["--api-key", "sk-cli", "--api-key-file", key_file, "--cors-origin", ORIGIN, "--alias", "my-model",
            "--chat-template-file", template]
    with Server(orchard, shared, args=args) as srv:
        with checks.check("/health needs no key"):
            status, _, body = srv.request("GET", "/health")
            assert status == 200 and b'"ok"' in body, (status, body)
        with checks.check("no key, a wrong key: 401 invalid_api_key with WWW-Authenticate: Bearer"):
            for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "Basic sk-cli"}):
                for method, path, body in (("GET", "/v1/models", None), ("POST", "/v1/chat/completions", CHAT),
                                           ("POST", "/chat/completions", CHAT), ("GET", "/metrics", None)):
                    status, h, raw = srv.request(method, path, body, headers=headers)
                    assert status == 401, (headers, path, status, raw[:200])
                    assert h.get("www-authenticate") == "Bearer", h
                    error = json_error(raw)
                    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error", error
        with checks.check("either key opens every route; the alias is the model's id"):
            for key in ("sk-cli", "sk-from-file"):
                status, _, raw = srv.request("GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})
                assert status == 200, (key, status, raw[:200])
                assert [m["id"] for m in json.loads(raw)["data"]] == ["my-model"], raw
            auth = {"Authorization": "Bearer sk-cli"}
            status, _, raw = srv.request("GET", "/models/my-model", headers=auth)
            assert status == 200 and json.loads(raw)["id"] == "my-model", (status, raw)
            status, _, raw = srv.request("GET", "/v1/models/other", headers=auth)
            assert status == 404 and json_error(raw)["code"] == "model_not_found", (status, raw)
            status, _, raw = srv.request("POST", "/chat/completions", dict(CHAT, model="my-model"), headers=auth)
            assert status == 200, (status, raw[:300])
            answer = json.loads(raw)
            assert answer["model"] == "my-model", answer
            assert answer["system_fingerprint"].startswith("orchard-0.1.0-"), answer
            status, _, raw = srv.request("POST", "/completions", {"prompt": [[1, 2, 3], "Once"], "max_tokens": 2},
                                         headers=auth)
            assert status == 200 and [c["index"] for c in json.loads(raw)["choices"]] == [0, 1], (status, raw[:300])
        with checks.check("the template file renders the prompt"):
            # "user: Hi\nassistant:" against the same text as a completion's prompt.
            status, _, raw = srv.request("POST", "/v1/chat/completions", CHAT, headers={"Authorization": "Bearer sk-cli"})
            chat_prompt = json.loads(raw)["usage"]["prompt_tokens"]
            status, _, raw = srv.request("POST", "/v1/completions", {"prompt": "user: Hi\nassistant:", "max_tokens": 1},
                                         headers={"Authorization": "Bearer sk-cli"})
            assert json.loads(raw)["usage"]["prompt_tokens"] == chat_prompt, (chat_prompt, raw)
        with checks.check("a CORS preflight: 204 without the key, the origin, methods and headers"):
            status, h, raw = srv.request("OPTIONS", "/v1/chat/completions", headers={
                "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type"})
            assert status == 204, (status, h, raw)
            assert h.get("access-control-allow-origin") == ORIGIN, h
            assert "POST" in h.get("access-control-allow-methods", ""), h
            assert "authorization" in h.get("access-control-allow-headers", "").lower(), h
            assert h.get("access-control-max-age"), h
            status, h, _ = srv.request("OPTIONS", "/chat/completions", headers={"Origin": ORIGIN})
            assert status == 204 and h.get("access-control-allow-origin") == ORIGIN, (status, h)
        with checks.check("answers to an allowed origin carry it; others do not"):
            auth = {"Authorization": "Bearer sk-cli"}
            status, h, _ = srv.request("GET", "/v1/models", headers=dict(auth, Origin=ORIGIN))
            assert status == 200 and h.get("access-control-allow-origin") == ORIGIN and "Origin" in h.get("vary", ""), h
            status, h, _ = srv.request("GET", "/v1/models", headers={"Origin": ORIGIN})  # 401: readable by the page
            assert status == 401 and h.get("access-control-allow-origin") == ORIGIN, (status, h)
            status, h, _ = srv.request("GET", "/v1/models", headers=dict(auth, Origin="https://evil.example"))
            assert status == 200 and "access-control-allow-origin" not in h, h
        with checks.check("streamed answers carry the CORS header too"):
            status, h, raw = srv.request("POST", "/v1/chat/completions", dict(CHAT, stream=True),
                                         headers={"Authorization": "Bearer sk-cli", "Origin": ORIGIN})
            assert status == 200 and h.get("access-control-allow-origin") == ORIGIN, (status, h)
            assert raw.rstrip().endswith(b"data: [DONE]"), raw[-100:]
        with checks.check("still serving"):
            srv.assert_health()

    with Server(orchard, shared) as srv:
        with checks.check("without --cors-origin: OPTIONS is a 404, no CORS headers; no key needed"):
            status, h, raw = srv.request("OPTIONS", "/v1/chat/completions", headers={"Origin": ORIGIN})
            assert status == 404, (status, raw[:200])
            status, h, _ = srv.request("GET", "/v1/models", headers={"Origin": ORIGIN})
            assert status == 200 and "access-control-allow-origin" not in h, (status, h)

    model = os.path.join(shared, MODEL_REL)
    bad = os.path.join(tmp, "bad.jinja")
    with open(bad, "w") as f:
        f.write("{% for m in messages %}{{ m.content }\n")
    empty = os.path.join(tmp, "no-keys")
    with open(empty, "w") as f:
        f.write("# none yet\n\n")
    for name, extra, expected in (
            ("a template file that does not parse", ["--chat-template-file", bad], f"--chat-template-file {bad}"),
            ("an unknown built-in template", ["--chat-template", "vicuna"], "chatml, llama3, qwen"),
            ("an empty API key file", ["--api-key-file", empty], "no API key"),
            ("a CORS origin with a path", ["--cors-origin", "https://a.example/app/"], "--cors-origin")):
        with checks.check(f"{name}: a clear error at start"):
            run = subprocess.run([orchard, "serve", "--model", model, "--port", "0", *extra], capture_output=True,
                                 text=True, timeout=60)
            assert run.returncode != 0, run
            assert expected in run.stderr, run.stderr
    sys.exit(checks.summary())


if __name__ == "__main__":
    main()
