#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/ (all but the tiny GGUF models, which
fuzz_make_gguf_seeds writes with the library's GGUF writer). Seeds are small real inputs: the
shared tokenizers cut down to a few hundred tokens, the shared chat templates, the templates of
tests/template/render_test.cpp, tiny generated models, schemas and request bodies, and the private
cloud node's signed notes, attestation documents, release statements, node bundles and TPM
evidence (these need the `cryptography` package: pip install cryptography).
  python3 fuzz/make_seeds.py SHARED_DIR [TARGET...]   (run from the repository root; with
  targets, only those corpora are written)"""
import json
import os
import re
import struct
import sys

SPLIT = b"\n#ORCHARD-SPLIT#\n"  # fuzz/fuzz_support.h, kSplit
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < 100_000, (target, name, len(data))
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def floats(count, seed):
    # A deterministic spread of small values (no numpy needed).
    out, x = [], seed
    for _ in range(count):
        x = (x * 1103515245 + 12345) % (1 << 31)
        out.append((x / (1 << 31) - 0.5) * 0.2)
    return out


# ---- llama2.c: a tiny checkpoint (+ the real tok512.bin) -------------------------------------
def llama2c_checkpoint(dim, ffn, layers, heads, kv_heads, vocab, seq, shared_classifier=True):
    head_dim = dim // heads
    kv_dim = kv_heads * head_dim
    count = vocab * dim + layers * (dim + dim * dim + 2 * dim * kv_dim + dim * dim + dim + 3 * dim * ffn)
    count += dim + seq * head_dim  # final norm, the unused RoPE tables
    if not shared_classifier:
        count += vocab * dim
    header = struct.pack("<7i", dim, ffn, layers, heads, kv_heads, vocab if shared_classifier else -vocab, seq)
    return header + struct.pack("<%df" % count, *floats(count, 7))


def llama2c_tokenizer(pieces, max_len=None):
    max_len = max_len or max(len(p) for p in pieces)
    out = struct.pack("<i", max_len)
    for i, p in enumerate(pieces):
        out += struct.pack("<fi", -float(i), len(p)) + p
    return out


def llama2c_seeds(shared):
    tok512 = open(os.path.join(shared, "models/stories260K/tok512.bin"), "rb").read()
    small = llama2c_checkpoint(8, 16, 1, 2, 1, 32, 8)
    put("llama2c", "tiny-shared-classifier", small)
    put("llama2c", "tiny-own-classifier", llama2c_checkpoint(8, 8, 2, 2, 2, 16, 4, shared_classifier=False))
    put("llama2c", "tiny-with-tok512", small + SPLIT + tok512)
    own = [b"<unk>", b"<s>", b"</s>"] + [bytes([c]) for c in range(32, 127)] + [b" the", b"<0x0A>", b"\xe2\x96\x81a"]
    put("llama2c", "tiny-with-own-tokenizer", llama2c_checkpoint(8, 16, 1, 2, 1, len(own), 8) + SPLIT + llama2c_tokenizer(own))
    put("llama2c", "tokenizer-only", SPLIT + tok512)


# ---- Hugging Face folder: config.json + model.safetensors ------------------------------------
def safetensors(tensors, dtype="F32", metadata=True):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {"format": "pt"}
    for i, (name, shape) in enumerate(tensors):
        n = 1
        for s in shape:
            n *= s
        values = floats(n, i + 1)
        if dtype == "F32":
            data = struct.pack("<%df" % n, *values)
        elif dtype == "F16":
            data = struct.pack("<%de" % n, *values)
        else:  # BF16: the high half of the float32
            data = b"".join(struct.pack("<f", v)[2:] for v in values)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def hf_seeds(shared):
    def model(arch, hidden=8, inter=16, heads=2, kv=1, vocab=16, tied=False, dtype="F32", qkv_bias=False,
              qk_norm=False, extra=None):
        head_dim = hidden // heads
        cfg = {"architectures": [arch + "ForCausalLM"], "model_type": arch.lower(), "hidden_size": hidden,
               "intermediate_size": inter, "num_hidden_layers": 1, "num_attention_heads": heads,
               "num_key_value_heads": kv, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "vocab_size": vocab,
               "max_position_embeddings": 64, "tie_word_embeddings": tied, "hidden_act": "silu"}
        cfg.update(extra or {})
        t = [("model.embed_tokens.weight", (vocab, hidden)), ("model.norm.weight", (hidden,))]
        if not tied:
            t.append(("lm_head.weight", (vocab, hidden)))
        p = "model.layers.0."
        t += [(p + "input_layernorm.weight", (hidden,)), (p + "post_attention_layernorm.weight", (hidden,)),
              (p + "self_attn.q_proj.weight", (heads * head_dim, hidden)),
              (p + "self_attn.k_proj.weight", (kv * head_dim, hidden)),
              (p + "self_attn.v_proj.weight", (kv * head_dim, hidden)),
              (p + "self_attn.o_proj.weight", (hidden, heads * head_dim)),
              (p + "mlp.gate_proj.weight", (inter, hidden)), (p + "mlp.up_proj.weight", (inter, hidden)),
              (p + "mlp.down_proj.weight", (hidden, inter))]
        if qkv_bias:
            t += [(p + "self_attn.q_proj.bias", (heads * head_dim,)), (p + "self_attn.k_proj.bias", (kv * head_dim,)),
                  (p + "self_attn.v_proj.bias", (kv * head_dim,))]
        if qk_norm:
            t += [(p + "self_attn.q_norm.weight", (head_dim,)), (p + "self_attn.k_norm.weight", (head_dim,))]
        return json.dumps(cfg, indent=1).encode() + SPLIT + safetensors(t, dtype)

    put("hf_model", "llama-f32", model("Llama"))
    put("hf_model", "llama-bf16-llama3-rope", model("Llama", dtype="BF16", extra={"rope_scaling": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32}}))
    put("hf_model", "qwen2-f16-tied", model("Qwen2", tied=True, dtype="F16", qkv_bias=True))
    put("hf_model", "qwen3-f32", model("Qwen3", heads=2, kv=2, qk_norm=True, extra={"head_dim": 4}))
    # The real golden config over tiny weights that do not match it (refused at binding).
    golden = open(os.path.join(shared, "golden/llama-hf-f32/config.json"), "rb").read()
    put("hf_model", "golden-config-tiny-weights", golden + SPLIT + safetensors([("model.norm.weight", (8,))]))
    put("hf_model", "safetensors-only", safetensors([("a", (2, 3)), ("b", (4,))], metadata=False))


# ---- tokenizer.json: the shared tokenizers cut down ------------------------------------------
def shrink_tokenizer(path, keep):
    tok = json.load(open(path, encoding="utf-8"))
    model = tok["model"]
    vocab = {k: v for k, v in model["vocab"].items() if v < keep}
    model["vocab"] = vocab
    merges = []
    for m in model.get("merges", []):
        a, b = (m.split(" ", 1) if isinstance(m, str) else m)
        if a in vocab and b in vocab and (a + b) in vocab:
            merges.append(m)
    model["merges"] = merges[:400]
    # Added tokens after the kept vocabulary, renumbered; the post-processor's ids follow them.
    renumber = {}
    added = []
    for i, t in enumerate(tok.get("added_tokens", [])[:8]):
        renumber[t["id"]] = keep + i
        added.append(dict(t, id=keep + i))
    tok["added_tokens"] = added

    def fix_ids(node):
        if isinstance(node, dict):
            if "ids" in node and isinstance(node["ids"], list):
                node["ids"] = [renumber.get(i, i if i < keep else keep) for i in node["ids"]]
            for v in node.values():
                fix_ids(v)
        elif isinstance(node, list):
            for v in node:
                fix_ids(v)
    fix_ids(tok.get("post_processor"))
    return tok


def tokenizer_seeds(shared):
    base = os.path.join(shared, "tokenizers")
    for name, keep in (("qwen3", 320), ("llama3", 320), ("spm32k", 400)):
        tok = shrink_tokenizer(os.path.join(base, name, "tokenizer.json"), keep)
        text = json.dumps(tok, ensure_ascii=False, separators=(",", ":")).encode()
        put("tokenizer_json", name + "-small", text)
        config = json.load(open(os.path.join(base, name, "tokenizer_config.json"), encoding="utf-8"))
        config.pop("added_tokens_decoder", None)
        config.pop("chat_template", None)
        put("tokenizer_json", name + "-small-with-config", text + SPLIT + json.dumps(config).encode())
    good = '"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}'
    put("tokenizer_json", "minimal", "{" + good + "}")
    put("tokenizer_json", "minimal-added", "{" + good + ', "added_tokens": [{"id": 3, "content": "<s>", "special": true}]}'
        + SPLIT.decode() + '{"bos_token": "<s>", "eos_token": {"content": "<s>"}, "add_bos_token": true}')
    put("tokenizer_json", "byte-fallback", json.dumps({
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                           {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                     {"type": "ByteFallback"}, {"type": "Fuse"},
                                                     {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>",
                  "vocab": dict([("<unk>", 0), ("\u2581", 1), ("a", 2), ("\u2581a", 3)] +
                                [("<0x%02X>" % b, 4 + b) for b in range(256)]),
                  "merges": ["\u2581 a"]}}))


# ---- chat templates --------------------------------------------------------------------------
def c_string_literals(text):
    """The C++ string literals of `text`, in order (plain and R"(...)" ones)."""
    out = []
    for m in re.finditer(r'R"\((.*?)\)"|"((?:[^"\\\n]|\\.)*)"', text, re.S):
        if m.group(1) is not None:
            out.append(m.group(1))
        else:
            s = m.group(2)
            out.append(bytes(s, "utf-8").decode("unicode_escape").encode("latin-1", "replace").decode("utf-8", "replace"))
    return out


def template_seeds(shared):
    base = os.path.join(shared, "tokenizers")
    for name in ("qwen3", "llama3"):
        config = json.load(open(os.path.join(base, name, "tokenizer_config.json"), encoding="utf-8"))
        put("chat_template", name + "-template", config["chat_template"])
    # The small templates of the interpreter's tests: each case is {name, source, context, expected}.
    src = open(os.path.join(os.path.dirname(ROOT), "..", "tests", "template", "render_test.cpp"), encoding="utf-8").read()
    body = src[src.index("kCases[] = {"):]
    body = body[:body.index("\n};")]
    literals = c_string_literals(body)
    for i in range(0, len(literals) - 3, 4):
        name, source, context = literals[i], literals[i + 1], literals[i + 2]
        if re.fullmatch(r"[A-Za-z0-9]+", name):
            put("chat_template", "render-" + name, source)
            if context not in ("{}", ""):
                put("chat_template", "context-" + name, context)
    # Conversations, for the fixed template (the input as messages or as the whole context).
    put("chat_template", "messages-simple", json.dumps([{"role": "user", "content": "Hi"}]))
    put("chat_template", "messages-tools", json.dumps([
        {"role": "system", "content": "sys"}, {"role": "user", "content": "w?"},
        {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": [1, 2.5, None]}}}]},
        {"role": "tool", "content": "{\"t\": 1}"}, {"role": "assistant", "content": "<think>x</think>\n\ndone"}]))
    put("chat_template", "context-full", json.dumps({
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image"}]}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "add_generation_prompt": True, "enable_thinking": False, "extra": {"b": 2, "a": "x"}}))


# ---- JSON schemas ----------------------------------------------------------------------------
SCHEMAS = {
    "object-required": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                                         "ok": {"type": "boolean"}}, "required": ["name"]},
    "nulls": {"properties": {"a": {"type": "null"}, "b": {"type": "null"}}},
    "string-length": {"type": "string", "minLength": 2, "maxLength": 4},
    "integer-range": {"type": "integer", "minimum": -15, "maximum": 120},
    "integer-exclusive": {"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 8},
    "number": {"type": "number", "minimum": -2, "maximum": 10},
    "enum": {"enum": ["red", "green", 3, None, {"k": [1]}]},
    "const": {"const": {"a": [1, 2]}},
    "type-list": {"type": ["boolean", "null"]},
    "array": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3},
    "any-of": {"anyOf": [{"type": "string", "maxLength": 1}, {"type": "integer", "minimum": 0}]},
    "one-all-of": {"oneOf": [{"allOf": [{"type": "integer"}]}, {"type": "string"}]},
    "tree-ref": {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
                 "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["v"]}},
                 "$ref": "#/$defs/node"},
    "free-object": {"type": "object"},
    "additional": {"type": "object", "additionalProperties": {"type": "integer"}},
    "tool-call": {"type": "object", "properties": {"name": {"const": "get_weather"}, "arguments": {
        "type": "object", "properties": {"city": {"type": "string", "description": "x"}}, "required": ["city"]}},
        "required": ["name", "arguments"], "title": "call"},
}


def schema_seeds():
    for name, schema in SCHEMAS.items():
        put("json_schema", name, json.dumps(schema))


# ---- OpenAI request bodies -------------------------------------------------------------------
def request_seeds():
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
              "parameters": SCHEMAS["object-required"]}}]
    bodies = {
        "chat-minimal": {"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
        "chat-sampling": {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "Hi"}],
                          "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": 7, "max_tokens": 16,
                          "stop": ["\n", "END"], "stream": True, "stream_options": {"include_usage": True},
                          "logprobs": True, "top_logprobs": 2, "frequency_penalty": 0.1, "presence_penalty": 0.2,
                          "min_p": 0.05, "repetition_penalty": 1.1, "repeat_last_n": -1},
        "chat-tools": {"messages": [{"role": "user", "content": "weather?"},
                                    {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                     "function": {"name": "get_weather", "arguments": "{\"name\": \"Paris\"}"}}]},
                                    {"role": "tool", "tool_call_id": "c1", "content": "21"}],
                       "tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        "chat-json-schema": {"messages": [{"role": "user", "content": [{"type": "text", "text": "json"}]}],
                             "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMAS["tree-ref"]}},
                             "max_completion_tokens": 64, "chat_template_kwargs": {"enable_thinking": False}},
        "chat-json-object": {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"},
                             "tool_choice": "none", "n": 1},
        "completion": {"model": "m", "prompt": "Once upon a time", "max_tokens": 8, "echo": True, "logprobs": 2,
                       "stop": "\n", "temperature": 0},
        "completion-list": {"prompt": ["one"], "stream": True},
        "embeddings-text": {"model": "m", "input": ["Once upon a time", "a cat"], "dimensions": 32,
                            "encoding_format": "base64"},
        "embeddings-tokens": {"input": [[1, 2, 3], [4]], "encoding_format": "float"},
        "ollama-chat": {"model": "m:latest", "stream": False, "format": {"type": "object"},
                        "messages": [{"role": "user", "content": "hi", "images": []},
                                     {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
                                     {"role": "tool", "tool_name": "f", "content": "1"}],
                        "options": {"num_predict": 8, "repeat_penalty": 1.1, "repeat_last_n": 32, "top_k": 20, "stop": ["x"]}},
        "ollama-generate": {"model": "m", "prompt": "Once", "system": "s", "raw": False, "format": "json",
                            "options": {"num_predict": -1, "temperature": 0}},
        "ollama-generate-raw": {"prompt": "Once", "raw": True, "context": [], "options": {"num_predict": -2}},
    }
    for name, body in bodies.items():
        put("openai_request", name, json.dumps(body))


# ---- GGUF: prefixes of real files (the header and the first metadata) ------------------------
def gguf_prefix_seeds(shared):
    for rel, n in (("models/stories260K/stories260K.gguf", 2048),
                   ("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf", 4096)):
        data = open(os.path.join(shared, rel), "rb").read()[:n]
        put("gguf", os.path.basename(rel) + ".prefix", data)
    put("gguf", "llama2c-tiny", llama2c_checkpoint(8, 16, 1, 2, 1, 32, 8))


# ---- The private cloud node's attestation chain (attestation, tpm_evidence) -----------------
# Real signed objects, made here with the `cryptography` package (Ed25519, ECDSA P-256) from the
# formats' specifications (c2sp.org/signed-note and tlog-checkpoint, src/cloud/*.h), under keys
# derived from fixed names: the fuzzers (fuzz/attestation_fuzz.cpp, fuzz/tpm_evidence_fuzz.cpp)
# derive the same keys, so these seeds verify there and the mutator starts past every signature.
FUZZ_NOW = 1767225600  # 2026-01-01T00:00:00Z, the fuzzers' fixed "now" (kNow)


def sha256(data):
    import hashlib
    return hashlib.sha256(data).digest()


def fuzz_secret(label):
    # SHA-256("orchard fuzz " || label): an Ed25519 seed or a P-256 scalar (fuzzers: fuzz_secret).
    return sha256(b"orchard fuzz " + label.encode())


class NoteKey:
    def __init__(self, name):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        self.name = name
        self.key = Ed25519PrivateKey.from_private_bytes(fuzz_secret(name))
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = sha256(name.encode() + b"\n\x01" + self.public)[:4]

    def vkey(self):
        import base64
        return "%s+%s+%s" % (self.name, self.key_id.hex(), base64.b64encode(b"\x01" + self.public).decode())

    def signature_line(self, text):
        import base64
        return "\u2014 %s %s\n" % (self.name, base64.b64encode(self.key_id + self.key.sign(text.encode())).decode())


def sign_note(text, keys):
    return text + "\n" + "".join(k.signature_line(text) for k in keys)


def merkle_leaf(entry):
    return sha256(b"\x00" + entry.encode())


def merkle_node(left, right):
    return sha256(b"\x01" + left + right)


def b64(data):
    import base64
    return base64.b64encode(data).decode()


class TpmKey:
    # The attestation key of the fuzzers' TPM: ECDSA P-256, evidence as tpm_quote.h encodes it.
    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        self.key = ec.derive_private_key(int.from_bytes(fuzz_secret("tpm attestation key"), "big"), ec.SECP256R1())
        self.identity = b64(self.key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))

    @staticmethod
    def quote(extra, banks, pcr_digest, magic=0xff544347, kind=0x8018):
        # TPMS_ATTEST (TPM 2.0 Part 2, 10.12.12) of a quote, fields as a TPM fills them.
        out = struct.pack(">IH", magic, kind)
        out += struct.pack(">H", 34) + b"\x00\x0b" + sha256(b"fuzz AK name")  # qualifiedSigner
        out += struct.pack(">H", len(extra)) + extra                          # extraData
        out += struct.pack(">QIIB", 123456789, 7, 3, 1)                       # clockInfo
        out += struct.pack(">Q", 0x2019102200120001)                          # firmwareVersion
        out += struct.pack(">I", len(banks))
        for alg, bits in banks:
            out += struct.pack(">HB", alg, len(bits)) + bits
        return out + struct.pack(">H", len(pcr_digest)) + pcr_digest

    def evidence(self, attest, pcr=23):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        # RFC 6979 nonces: the same seeds each time the corpus is written.
        r, s = decode_dss_signature(self.key.sign(attest, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
        r, s = r.to_bytes(32, "big"), s.to_bytes(32, "big")
        return (struct.pack(">BBH", 1, pcr, len(attest)) + attest + struct.pack(">HHH", 0x0018, 0x000b, 32) + r
                + struct.pack(">H", 32) + s)

    def evidence_for(self, measurement, digest, pcr=23):
        pcr_value = sha256(bytes(32) + measurement)  # a reset PCR extended once
        bits = bytearray(3)
        bits[pcr // 8] |= 1 << (pcr % 8)
        return self.evidence(self.quote(digest, [(0x000b, bytes(bits))], sha256(pcr_value)), pcr)


def release_text(name, models):
    text = "binary %s\n" % sha256(b"fuzz binary").hex()
    for model in models:
        text += "model %s %s\n" % (sha256(model.encode()).hex(), model)
    text += "config %s\n" % sha256(b"fuzz config").hex()
    return "orchard release v1\nname %s\n%smeasurement %s\n" % (name, text, sha256(text.encode()).hex()), sha256(text.encode())


def attestation_document(node, measurement, signing_key, attester, identity, evidence_of, issued, expires):
    body = ("orchard attestation v1\nnode %s\nmeasurement %s\nsigning-key %s\nattester %s\nidentity %s\n"
            "issued %d\nexpires %d\n" % (node, measurement.hex(), signing_key, attester, identity, issued, expires))
    return body + "evidence %s\n" % b64(evidence_of(sha256(body.encode())))


def attestation_seeds(shared):
    # Selector byte (attestation_fuzz.cpp): '0' note, '1' document, '2' release, '3' bundle.
    log, witness, release_key = NoteKey("log.fuzz.example"), NoteKey("witness.fuzz.example"), NoteKey("release.fuzz.example")
    attester, node_key = NoteKey("attester.fuzz.example"), NoteKey("node0")
    tpm = TpmKey()

    release, measurement = release_text("orchard-fuzz-1", ["model.gguf"])
    put("attestation", "release-one-model", "2" + release)
    put("attestation", "release-with-tokenizer", "2" + release_text("orchard-fuzz-2", ["model.gguf", "tokenizer.json"])[0])
    release_note = sign_note(release, [release_key])

    software = lambda digest: attester.key.sign(b"orchard software attester v1\n" + digest)
    issued, expires = FUZZ_NOW - 3600, FUZZ_NOW + 86400
    documents = {
        "software": attestation_document("node0", measurement, node_key.vkey(), "software", attester.vkey(), software,
                                         issued, expires),
        "tpm": attestation_document("node0", measurement, node_key.vkey(), "tpm", tpm.identity,
                                    lambda digest: tpm.evidence_for(measurement, digest), issued, expires),
    }
    for kind, document in documents.items():
        put("attestation", "document-" + kind, "1" + document)

    # The node's OHTTP key configurations (RFC 9458's example key), as sign_node_keys writes them.
    example = json.load(open(os.path.join(shared, "pcc/rfc9458-example.json")))
    config = bytes.fromhex(example["key_config"])
    keys_note = sign_note("orchard node keys v1\nnode node0\nkeys %s\nexpires %d\n"
                          % ((struct.pack(">H", len(config)) + config).hex(), FUZZ_NOW + 3600), [node_key])

    for kind, document in documents.items():
        leaves = [merkle_leaf(release_note), merkle_leaf(document)]  # the log: the release, then the node
        checkpoint = "log.fuzz.example\n2\n%s\n" % b64(merkle_node(*leaves))
        bundle = {"node": "node0", "document": document, "release": release_note,
                  "checkpoint": sign_note(checkpoint, [log, witness]),
                  "release_proof": {"index": 0, "hashes": [b64(leaves[1])]},
                  "document_proof": {"index": 1, "hashes": [b64(leaves[0])]}, "keys": keys_note}
        put("attestation", "bundle-" + kind, "3" + json.dumps(bundle, sort_keys=True, ensure_ascii=False, separators=(",", ":")))
        if kind == "software":
            put("attestation", "note-checkpoint", "0" + bundle["checkpoint"])
            unlogged = dict(bundle, checkpoint="", release_proof=None, document_proof=None)
            put("attestation", "bundle-unlogged", "3" + json.dumps(unlogged, sort_keys=True, separators=(",", ":")))
    put("attestation", "note-release", "0" + release_note)
    put("attestation", "note-keys", "0" + keys_note)
    # A checkpoint with an extension line, cosigned, plus a signature by a key nobody knows.
    extended = "log.fuzz.example\n18446744073709551615\n%s\nextension line\n" % b64(sha256(b"root"))
    put("attestation", "note-checkpoint-extension", "0" + sign_note(extended, [log, witness, NoteKey("stranger")]))
    # The published notes of the shared vectors (the fuzzer knows their keys), each once.
    vectors, seen = json.load(open(os.path.join(shared, "pcc/signed-note-vectors.json"))), set()
    for group in ("valid", "parse_only", "must_reject"):
        for i, vector in enumerate(vectors[group]):
            if vector["note"] not in seen:
                seen.add(vector["note"])
                put("attestation", "note-vector-%s-%d" % (group, i), "0" + vector["note"])


# Two more seeds come from a real TPM and are not written here (committed as made, once):
# tpm_evidence/evidence-swtpm and attestation/document-swtpm. With swtpm 0.7.1 and tpm2-tools
# (TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=P on a fresh `swtpm socket --tpm2 --flags
# not-need-init,startup-clear`): tpm2_pcrreset 23; tpm2_pcrextend 23:sha256=M with
# M = SHA-256("orchard fuzz measurement"); tpm2_createek -G ecc; tpm2_createak -G ecc -g sha256
# -s ecdsa -f pem; tpm2_quote -l sha256:23 -g sha256 -q Q -m MSG -s SIG. The evidence is
# 01 17 u16(len MSG) MSG SIG (SIG is already the TPMT_SIGNATURE tpm_quote.h reads), quoted with
# Q = SHA-256("orchard fuzz document"); the document is attestation_document's body for node0
# with attester tpm, the AK's SubjectPublicKeyInfo as identity and M as measurement, quoted with
# Q = SHA-256(body). The AK is the TPM's own, not the fuzzer's key: the evidence is refused at
# its signature under the fixed identity, and verifies once the fuzzer signs its attest.
def tpm_evidence_seeds():
    # The fuzzer's fixed verifier inputs (tpm_evidence_fuzz.cpp): measurement and document digest.
    tpm = TpmKey()
    measurement, digest = sha256(b"orchard fuzz measurement"), sha256(b"orchard fuzz document")
    good = tpm.evidence_for(measurement, digest)
    put("tpm_evidence", "evidence-pcr23", good)
    put("tpm_evidence", "evidence-pcr16", tpm.evidence_for(measurement, digest, pcr=16))
    attest = good[4:4 + struct.unpack(">H", good[2:4])[0]]
    put("tpm_evidence", "attest-quote", attest)
    two_banks = tpm.quote(digest, [(0x000b, b"\x00\x00\x80"), (0x0004, b"\x00\x00\x80\x00")], bytes(32))
    put("tpm_evidence", "evidence-two-banks", tpm.evidence(two_banks))
    put("tpm_evidence", "evidence-not-a-quote", tpm.evidence(tpm.quote(digest, [], b"", kind=0x8017)))
    put("tpm_evidence", "identity", tpm.identity)


# ---- Privacy Pass (privacy_pass) -----------------------------------------------------------
# RFC 9578 Appendix A.2, type 2 test vector 1: the issuer key (pkS), challenge, token request,
# response and token. fuzz/privacy_pass_fuzz.cpp holds the same vector's private key, challenge
# and pending token, so these verify there.
PP_PKS = (
    "30820152303d06092a864886f70d01010a3030a00d300b0609608648016503040202a11a301806092a864886f70d0101"
    "08300b0609608648016503040202a2030201300382010f003082010a0282010100cb1aed6b6a95f5b1ce013a4cfcab25"
    "b94b2e64a23034e4250a7eab43c0df3a8c12993af12b111908d4b471bec31d4b6c9ad9cdda90612a2ee903523e6de5a2"
    "24d6b02f09e5c374d0cfe01d8f529c500a78a2f67908fa682b5a2b430c81eaf1af72d7b5e794fc98a3139276879757ce"
    "453b526ef9bf6ceb99979b8423b90f4461a22af37aab0cf5733f7597abe44d31c732db68a181c6cbbe607d8c0e52e065"
    "5fd9996dc584eca0be87afbcd78a337d17b1dba9e828bbd81e291317144e7ff89f55619709b096cbb9ea474cead264c2"
    "073fe49740c01f00e109106066983d21e5f83f086e2e823c879cd43cef700d2a352a9babd612d03cad02db134b7e225a"
    "5f0203010001")
PP_CHALLENGE = (
    "0002000e6973737565722e6578616d706c65208e7acc900e393381e8810b7c9e4a68b5163f1f880ab6688a6ffe780923"
    "609e88000e6f726967696e2e6578616d706c65")
PP_TOKEN_REQUEST = (
    "0002086a95be84b63cfed0993bb579194a72a95057e1548ac463a9a5b33b011f2b2011d59487f01862f1d8e4d5ea42e7"
    "3a660fbc3d010b944a54da3a4e0942f8894c0884589b438cb902e9a34278970f33c16f351f7dae58d273c3ab66ef368d"
    "a36f785e89e24d1d983d5c34311cd21f290f9e89e8646ab0d0a48988fcd46230de5e7603cd12cc95c7ec5002e5e26737"
    "aa7eb69c626476e6c8d46510ee404a3d7daf3a23b7c66735d363ca13676925c6ed0117f60d165ce1f8ba616d041b6384"
    "baf6da3e2f757cb18e879a4f8595c2dc895ddf1f4279c75768d108b5c47f95f94e81e2d8b9c8b74476924ab3b7c45243"
    "fc99ac5466e8a3680ad37fa15c96010b274094")
PP_TOKEN_RESPONSE = (
    "675d84b751d9e593330ec4b6d7ab69c9a61517e98971f4b736150508174b4335761464f237be2d72bbae4b94dffc6143"
    "413f6351f1aa4efde6c32d4d6d9392a008290d56d1222f9b77a1336213e01934f7d972f3bf9ea5a5786c321352f103b3"
    "667e605379a55f0fb925fbb09b8a9f85e7dd4b388a3b49d06fd70ba28f6a780e3bc8f6421554fd6c38b63ef19f84ccfc"
    "f14709dd0b4d72213c1f060893854eba0ea1a147e275da320db5e9849882d5f9179efa8a2d8d3b803f9d1445ef5c1f66"
    "0be08883ce9b29a0a992fc035d2938cbb61c440044438dbb8b3ce7158a8f9827d230482f622d291406ab236b32b12262"
    "7ae0fd36bd0d6b7607b8044ace404d44")
PP_TOKEN = (
    "0002aa72019d1f951df197021ce63876fe8b0a02dc1c31a12b0a2dd1508d07827f055969f643b4cfda5196d4aa86aeb5"
    "368834f4f06de46950ed435b3b81bd036d44ca572f8982a9ca248a3056186322d93ca147266121ddeb5632c07f1f71cd"
    "2708bc6a21b533d07294b5e900faf5537dd3eb33cee4e08c9670d1e5358fd184b0e00c637174f5206b14c7bb0e724ebf"
    "6b56271e5aa2ed94c051c4a433d302b23bc52460810d489fb050f9de5c868c6c1b06e3849fd087629f704cc724bc0d09"
    "84d5c339686fcdd75f9a9cdd25f37f855f6f4c584d84f716864f546b696d620c5bd41a811498de84ff9740ba3003ba24"
    "22d26b91eb745c084758974642a42078201543246ddb58030ea8e722376aa82484dca9610a8fb7e018e396165462e17a"
    "03e40ea7e128c090a911ecc708066cb201833010c1ebd4e910fc8e27a1be467f78671836a508257123a45e4e0ae2180a"
    "434bd1037713466347a8ebe46439d3da1970")


def privacy_pass_seeds():
    # Selector byte (privacy_pass_fuzz.cpp): '0' token, '1' request, '2' response, '3' challenge,
    # '4' Authorization header value, '5' issuer key SPKI.
    import base64
    token = bytes.fromhex(PP_TOKEN)
    put("privacy_pass", "token-vector", b"0" + token)
    put("privacy_pass", "token-base64url", "0" + base64.urlsafe_b64encode(token).decode())
    put("privacy_pass", "request-vector", b"1" + bytes.fromhex(PP_TOKEN_REQUEST))
    put("privacy_pass", "response-vector", b"2" + bytes.fromhex(PP_TOKEN_RESPONSE))
    put("privacy_pass", "challenge-vector", b"3" + bytes.fromhex(PP_CHALLENGE))
    # Issuer name only: no redemption context, no origin info.
    put("privacy_pass", "challenge-plain", b"3" + struct.pack(">HH", 2, 18) + b"issuer.example.net" + b"\x00\x00\x00")
    b64 = base64.urlsafe_b64encode(token).decode()
    put("privacy_pass", "authorization-quoted", '4PrivateToken token="%s"' % b64)
    put("privacy_pass", "authorization-unquoted", "4PrivateToken token=%s" % b64)
    put("privacy_pass", "authorization-params", '4privatetoken  challenge="abc\\"d" ,\ttoken = %s , extra=1' % b64)
    forged = bytearray(token)
    forged[-1] ^= 1  # the authenticator no longer verifies
    put("privacy_pass", "authorization-forged", '4PrivateToken token="%s"' % base64.urlsafe_b64encode(bytes(forged)).decode())
    put("privacy_pass", "spki-vector", b"5" + bytes.fromhex(PP_PKS))


def main():
    # make_seeds.py [SHARED_DIR [TARGET...]]: with targets, only their seeds are written.
    shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(ROOT), "..", "..", "shared")
    only = set(sys.argv[2:])
    writers = [("llama2c", lambda: llama2c_seeds(shared)), ("hf_model", lambda: hf_seeds(shared)),
               ("tokenizer_json", lambda: tokenizer_seeds(shared)), ("chat_template", lambda: template_seeds(shared)),
               ("json_schema", schema_seeds), ("openai_request", request_seeds),
               ("gguf", lambda: gguf_prefix_seeds(shared)), ("attestation", lambda: attestation_seeds(shared)),
               ("tpm_evidence", tpm_evidence_seeds),
               ("privacy_pass", privacy_pass_seeds)]
    unknown = only - {target for target, _ in writers}
    if unknown:
        sys.exit("make_seeds.py: no seed writer for %s" % ", ".join(sorted(unknown)))
    for target, write in writers:
        if not only or target in only:
            write()
    for target in sorted(os.listdir(ROOT)):
        if only and target not in only:
            continue
        files = os.listdir(os.path.join(ROOT, target))
        size = sum(os.path.getsize(os.path.join(ROOT, target, f)) for f in files)
        print("%-16s %3d seeds, %7d bytes" % (target, len(files), size))


if __name__ == "__main__":
    main()
