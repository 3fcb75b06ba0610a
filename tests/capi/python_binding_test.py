#!/usr/bin/env python3
"""The Python binding (bindings/python/orchard) over liborchard.so: the stories260K greedy
continuations of llama2.c exactly, a generation stopped from the iterator, errors as OrchardError
with the C library's text, tokenizer and chat template, a chat's follow-up turn reusing the cache.
Run with PYTHONPATH=bindings/python and ORCHARD_LIBRARY=<build>/lib/liborchard.so.

    python_binding_test.py SHARED_DIR
"""
import json
import sys
import time
import unittest
from pathlib import Path

import orchard
from orchard import _capi


def _capi_stop(code):
    return _capi.STOP_REASONS.get(code)

SHARED = Path(sys.argv.pop(1)) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "shared"
STORIES = SHARED / "models/stories260K/stories260K.gguf"
TINY_CHAT = SHARED / "models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"


class Binding(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = orchard.Model(STORIES)

    def test_stories260k_greedy_matches_llama2c(self):
        cases = json.loads((SHARED / "models/stories260K/expected_generation.json").read_text())["cases"]
        self.assertEqual(len(cases), 4)
        for case in cases:
            self.assertEqual(self.model.tokenize(case["prompt"], add_bos=True), case["prompt_tokens"])
            generation = self.model.generate(case["prompt"], max_tokens=case["generated_tokens"], temperature=0)
            self.assertEqual("".join(generation), case["expected_continuation"], case["prompt"])
            self.assertEqual(generation.completion_tokens, case["generated_tokens"])
            self.assertEqual(generation.stop_reason, "max_tokens")
            # The same from token ids.
            text = "".join(self.model.generate(case["prompt_tokens"], max_tokens=case["generated_tokens"],
                                               temperature=0))
            self.assertEqual(text, case["expected_continuation"])

    def test_breaking_out_of_the_iterator_stops_the_engine(self):
        with self.model.session() as session:
            generation = session.generate("Once upon a time", max_tokens=5000, temperature=0)
            pieces = []
            for piece in generation:
                pieces.append(piece)
                if len(pieces) == 3:
                    break
            started = time.monotonic()
            generation.close()
            self.assertLess(time.monotonic() - started, 5)
            self.assertEqual(generation.stop_reason, "callback")
            # The engine runs at most PIECES_AHEAD pieces ahead of the loop, and stops at its next
            # token: far below the 5000 asked (or the context's 512).
            bound = 3 + orchard.PIECES_AHEAD + 2
            self.assertLessEqual(generation.completion_tokens, bound)
            self.assertGreaterEqual(generation.completion_tokens, 3)
            # A loop that breaks without close() stops it too: the iterator's last reference goes
            # (nothing in the engine's callback refers back to it) and its __del__ stops and joins.
            generation = session.generate("Once upon a time", max_tokens=5000, temperature=0)
            run = generation._run
            for _ in generation:
                break
            del generation
            self.assertIsNotNone(run.result)
            self.assertLessEqual(run.result.completion_tokens, bound)
            self.assertEqual(_capi_stop(run.result.stop_reason), "callback")

    def test_errors_carry_the_c_text(self):
        with self.assertRaises(orchard.OrchardError) as raised:
            orchard.Model("/nonexistent/model.gguf")
        self.assertEqual(raised.exception.status, -2)
        self.assertEqual(raised.exception.status_name, "ORCHARD_ERR_NOT_FOUND")
        self.assertIn("orchard_model_load: /nonexistent/model.gguf: no such file", str(raised.exception))
        with self.assertRaises(orchard.OrchardError) as raised:
            self.model.detokenize([1, 600])
        self.assertEqual(raised.exception.status_name, "ORCHARD_ERR_OUT_OF_RANGE")
        self.assertIn("token id 600", str(raised.exception))
        with self.assertRaises(orchard.OrchardError) as raised:
            "".join(self.model.generate([1, 403], max_tokens=3, top_p=0))
        self.assertIn("top_p", str(raised.exception))
        with self.assertRaises(orchard.OrchardError) as raised:
            self.model.apply_chat_template([{"role": "user", "content": "hi"}])
        self.assertEqual(raised.exception.status_name, "ORCHARD_ERR_NOT_FOUND")
        with self.assertRaises(orchard.OrchardError) as raised:
            orchard.Model(STORIES, kernels="turbo")
        self.assertEqual(raised.exception.status_name, "ORCHARD_ERR_INVALID_ARGUMENT")

    def test_tokenize_detokenize_and_stop_strings(self):
        ids = self.model.tokenize("Once upon a time", add_bos=True)
        self.assertEqual(ids, [1, 403, 407, 261, 378])
        self.assertEqual(self.model.detokenize(ids[1:]), "Once upon a time")
        self.assertEqual(self.model.bos_token, 1)
        text = "".join(self.model.generate("Once upon a time", max_tokens=100, temperature=0, stop=["Lily"]))
        self.assertEqual(text, ", there was a little girl named ")

    def test_chat_follow_up_reuses_the_cache(self):
        with orchard.Model(TINY_CHAT) as chat_model:
            self.assertTrue(chat_model.has_chat_template)
            messages = [{"role": "user", "content": "Hello ✓"}]
            rendered = chat_model.apply_chat_template(messages)
            self.assertIn("<|im_start|>user\nHello ✓<|im_end|>\n<|im_start|>assistant\n", rendered)
            reply = chat_model.chat(messages, max_tokens=6, temperature=0)
            self.assertIsInstance(reply, str)
            first = chat_model.last_usage
            self.assertEqual(first["reused_tokens"], 0)
            messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And then?"}]
            chat_model.chat(messages, max_tokens=6, temperature=0)
            second = chat_model.last_usage
            self.assertGreaterEqual(second["reused_tokens"], first["prompt_tokens"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
