"""LoRA adapters chosen per request in `orchard serve` (issue 20), end to end on stories260K.

Four random adapters are written here with the standard library (three PEFT folders, one GGUF
LoRA), independently of Orchard's writers, and served beside the base:

  1. 16 concurrent greedy completions spread over the 4 adapters and the base each equal the same
     request served alone, and /metrics counts passes that decoded several adapters together
     (on a server that loaded them through POST /v1/adapters; the same texts from one started
     with 4 --lora);
  2. every adapter changes the base's output, and an adapter applied per request gives the same
     text as the same adapter merged into the weights (--lora-merge), on the reference kernels;
  3. /v1/models lists the base and each adapter with its parent;
  4. an unknown model name is a 404 OpenAI error object (model_not_found) on a server that
     offers adapters, "BASE:NAME" chooses an adapter, and a plain server still takes any name;
  5. POST /v1/adapters and DELETE /v1/adapters/NAME are refused (403) without
     --allow-adapter-updates and work with it; a deleted adapter then 404s;
  6. a bad adapter file (another model's shapes, a missing folder, a broken file) is a 4xx
     naming it, at run time, and an error naming it at start;
  7. chat completions (the tiny chat model, a Q8_0 base) with an adapter, streamed and not.

    python3 adapter_test.py ORCHARD_BINARY SHARED_DIR
"""
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hardening"))
from server_harness import Checks, http_request, json_error  # noqa: E402

MODEL_REL = os.path.join("models", "stories260K", "stories260K.gguf")
BASE_ID = "stories260K.gguf"

# stories260K's shapes (its GGUF: embedding 64, feed-forward 172, 8 heads and 4 KV heads of 8, 5 layers).
DIM, FFN, KV_DIM, LAYERS = 64, 172, 32, 5
# (Hugging Face module, GGUF tensor, in features, out features)
TARGETS = [("q_proj", "attn_q", DIM, DIM), ("k_proj", "attn_k", DIM, KV_DIM), ("v_proj", "attn_v", DIM, KV_DIM),
           ("o_proj", "attn_output", DIM, DIM), ("gate_proj", "ffn_gate", DIM, FFN), ("up_proj", "ffn_up", DIM, FFN),
           ("down_proj", "ffn_down", FFN, DIM)]
RANK, ALPHA = 4, 8

PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went to the park", "One day, a big fish",
           "There was a girl named Sue", "The sun was hot", "Tim had a red ball", "A bird sat on a tree",
           "Mom said", "The cat was sad because", "They played all day", "In the forest there lived",
           "Ben wanted a cake", "The boat", "She looked at the sky and", "Every morning the old man"]


# The tiny chat model (a qwen2 GGUF in Q8_0, with a chat template): width 256, feed-forward 512,
# 2 KV heads of 64, 2 layers.
CHAT_MODEL_REL = os.path.join("models", "tiny-chat", "tiny-qwen2-chat-q8_0.gguf")
CHAT_TARGETS = [("q_proj", "attn_q", 256, 256), ("k_proj", "attn_k", 256, 128), ("v_proj", "attn_v", 256, 128),
                ("o_proj", "attn_output", 256, 256), ("gate_proj", "ffn_gate", 256, 512),
                ("up_proj", "ffn_up", 256, 512), ("down_proj", "ffn_down", 512, 256)]


def random_lora(seed, rank=RANK, dims=None, layers=LAYERS, targets=TARGETS):
    """{(layer, module): (A [rank][in], B [out][rank])}: A uniform like PEFT's init, B nonzero."""
    rng = random.Random(seed)
    out = {}
    for layer in range(layers):
        for module, _, n_in, n_out in targets:
            if dims:
                n_in, n_out = dims.get(module, (n_in, n_out))
            a = [[rng.uniform(-1, 1) / n_in ** 0.5 for _ in range(n_in)] for _ in range(rank)]
            b = [[rng.gauss(0, 0.12) for _ in range(rank)] for _ in range(n_out)]
            out[(layer, module)] = (a, b)
    return out


