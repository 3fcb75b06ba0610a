"""Orchard from Python: a ctypes binding over the C API (include/orchard/orchard_c.h), standard
library only.

    import orchard
    model = orchard.Model("models/stories260K/stories260K.gguf")
    for piece in model.generate("Once upon a time", max_tokens=40, temperature=0):
        print(piece, end="", flush=True)

liborchard.so is found through $ORCHARD_LIBRARY, else a copy installed inside this package, else
the repository's build/lib (see orchard/_capi.py).
"""
import atexit
import ctypes
import json
import os
import queue
import threading
import weakref

from . import _capi
from ._capi import OrchardError

__all__ = ["Model", "Session", "Generation", "OrchardError", "version"]


def version():
    """The C library's version, "MAJOR.MINOR.PATCH"."""
    return _capi.lib().orchard_version().decode()


def _ids_array(ids):
    ids = [int(i) for i in ids]
    return (ctypes.c_int32 * max(1, len(ids)))(*ids), len(ids)


class _Closing:
    """`with` closes, and so does collection; close() must be safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Model(_Closing):
    """A model and its tokenizer, loaded once. `path`: a .gguf file, a Hugging Face folder, or a
    llama2.c checkpoint (which needs `tokenizer`, e.g. tok512.bin). `kernels`: "fast" or
    "reference"; `threads`: forward-pass threads (0: chosen from the model's size); `n_ctx`:
    context per session (0: the model's, capped at 4096); `memory_budget`: bytes of weights held
    in memory (0: all of them mapped); `kv_cache_type`: "auto", "f32", "f16" or "int8".

    generate() and chat() run on the model's own session, whose cache keeps the last
    conversation: a chat's follow-up turn computes only its new tokens. session() makes more.
    A model is safe to use from several threads; its default session runs one generation at a
    time (another waits)."""

    def __init__(self, path, tokenizer=None, *, kernels="fast", threads=0, n_ctx=0, memory_budget=0,
                 kv_cache_type="auto"):
        self._handle = None
        self._session = None
        library = _capi.lib()
        options = _capi.ModelOptions()
        _capi.check(library.orchard_model_options_init(ctypes.byref(options)))
        options.kernels = kernels.encode()
        options.kv_cache_type = kv_cache_type.encode()
        options.n_threads = int(threads)
        options.n_ctx = int(n_ctx)
        options.memory_budget = int(memory_budget)
        handle = ctypes.c_void_p()
        _capi.check(library.orchard_model_load(os.fsencode(path), os.fsencode(tokenizer) if tokenizer else None,
                                               ctypes.byref(options), ctypes.byref(handle)))
        self._handle = handle
        info = _capi.ModelInfo(struct_size=ctypes.sizeof(_capi.ModelInfo))
        _capi.check(library.orchard_model_get_info(self._handle, ctypes.byref(info)))
        self.path = str(path)
        self.architecture = info.architecture.decode()
        self.n_vocab = info.n_vocab
        self.n_ctx_train = info.n_ctx_train
        self.n_params = info.n_params
        self.bos_token = None if info.bos_token < 0 else info.bos_token
        self.eos_token = None if info.eos_token < 0 else info.eos_token
        self.add_bos = bool(info.add_bos)
        self.has_chat_template = bool(info.has_chat_template)

    def close(self):
        """Frees the model (and its default session) now rather than when collected."""
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._handle is not None:
            _capi.lib().orchard_model_free(self._handle)
            self._handle = None

    def _live(self):
        if self._handle is None:
            raise OrchardError(_capi.ERR_INVALID_ARGUMENT, "the model is closed", "ORCHARD_ERR_INVALID_ARGUMENT")
        return self._handle

    def tokenize(self, text, add_bos=False):
        """Token ids of `text` (str; special tokens written in it become those tokens)."""
        data = text.encode("utf-8")
        library = _capi.lib()
        count = ctypes.c_size_t()
        capacity = len(data) + 8
        while True:
            buffer = (ctypes.c_int32 * capacity)()
            status = library.orchard_tokenize(self._live(), data, len(data), int(bool(add_bos)), buffer, capacity,
                                              ctypes.byref(count))
            if status == _capi.ERR_BUFFER_TOO_SMALL and count.value > capacity:
                capacity = count.value
                continue
            _capi.check(status)
            return list(buffer[:count.value])

    def detokenize(self, ids, skip_special=False):
        """The text of token ids."""
        array, n = _ids_array(ids)
        return self._text_call(lambda buffer, capacity, length: _capi.lib().orchard_detokenize(
            self._live(), array, n, int(bool(skip_special)), buffer, capacity, length), 4 * n + 64)

    def apply_chat_template(self, messages, add_generation_prompt=True, tools=None):
        """The model's chat template rendered for `messages` (a list of {"role", "content"} dicts)
        as transformers' apply_chat_template does. Tokenize it without BOS."""
        messages_json = json.dumps(messages, ensure_ascii=False).encode("utf-8")
        tools_json = json.dumps(tools, ensure_ascii=False).encode("utf-8") if tools is not None else None
        return self._text_call(lambda buffer, capacity, length: _capi.lib().orchard_apply_chat_template(
            self._live(), messages_json, tools_json, int(bool(add_generation_prompt)), buffer, capacity, length),
            len(messages_json) + 4096)

    @staticmethod
    def _text_call(call, capacity):
        length = ctypes.c_size_t()
        while True:
            buffer = ctypes.create_string_buffer(capacity)
            status = call(buffer, capacity, ctypes.byref(length))
            if status == _capi.ERR_BUFFER_TOO_SMALL and length.value + 1 > capacity:
                capacity = length.value + 1
                continue
            _capi.check(status)
            return buffer.raw[:length.value].decode("utf-8")

    def session(self):
        """A new conversation with its own KV cache."""
        return Session(self)

    def _default_session(self):
        if self._session is None:
            self._session = Session(self)
        return self._session

    def generate(self, prompt, **options):
        """An iterator of the text pieces generated after `prompt` (a str, encoded with BOS when
        the model wants one, or a list of token ids) on the model's session; see
        Session.generate for the options."""
        return self._default_session().generate(prompt, **options)

    def chat(self, messages, **options):
        """The assistant's reply to `messages` (via the chat template) as one str, on the model's
        session: append the reply and the next user message and call again, and only the new
        tokens are computed. Options as for generate()."""
        return self._default_session().chat(messages, **options)

    @property
    def last_usage(self):
        """The token counts of the last chat() (see Session.last_usage)."""
        return self._session.last_usage if self._session is not None else None


class Session(_Closing):
    """One conversation: its own KV cache, which keeps the last generation's tokens, so that a
    prompt extending them (the next turn) computes only what is new. One generation at a time:
    a second waits for the first."""

    def __init__(self, model):
        self.model = model
        self._handle = None
        self._active = weakref.WeakSet()
        handle = ctypes.c_void_p()
        _capi.check(_capi.lib().orchard_session_create(model._live(), ctypes.byref(handle)))
        self._handle = handle
        # After chat(): {"prompt_tokens", "reused_tokens", "completion_tokens", "stop_reason"}.
        self.last_usage = None

    def close(self):
        """Stops what runs on the session and frees it."""
        for generation in list(self._active):
            generation.close()
        if self._handle is not None:
            _capi.lib().orchard_session_free(self._handle)
            self._handle = None

    def reset(self):
        """Forgets the cached conversation."""
        _capi.check(_capi.lib().orchard_session_reset(self._live()))

    def _live(self):
        if self._handle is None:
            raise OrchardError(_capi.ERR_INVALID_ARGUMENT, "the session is closed", "ORCHARD_ERR_INVALID_ARGUMENT")
        return self._handle

    def generate(self, prompt, max_tokens=-1, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
                 repeat_penalty=1.0, repeat_last_n=64, presence_penalty=0.0, frequency_penalty=0.0, seed=0,
                 stop=None):
        """An iterator (a Generation) of the text pieces generated after `prompt`: a str (encoded
        with BOS when the model wants one) or a list of token ids (the whole conversation). The
        engine runs on its own threads and hands pieces over a queue; breaking out of the loop, or
        close(), stops it at the next token. temperature 0 is greedy; max_tokens < 0 goes on until
        the end of sequence or of the context; generation ends before the first of the `stop`
        strings. A failure raises OrchardError from the iteration."""
        ids = self.model.tokenize(prompt, add_bos=self.model.add_bos) if isinstance(prompt, str) else list(prompt)
        library = _capi.lib()
        options = _capi.SamplingOptions()
        _capi.check(library.orchard_sampling_options_init(ctypes.byref(options)))
        options.temperature = temperature
        options.top_k = top_k
        options.top_p = top_p
        options.min_p = min_p
        options.repeat_penalty = repeat_penalty
        options.repeat_last_n = repeat_last_n
        options.presence_penalty = presence_penalty
        options.frequency_penalty = frequency_penalty
        options.seed = seed
        options.max_tokens = -1 if max_tokens is None else int(max_tokens)
        stop = [stop] if isinstance(stop, str) else list(stop or [])
        stop_array = (ctypes.c_char_p * max(1, len(stop)))(*[s.encode("utf-8") for s in stop])
        options.stop = stop_array
        options.n_stop = len(stop)
        generation = Generation(self, ids, options, stop_array)
        self._active.add(generation)
        return generation

    def chat(self, messages, **options):
        """The reply to `messages` through the model's chat template, as one str."""
        text = self.model.apply_chat_template(messages, add_generation_prompt=True)
        ids = self.model.tokenize(text, add_bos=False)
        generation = self.generate(ids, **options)
        reply = generation.text()
        self.last_usage = {"prompt_tokens": generation.prompt_tokens, "reused_tokens": generation.reused_tokens,
                           "completion_tokens": generation.completion_tokens, "stop_reason": generation.stop_reason}
        return reply


_live_generations = weakref.WeakSet()


@atexit.register
def _stop_all():
    # The engine's threads call back into Python: stop them before the interpreter goes away.
    for generation in list(_live_generations):
        generation.close()


# How many text pieces the engine may make ahead of the loop that takes them; beyond that its
# callback waits, so a slow consumer holds the engine back rather than piling up text, and a loop
# that breaks stops it within this many tokens.
PIECES_AHEAD = 8


class _Run:
    """What the engine's callback and the worker thread share. Apart from the Generation, so that
    nothing they hold refers back to it: a loop that breaks drops the last reference to the
    Generation, whose __del__ then stops the engine at once (a cycle would wait for the garbage
    collector)."""

    END = object()

    def __init__(self, session, ids, options, keep_alive):
        self.session = session
        self.tokens = []
        self.result = None
        self.error = None
        self.queue = queue.SimpleQueue()
        self.stop = threading.Event()
        self.credits = threading.Semaphore(PIECES_AHEAD)  # pieces the engine may still queue
        self.prompt, self.n_prompt = _ids_array(ids)
        self.options = options
        self.keep_alive = keep_alive
        self.callback = _capi.TOKEN_CALLBACK(self.on_token)

    # On an engine thread (ctypes takes the GIL for it).
    def on_token(self, text, length, token, user_data):
        try:
            if self.stop.is_set():
                return 1
            if token >= 0:
                self.tokens.append(token)
            if length:
                piece = ctypes.string_at(text, length).decode("utf-8", "replace")
                while not self.credits.acquire(timeout=0.1):
                    if self.stop.is_set():
                        return 1
                if self.stop.is_set():
                    return 1
                self.queue.put(piece)
            return 0
        except BaseException:
            return 1

    # On the worker thread: the C call blocks it until the generation ends.
    def run(self):
        try:
            result = _capi.GenerateResult(struct_size=ctypes.sizeof(_capi.GenerateResult))
            status = _capi.lib().orchard_session_generate(self.session._live(), self.prompt, self.n_prompt,
                                                          ctypes.byref(self.options), self.callback, None,
                                                          ctypes.byref(result))
            _capi.check(status)  # on this thread: the error text is per thread
            self.result = result
        except BaseException as e:
            self.error = e
        finally:
            self.queue.put(self.END)


class Generation(_Closing):
    """The iterator Session.generate returns: text pieces (whole UTF-8 characters) as the engine
    makes them. Breaking out of the loop, close(), or dropping it stops the engine at its next
    token. After the end (or close()), `stop_reason` ("end_of_sequence", "stop_string",
    "max_tokens", "context_full", "callback" when stopped from Python, "cancelled"),
    `prompt_tokens`, `reused_tokens` (prompt tokens taken from the cache), `completion_tokens` and
    `tokens` (the generated ids) describe it."""

    def __init__(self, session, ids, options, keep_alive):
        self.session = session
        self.stop_reason = None
        self.prompt_tokens = self.reused_tokens = self.completion_tokens = None
        self._finished = False
        self._run = _Run(session, ids, options, keep_alive)
        self._thread = threading.Thread(target=self._run.run, name="orchard-generate", daemon=True)
        _live_generations.add(self)
        self._thread.start()

    @property
    def tokens(self):
        return list(self._run.tokens)

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        item = self._run.queue.get()
        if item is not _Run.END:
            self._run.credits.release()
            return item
        self._join()
        if self._run.error is not None:
            error, self._run.error = self._run.error, None
            raise error
        raise StopIteration

    def _join(self):
        self._finished = True
        self._thread.join()
        _live_generations.discard(self)
        result = self._run.result
        if result is not None:
            self.stop_reason = _capi.STOP_REASONS.get(result.stop_reason)
            self.prompt_tokens = result.prompt_tokens
            self.reused_tokens = result.reused_tokens
            self.completion_tokens = result.completion_tokens

    def text(self):
        """The rest of the generated text, joined."""
        return "".join(self)

    def close(self):
        """Stops the generation at its next token and waits for the engine to let go of it."""
        if self._finished:
            return
        self._run.stop.set()
        self._run.credits.release()  # a callback waiting for room sees the stop at once
        self._join()
