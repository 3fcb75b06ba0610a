"""ctypes declarations of Orchard's C API (include/orchard/orchard_c.h) and where liborchard.so
is found. Internal: the public names are in orchard/__init__.py."""
import ctypes
import os
import threading
from pathlib import Path

# Status codes (orchard_c.h).
OK = 0
ERR_INVALID_ARGUMENT = -1
ERR_NOT_FOUND = -2
ERR_BAD_FILE = -3
ERR_OUT_OF_RANGE = -4
ERR_BUFFER_TOO_SMALL = -5
ERR_NO_MEMORY = -6
ERR_INTERNAL = -7

STOP_REASONS = {
    0: None,
    1: "end_of_sequence",
    2: "stop_string",
    3: "max_tokens",
    4: "context_full",
    5: "callback",
    6: "cancelled",
}


class OrchardError(Exception):
    """A failed call of the C API: `status` is its code (a negative ORCHARD_ERR_* value),
    `status_name` its name, and the message the C library's error text."""

    def __init__(self, status, message, status_name=None):
        super().__init__(message)
        self.status = status
        self.status_name = status_name or f"status {status}"

    def __str__(self):
        return f"{self.args[0]} [{self.status_name}]"


class ModelOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("kernels", ctypes.c_char_p),
        ("memory_budget", ctypes.c_uint64),
        ("n_threads", ctypes.c_int32),
        ("n_ctx", ctypes.c_int64),
        ("kv_cache_type", ctypes.c_char_p),
    ]


class ModelInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("n_vocab", ctypes.c_int64),
        ("n_ctx_train", ctypes.c_int64),
        ("n_params", ctypes.c_int64),
        ("bos_token", ctypes.c_int32),
        ("eos_token", ctypes.c_int32),
        ("add_bos", ctypes.c_int32),
        ("has_chat_template", ctypes.c_int32),
        ("architecture", ctypes.c_char_p),
    ]


class SamplingOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("temperature", ctypes.c_float),
        ("top_k", ctypes.c_int32),
        ("top_p", ctypes.c_float),
        ("min_p", ctypes.c_float),
        ("repeat_penalty", ctypes.c_float),
        ("repeat_last_n", ctypes.c_int32),
        ("presence_penalty", ctypes.c_float),
        ("frequency_penalty", ctypes.c_float),
        ("seed", ctypes.c_uint64),
        ("max_tokens", ctypes.c_int64),
        ("stop", ctypes.POINTER(ctypes.c_char_p)),
        ("n_stop", ctypes.c_size_t),
    ]


class GenerateResult(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("stop_reason", ctypes.c_int32),
        ("prompt_tokens", ctypes.c_int64),
        ("reused_tokens", ctypes.c_int64),
        ("completion_tokens", ctypes.c_int64),
    ]


# int (*)(const char* text, size_t len, int32_t token, void* user_data). The text is taken as a
# void pointer: c_char_p would stop at a NUL inside the text.
TOKEN_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int32, ctypes.c_void_p)

_P = ctypes.c_void_p
_SIGNATURES = {
    "orchard_version": (ctypes.c_char_p, []),
    "orchard_last_error": (ctypes.c_char_p, []),
    "orchard_status_name": (ctypes.c_char_p, [ctypes.c_int]),
    "orchard_model_options_init": (ctypes.c_int, [ctypes.POINTER(ModelOptions)]),
    "orchard_sampling_options_init": (ctypes.c_int, [ctypes.POINTER(SamplingOptions)]),
    "orchard_model_load": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ModelOptions),
                                          ctypes.POINTER(_P)]),
    "orchard_model_free": (None, [_P]),
    "orchard_model_get_info": (ctypes.c_int, [_P, ctypes.POINTER(ModelInfo)]),
    "orchard_tokenize": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int,
                                        ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t,
                                        ctypes.POINTER(ctypes.c_size_t)]),
    "orchard_detokenize": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, ctypes.c_int,
                                          ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]),
    "orchard_apply_chat_template": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                                   ctypes.c_char_p, ctypes.c_size_t,
                                                   ctypes.POINTER(ctypes.c_size_t)]),
    "orchard_session_create": (ctypes.c_int, [_P, ctypes.POINTER(_P)]),
    "orchard_session_free": (None, [_P]),
    "orchard_session_reset": (ctypes.c_int, [_P]),
    "orchard_session_cancel": (ctypes.c_int, [_P]),
    "orchard_session_generate": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t,
                                                ctypes.POINTER(SamplingOptions), TOKEN_CALLBACK, _P,
                                                ctypes.POINTER(GenerateResult)]),
}

_lock = threading.Lock()
_library = None


def library_candidates():
    """Where liborchard.so is looked for, in order: $ORCHARD_LIBRARY, a copy installed inside
    this package, the repository's build/lib (for PYTHONPATH=bindings/python)."""
    env = os.environ.get("ORCHARD_LIBRARY")
    if env:
        return [Path(env)]
    here = Path(__file__).resolve().parent
    return [here / "liborchard.so", here.parents[2] / "build" / "lib" / "liborchard.so"]


def lib():
    """The loaded library, loaded at first use (so that `import orchard` works without it)."""
    global _library
    with _lock:
        if _library is None:
            candidates = library_candidates()
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                raise OrchardError(ERR_NOT_FOUND, "liborchard.so not found; looked at " +
                                   ", ".join(str(p) for p in candidates) +
                                   " (build it with cmake, or set ORCHARD_LIBRARY to its path)",
                                   "ORCHARD_ERR_NOT_FOUND")
            loaded = ctypes.CDLL(str(found))
            for name, (restype, argtypes) in _SIGNATURES.items():
                function = getattr(loaded, name)
                function.restype = restype
                function.argtypes = argtypes
            _library = loaded
        return _library


def check(status):
    """Raises OrchardError with the C library's error text for a failed status. Call it on the
    thread that made the call: the text is per thread."""
    if status != OK:
        library = lib()
        message = library.orchard_last_error().decode("utf-8", "replace")
        name = library.orchard_status_name(status).decode("ascii", "replace")
        raise OrchardError(status, message, name)
    return status