def floats(rows):
    flat = [x for row in rows for x in row]
    return struct.pack(f"<{len(flat)}f", *flat)


def write_peft(folder, lora, rank=RANK):
    """adapter_config.json and adapter_model.safetensors as PEFT writes them (float32)."""
    os.makedirs(folder, exist_ok=True)
    config = {"peft_type": "LORA", "base_model_name_or_path": "stories260K", "r": rank, "lora_alpha": ALPHA,
              "target_modules": [t[0] for t in TARGETS], "lora_dropout": 0.0, "bias": "none",
              "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "task_type": "CAUSAL_LM"}
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(config, f)
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for (layer, module), (a, b) in sorted(lora.items()):
        part = "self_attn" if module.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
        prefix = f"base_model.model.model.layers.{layer}.{part}.{module}"
        for suffix, m in (("lora_A", a), ("lora_B", b)):
            data = floats(m)
            header[f"{prefix}.{suffix}.weight"] = {"dtype": "F32", "shape": [len(m), len(m[0])],
                                                   "data_offsets": [offset, offset + len(data)]}
            blobs.append(data)
            offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(folder, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def gguf_string(s):
    data = s.encode()
    return struct.pack("<Q", len(data)) + data


def write_gguf_lora(path, lora):
    """A GGUF LoRA as llama.cpp reads it: blk.L.<tensor>.weight.lora_a (ne [in, r]) and .lora_b
    (ne [r, out]), float32. The rows of a llama GGUF's attn_q/attn_k are permuted for adjacent-pair
    RoPE; a random adapter has no order to keep, so B's rows are written as they are."""
    kv = [("general.architecture", 8, gguf_string("llama")), ("general.type", 8, gguf_string("adapter")),
          ("adapter.type", 8, gguf_string("lora")), ("adapter.lora.alpha", 6, struct.pack("<f", ALPHA))]
    gguf_name = {t[0]: t[1] for t in TARGETS}
    tensors = []
    for (layer, module), (a, b) in sorted(lora.items()):
        base = f"blk.{layer}.{gguf_name[module]}.weight"
        tensors.append((base + ".lora_a", [len(a[0]), len(a)], floats(a)))
        tensors.append((base + ".lora_b", [len(b[0]), len(b)], floats(b)))
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, kind, value in kv:
        out += gguf_string(key) + struct.pack("<I", kind) + value
    offset, data = 0, b""
    for name, ne, blob in tensors:
        out += gguf_string(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        out += struct.pack("<IQ", 0, offset)
        pad = -len(blob) % 32
        data += blob + b"\0" * pad
        offset += len(blob) + pad
    out += b"\0" * (-len(out) % 32)
    with open(path, "wb") as f:
        f.write(out + data)


class Serve:
    """`orchard serve` on stories260K on a free port, with extra flags; stopped on exit."""

    def __init__(self, orchard, shared, *flags, model=MODEL_REL):
        self.log = tempfile.NamedTemporaryFile(prefix="orchard-adapters-", suffix=".log", delete=False)
        cmd = [orchard, "serve", "--model", os.path.join(shared, model), "--port", "0", *flags]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        self.port = None
        for _ in range(1200):
            text = self.text()
            match = re.search(r"serving \S+ on http://[^:]+:(\d+)", text)
            if match:
                self.port = int(match.group(1))
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"orchard serve exited ({self.proc.returncode}) before serving:\n{text}")
            threading.Event().wait(0.05)
        self.proc.kill()
        raise RuntimeError("orchard serve did not start within 60 s:\n" + self.text())

    def text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def request(self, method, path, body=None, timeout=60):
        status, _, raw = http_request(self.port, method, path, body, timeout=timeout)
        return status, raw

    def complete(self, prompt, model=None, max_tokens=24):
        body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        if model is not None:
            body["model"] = model
        status, raw = self.request("POST", "/v1/completions", body)
        assert status == 200, f"model {model!r}: answered {status}: {raw[:300]!r}"
        answer = json.loads(raw)
        return answer["model"], answer["choices"][0]["text"]

    def metrics(self):
        status, raw = self.request("GET", "/metrics")
        assert status == 200
        return raw.decode()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.log.name)
        return False


def started(checks, what, orchard, shared, *flags, model=MODEL_REL):
    """A Serve, or None after a failed check naming what did not start."""
    try:
        return Serve(orchard, shared, *flags, model=model)
    except RuntimeError as e:
        with checks.check(f"orchard serve {what} starts"):
            raise AssertionError(str(e)[-2000:]) from None
    return None


def expect_error(status_raw, status, needle=None, code=None):
    got, raw = status_raw
    assert got == status, f"answered {got}, not {status}: {raw[:300]!r}"
    error = json_error(raw)
    if needle:
        assert needle in error["message"], f"{needle!r} not in the message: {error['message']!r}"
    if code:
        assert error.get("code") == code, f"code {error.get('code')!r}, not {code!r}"
    return error


def counter(metrics, name, labels):
    match = re.search(re.escape(name + "{" + labels + "}") + r" (\d+)", metrics)
    return int(match.group(1)) if match else None


class Setup:
    """The adapter files of the test, written into a temporary folder."""

    def __init__(self, folder):
        self.names = ["alpha", "beta", "gamma", "delta"]
        self.paths = {}
        for i, name in enumerate(self.names[:3]):
            self.paths[name] = os.path.join(folder, name)
            write_peft(self.paths[name], random_lora(100 + i))
        self.paths["delta"] = os.path.join(folder, "delta.gguf")
        write_gguf_lora(self.paths["delta"], random_lora(103))
        # Another model's adapter: q_proj for a model of width 128.
        self.wrong_shape = os.path.join(folder, "wrong-shape")
        write_peft(self.wrong_shape, random_lora(104, dims={"q_proj": (128, 128)}))
        self.broken = os.path.join(folder, "broken")
        write_peft(self.broken, random_lora(105))
        with open(os.path.join(self.broken, "adapter_model.safetensors"), "r+b") as f:
            f.truncate(1000)
        self.missing = os.path.join(folder, "no-such-adapter")
        self.lora_flags = [f for name in self.names for f in ("--lora", f"{name}={self.paths[name]}")]
        # Request i asks for model i % 5: each adapter and the base get 3 or 4 of the 16.
        models = [None, *self.names]
        self.requests = [(PROMPTS[i], models[i % 5]) for i in range(16)]
        self.alone = {}  # request i served alone: (model, text)


def serving_adapters(checks, srv, t):
    """Checks 1 to 4 on a server with --allow-adapter-updates that loads the 4 adapters."""
    with checks.check("(5) with --allow-adapter-updates, POST /v1/adapters loads PEFT folders and GGUF LoRAs"):
        for name in t.names:
            status, raw = srv.request("POST", "/v1/adapters", {"name": name, "path": t.paths[name]})
            assert status == 200, f"{name}: {status} {raw[:300]!r}"
            loaded = json.loads(raw)
            assert loaded["id"] == name and loaded["parent"] == BASE_ID and loaded["object"] == "model", loaded

    with checks.check("(1) 16 concurrent greedy requests over 4 adapters and the base equal each served alone; "
                      "/metrics shows passes shared by several adapters"):
        for i, (prompt, model) in enumerate(t.requests):
            t.alone[i] = srv.complete(prompt, model)
        # Rounds of the 16 at once, until one has shared a pass between adapters (a busy machine can
        # spread a round's arrivals out); every round's texts must equal the texts served alone.
        shared_passes, after = 0, ""
        for _ in range(5):
            before = srv.metrics()
            together, errors = {}, []
            start = threading.Barrier(16)

            def run(i):
                try:
                    start.wait()
                    together[i] = srv.complete(*t.requests[i])
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(f"request {i}: {e}")

            threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert not errors, errors
            for i, (prompt, model) in enumerate(t.requests):
                assert together[i] == t.alone[i], (f"request {i} ({model or 'base'}, {prompt!r}): together "
                                                   f"{together[i]!r} != alone {t.alone[i]!r}")
            after = srv.metrics()
            for n in ["2", "3", "4", "5", "6", "7", "8+"]:
                b = counter(before, "orchard_batch_passes_total", f'adapters="{n}"')
                a = counter(after, "orchard_batch_passes_total", f'adapters="{n}"')
                assert a is not None and b is not None, f'no orchard_batch_passes_total{{adapters="{n}"}} in /metrics'
                shared_passes += a - b
            if shared_passes > 0:
                break
        assert shared_passes > 0, "no pass decoded requests of several adapters together in 5 rounds:\n" + \
            "\n".join(line for line in after.splitlines() if line.startswith("orchard_batch"))

    with checks.check("(2) each adapter changes the base's output, and each answer names its model"):
        for name in t.names:
            differs = 0
            for prompt in PROMPTS[:4]:
                base_model, base_text = srv.complete(prompt)
                model, text = srv.complete(prompt, name)
                assert base_model == BASE_ID and model == name, f"answers name {base_model!r} and {model!r}"
                differs += text != base_text
            assert differs > 0, f"adapter {name} gives the base's text for every prompt"

    with checks.check("(3) /v1/models lists the base and each adapter with its parent"):
        status, raw = srv.request("GET", "/v1/models")
        assert status == 200, raw
        data = json.loads(raw)["data"]
        ids = [m["id"] for m in data]
        assert ids == [BASE_ID, *t.names], ids
        for m in data:
            assert m["object"] == "model" and isinstance(m["created"], int) and m["owned_by"], m
            assert m.get("parent") == (None if m["id"] == BASE_ID else BASE_ID), m

    with checks.check("(4) unknown names are 404 model_not_found on a server with adapters; BASE:NAME chooses"):
        for model in ["nope", "gpt-4o-mini", "base:nope", f"{BASE_ID}:nope", "alpha:beta"]:
            expect_error(srv.request("POST", "/v1/completions", {"prompt": "Hi", "model": model}), 404,
                         model, "model_not_found")
        expect_error(srv.request("POST", "/v1/chat/completions",
                                 {"messages": [{"role": "user", "content": "Hi"}], "model": "nope"}),
                     404, "nope", "model_not_found")
        expect_error(srv.request("POST", "/v1/completions", {"prompt": "Hi", "model": 7}), 400, "model")
        for model in [f"{BASE_ID}:beta", "base:beta"]:
            assert srv.complete(PROMPTS[2], model)[1] == srv.complete(PROMPTS[2], "beta")[1], model
        assert srv.complete(PROMPTS[0], BASE_ID) == srv.complete(PROMPTS[0]) == t.alone[0]



def adapters_at_start(checks, srv, t):
    with checks.check("(5) adapters given with --lora at start: listed with their parent, the texts of the same "
                      "files loaded through POST; POST and DELETE /v1/adapters are 403 without "
                      "--allow-adapter-updates"):
        status, raw = srv.request("GET", "/v1/models")
        assert status == 200, raw
        assert [(m["id"], m.get("parent")) for m in json.loads(raw)["data"]] == \
            [(BASE_ID, None)] + [(name, BASE_ID) for name in t.names], raw
        for i, (prompt, model) in enumerate(t.requests[:5]):
            assert srv.complete(prompt, model) == t.alone[i], f"request {i} ({model})"
        expect_error(srv.request("POST", "/v1/adapters", {"name": "x", "path": t.paths["alpha"]}), 403,
                     "--allow-adapter-updates", "adapter_updates_disabled")
        expect_error(srv.request("DELETE", "/v1/adapters/alpha"), 403, "--allow-adapter-updates")
        assert srv.complete(*t.requests[1]) == t.alone[1]
        expect_error(srv.request("POST", "/v1/completions", {"prompt": "Hi", "model": "gpt-4o-mini"}), 404,
                     "gpt-4o-mini", "model_not_found")


def chat_server(checks, srv):
    with checks.check("(7) chat completions over a Q8_0 base: an adapter changes the greedy reply, streamed and "
                      "not, and the chunks name the adapter"):
        def chat(model, stream):
            body = {"messages": [{"role": "user", "content": "Tell me about the sea."}], "max_tokens": 16,
                    "temperature": 0, "stream": stream}
            if model:
                body["model"] = model
            status, raw = srv.request("POST", "/v1/chat/completions", body)
            assert status == 200, f"{model}: {status} {raw[:300]!r}"
            if not stream:
                answer = json.loads(raw)
                return answer["model"], answer["choices"][0]["message"]["content"]
            names, text = set(), ""
            for line in raw.decode().splitlines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    chunk = json.loads(line[6:])
                    names.add(chunk["model"])
                    for choice in chunk["choices"]:
                        text += choice["delta"].get("content") or ""
            assert len(names) == 1, names
            return names.pop(), text

        base = chat(None, False)
        adapted = chat("tone", False)
        assert base[0] == "tiny-qwen2-chat-q8_0.gguf" and adapted[0] == "tone", (base[0], adapted[0])
        assert adapted[1] != base[1], f"the adapter gives the base's reply {base[1]!r}"
        assert chat("tone", True) == adapted and chat(None, True) == base


def plain_server(checks, srv):
    with checks.check("(4) a server without adapters answers any model name with the base; BASE:NAME is a 404"):
        base = srv.complete(PROMPTS[0])[1]
        assert srv.complete(PROMPTS[0], "gpt-4o-mini") == (BASE_ID, base)
        expect_error(srv.request("POST", "/v1/completions", {"prompt": "Hi", "model": "base:alpha"}), 404,
                     "alpha", "model_not_found")
        status, raw = srv.request("GET", "/v1/models")
        assert [m["id"] for m in json.loads(raw)["data"]] == [BASE_ID], raw


def updating_server(checks, srv, t):
    with checks.check("(5) with --allow-adapter-updates: POST loads, DELETE unloads, then the name 404s"):
        expect_error(srv.request("POST", "/v1/completions", {"prompt": "Hi", "model": "gpt-4o-mini"}), 404,
                     "gpt-4o-mini", "model_not_found")
        status, raw = srv.request("POST", "/v1/adapters", {"name": "a2", "path": t.paths["gamma"]})
        assert status == 200, raw
        loaded = json.loads(raw)
        assert loaded["id"] == "a2" and loaded["parent"] == BASE_ID, loaded
        status, raw = srv.request("GET", "/v1/models")
        assert [(m["id"], m.get("parent")) for m in json.loads(raw)["data"]] == \
            [(BASE_ID, None)] + [(name, BASE_ID) for name in t.names] + [("a2", BASE_ID)], raw
        # The same file under another name (request 3 is gamma's): the same text.
        assert srv.complete(t.requests[3][0], "a2")[1] == t.alone[3][1]
        expect_error(srv.request("POST", "/v1/adapters", {"name": "a2", "path": t.paths["alpha"]}), 409, "a2")
        status, raw = srv.request("POST", "/v1/adapters", {"name": "a4", "path": t.paths["delta"], "scale": 0.5})
        assert status == 200, raw
        half = srv.complete(PROMPTS[0], "a4")[1]
        status, raw = srv.request("DELETE", "/v1/adapters/a2")
        assert status == 200 and json.loads(raw) == {"id": "a2", "object": "model", "deleted": True}, raw
        expect_error(srv.request("POST", "/v1/completions", {"prompt": "Hi", "model": "a2"}), 404, "a2",
                     "model_not_found")
        expect_error(srv.request("DELETE", "/v1/adapters/a2"), 404, "a2")
        status, raw = srv.request("GET", "/v1/models")
        assert [m["id"] for m in json.loads(raw)["data"]] == [BASE_ID, *t.names, "a4"], raw
        # The GGUF adapter at scale 0.5 still changes the base's text.
        assert half != srv.complete(PROMPTS[0])[1], "a4 at scale 0.5 gives the base's text"

    with checks.check("(6) bad adapters are 4xx naming the file and the problem"):
        e = expect_error(srv.request("POST", "/v1/adapters", {"name": "w", "path": t.wrong_shape}), 400, t.wrong_shape)
        assert any(w in e["message"] for w in ("q_proj", "attn_q", "shape", "128")), e["message"]
        expect_error(srv.request("POST", "/v1/adapters", {"name": "m", "path": t.missing}), 400, t.missing)
        expect_error(srv.request("POST", "/v1/adapters", {"name": "b", "path": t.broken}), 400, t.broken)
        expect_error(srv.request("POST", "/v1/adapters", {"name": "bad:name", "path": t.paths["alpha"]}), 400, "name")
        expect_error(srv.request("POST", "/v1/adapters", {"name": "x"}), 400, "path")
        expect_error(srv.request("POST", "/v1/adapters", {"name": "x", "path": t.paths["alpha"], "scale": "2"}), 400,
                     "scale")
        expect_error(srv.request("POST", "/v1/adapters", "{not json"), 400)
        status, raw = srv.request("GET", "/v1/models")
        assert [m["id"] for m in json.loads(raw)["data"]] == [BASE_ID, *t.names, "a4"], raw


def main():
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} ORCHARD_BINARY SHARED_DIR")
    orchard, shared = sys.argv[1], sys.argv[2]
    checks = Checks()
    work = tempfile.TemporaryDirectory(prefix="orchard-adapters-")
    t = Setup(work.name)

    def updates(srv):
        serving_adapters(checks, srv, t)
        updating_server(checks, srv, t)

    for what, flags, run in [
            ("--allow-adapter-updates", ["--parallel", "16", "--allow-adapter-updates"], updates),
            ("with 4 --lora", ["--parallel", "4", *t.lora_flags], lambda srv: adapters_at_start(checks, srv, t)),
            ("without adapters", [], lambda srv: plain_server(checks, srv))]:
        srv = started(checks, what, orchard, shared, *flags)
        if srv:
            with srv:
                run(srv)

    chat_lora = os.path.join(work.name, "tone")
    write_peft(chat_lora, random_lora(106, layers=2, targets=CHAT_TARGETS))
    srv = started(checks, "on the tiny chat model with --lora", orchard, shared, "--lora", f"tone={chat_lora}",
                  model=CHAT_MODEL_REL)
    if srv:
        with srv:
            chat_server(checks, srv)

    with checks.check("(6) `orchard serve --lora` with a bad adapter exits naming the file"):
        result = subprocess.run([orchard, "serve", "--model", os.path.join(shared, MODEL_REL), "--port", "0",
                                 "--lora", f"w={t.wrong_shape}"], capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and t.wrong_shape in result.stderr, (result.returncode, result.stderr[-500:])

    unmerged = started(checks, "--kernels reference --lora", orchard, shared, "--kernels", "reference",
                       "--lora", f"alpha={t.paths['alpha']}")
    merged = started(checks, "--kernels reference --lora --lora-merge", orchard, shared, "--kernels", "reference",
                     "--lora", f"alpha={t.paths['alpha']}", "--lora-merge")
    if not (unmerged and merged):
        for srv in (unmerged, merged):
            if srv:
                srv.__exit__(None, None, None)
    else:
        with unmerged, merged, checks.check("(2) an adapter per request gives the text of the same adapter merged "
                                            "(--lora-merge), reference kernels"):
            for prompt in PROMPTS[:4]:
                assert merged.complete(prompt)[1] == unmerged.complete(prompt, "alpha")[1], prompt

    work.cleanup()
    sys.exit(checks.summary())


if __name__ == "__main__":
    main()
