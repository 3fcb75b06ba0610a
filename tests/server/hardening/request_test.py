"""Hostile request bodies against `orchard serve`: deep JSON, schemas that ask for huge automata,
a slow schema beside other requests. Each is refused with a 4xx OpenAI error object while the
server stays up, answers /health within 2 s and keeps its memory under 1 GB.

Before the fixes: the deep bodies crashed the server (SIGSEGV at the first copy of the value);
minLength 1e9 built its automaton until the OOM killer came (here: the address-space limit);
1,000 optional properties compiled for 47 s under a lock that held up every json_object request.

    python3 request_test.py ORCHARD_BINARY SHARED_DIR
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_harness import Checks, Server, json_error  # noqa: E402

DEEP = 100_000
MESSAGE = {"role": "user", "content": "hi"}


def deep_then_key(where):
    """A value nested DEEP levels, followed by another key: the shape that crashed the server."""
    deep = "[" * DEEP + "]" * DEEP
    msg = json.dumps(MESSAGE)
    bodies = {
        "top level": '{"messages":[%s],"x":%s,"y":1}' % (msg, deep),
        "messages": '{"messages":[{"role":"user","content":"hi","x":%s,"y":1}]}' % deep,
        "tools": '{"messages":[%s],"tools":[{"type":"function","function":{"name":"f","parameters":'
                 '{"x":%s,"type":"object"}}}]}' % (msg, deep),
        "chat_template_kwargs": '{"messages":[%s],"chat_template_kwargs":{"a":%s,"b":1}}' % (msg, deep),
        "schema const": '{"messages":[%s],"response_format":{"type":"json_schema","json_schema":'
                        '{"schema":{"const":%s,"type":"string"}}}}' % (msg, deep),
        "schema enum": '{"messages":[%s],"response_format":{"type":"json_schema","json_schema":'
                       '{"schema":{"enum":[%s],"type":"string"}}}}' % (msg, deep),
        "schema $defs": '{"messages":[%s],"response_format":{"type":"json_schema","json_schema":'
                        '{"schema":{"$defs":{"a":%s},"type":"string"}}}}' % (msg, deep),
        "tool_calls.arguments": json.dumps({"messages": [MESSAGE, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": deep}}]}]}),
    }
    return bodies[where]


def schema_request(schema, max_tokens=4):
    return {"messages": [MESSAGE], "max_tokens": max_tokens,
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}


def optional_properties(n):
    return {"type": "object", "properties": {f"property_{i}": {"type": "integer"} for i in range(n)}}


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def expect_400(srv, body, needle=None, path="/v1/chat/completions", timeout=60):
    status, _, raw = srv.request("POST", path, body, headers={"Content-Type": "application/json"}, timeout=timeout)
    assert 400 <= status < 500, f"answered {status}: {raw[:300]!r}"
    error = json_error(raw)
    if needle:
        assert needle in error["message"], f"'{needle}' not in: {error['message'][:300]}"
    return error


def main():
    checks = Checks()
    # The address-space limit turns a runaway allocation into a clean failure on today's main
    # instead of the machine's OOM killer; 1 GB is the bound on the tiny model's RSS.
    with Server.from_argv(vmem_kib=4 << 20) as srv:
        for where in ["top level", "messages", "tools", "chat_template_kwargs", "schema const", "schema enum",
                      "schema $defs", "tool_calls.arguments"]:
            with checks.check(f"a value nested {DEEP} deep in {where} is a 400, the server stays up"):
                expect_400(srv, deep_then_key(where), "levels deep")
                srv.assert_health(within=2.0)

        for keyword, schema in [("minLength", {"type": "string", "minLength": 10**9}),
                                ("maxLength", {"type": "string", "maxLength": 10**9}),
                                ("minItems", {"type": "array", "minItems": 10**9})]:
            with checks.check(f"a schema with {keyword} 1e9 is a 400 naming {keyword}, within 10 s"):
                start = time.monotonic()
                expect_400(srv, schema_request(schema), f"$.{keyword}")
                assert time.monotonic() - start < 10, f"took {time.monotonic() - start:.1f} s"
                srv.assert_health(within=2.0)

        for n in [1000, 10000]:
            with checks.check(f"a schema with {n} optional properties is a 400 naming properties, within 10 s"):
                start = time.monotonic()
                expect_400(srv, schema_request(optional_properties(n)), "$.properties")
                assert time.monotonic() - start < 10, f"took {time.monotonic() - start:.1f} s"

        with checks.check("a schema that compiles slowly delays no request that does not use it"):
            # Eight alternatives of 90 optional properties: refused by the determinization's
            # budget after about a second of work (longer under the sanitizers).
            slow = schema_request({"anyOf": [optional_properties(90) for _ in range(8)]})
            slow_result = {}
            # json_object's automaton is compiled once here, so that the request timed below only
            # waits for what the slow schema holds up (before: the cache's lock, for all of it).
            status, _, raw = srv.chat(max_tokens=4, response_format={"type": "json_object"})
            assert status == 200, f"json_object request answered {status}: {raw[:200]!r}"

            def run_slow():
                start = time.monotonic()
                slow_result["status"] = srv.request("POST", "/v1/chat/completions", slow, timeout=120)[0]
                slow_result["seconds"] = time.monotonic() - start

            thread = threading.Thread(target=run_slow)
            thread.start()
            time.sleep(0.2)
            start = time.monotonic()
            status, _, raw = srv.chat(max_tokens=4, response_format={"type": "json_object"})
            other = time.monotonic() - start
            thread.join()
            assert status == 200, f"json_object request answered {status}: {raw[:200]!r}"
            assert slow_result.get("status") == 400, f"slow schema answered {slow_result}"
            assert other < 0.5 and other < slow_result["seconds"] / 2, (
                f"the json_object request took {other:.2f} s beside a {slow_result['seconds']:.2f} s schema")

        with checks.check("a context overflow on /v1/completions names param 'prompt'"):
            error = expect_400(srv, {"prompt": "hello " * 5000, "max_tokens": 4}, path="/v1/completions")
            assert error.get("param") == "prompt", f"param {error.get('param')!r}: {error}"

        with checks.check("the server's peak RSS stayed under 1 GB through all of these"):
            kib = peak_rss_kib(srv.proc.pid)
            assert 0 < kib < 1 << 20, f"peak RSS {kib / 1024:.0f} MiB"
            print(f"  peak RSS {kib / 1024:.0f} MiB")

        with checks.check("the server is still up and healthy"):
            srv.assert_health(within=2.0)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
