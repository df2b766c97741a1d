"""Each backend's options (``ModelVersion.backend_options``), checked on save. Torch-free.

Options never hold a secret: the ``openai`` backend names the environment variable that holds
its key (``api_key_env``), and the worker reads it and sends its value to the server: only a
variable named as a model server's key is, never one of the app's own settings
(``api_key_env_error``).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings

from config.env import SETTINGS_NAMES

ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
# The variables a model server's key may be read from, by their name (besides those listed in
# MODEL_API_KEY_ENVS): the worker sends the value to the version's base_url, so a name such as
# PGPASSWORD or AWS_SECRET_ACCESS_KEY would hand the server's other secrets to whoever set it.
KEY_ENV_NAME = re.compile(r"[A-Z0-9_]*_API_(KEY|TOKEN)|HF_TOKEN")
KEY_ENV_NAMES_TAKEN = (
    "one ending in _API_KEY or _API_TOKEN, HF_TOKEN, or one listed in MODEL_API_KEY_ENVS"
)
# What looks like a key pasted where a variable's name belongs: keys' prefixes, in a value that
# is no variable's name (HF_TOKEN is one; a key such as hf_AbC... or sk-... is not).
KEY_LIKE = re.compile(r"^(sk-|sk_|hf_|Bearer\s)", re.IGNORECASE)


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return _integer(value) or isinstance(value, float)


def _text(value: object, limit: int = 500) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and "\x00" not in value


# name -> (check, what it must be). Unknown names are refused.
TRANSFORMERS_OPTIONS: dict[str, tuple] = {}

# Passed to vllm.LLM(...) as they are.
VLLM_OPTIONS: dict[str, tuple] = {
    "dtype": (lambda v: isinstance(v, str) and v in {"auto", "float32", "float16", "bfloat16"},
              "one of auto, float32, float16, bfloat16"),
    "max_model_len": (lambda v: _integer(v) and 16 <= v <= 1_048_576,
                      "an integer between 16 and 1048576"),
    "gpu_memory_utilization": (lambda v: _number(v) and 0.05 <= v <= 0.99,
                               "a number between 0.05 and 0.99"),
    "tensor_parallel_size": (lambda v: _integer(v) and 1 <= v <= 64, "an integer from 1 to 64"),
    "enforce_eager": (lambda v: isinstance(v, bool), "true or false"),
    "quantization": (lambda v: _text(v, 64), "a quantization method's name"),
    "trust_remote_code": (lambda v: v is False, "false (remote code is never run)"),
}  # fmt: skip

OPENAI_OPTIONS: dict[str, tuple] = {
    "base_url": (lambda v: _text(v, 1000) and urlsplit(v).scheme in {"http", "https"}
                 and bool(urlsplit(v).netloc), "an http(s) URL, e.g. http://vllm:8000/v1"),
    "model": (lambda v: _text(v, 500), "the model name the server serves"),
    "api_key_env": (lambda v: isinstance(v, str) and bool(ENV_NAME.fullmatch(v)),
                    "the NAME of an environment variable holding the key (A-Z, 0-9, _)"),
    "timeout": (lambda v: _number(v) and 1 <= v <= 3600, "seconds, between 1 and 3600"),
    "max_retries": (lambda v: _integer(v) and 0 <= v <= 10, "an integer from 0 to 10"),
    # Ask for log-probabilities (servers that offer them return the sampled tokens').
    "logprobs": (lambda v: isinstance(v, bool), "true or false"),
    # false: the server ignores `n`, so K requests of one completion are sent instead.
    "supports_n": (lambda v: isinstance(v, bool), "true or false"),
    # true: top_k and repetition_penalty go in the request body as vLLM's extra parameters.
    "extra_sampling_params": (lambda v: isinstance(v, bool), "true or false"),
}  # fmt: skip
OPENAI_REQUIRED = ("base_url", "model")

OPTIONS = {"transformers": TRANSFORMERS_OPTIONS, "vllm": VLLM_OPTIONS, "openai": OPENAI_OPTIONS}


def validate_options(backend: str, options: dict) -> dict[str, str]:
    """Problems with ``options`` for ``backend``, by option name (empty when they are fine)."""
    known = OPTIONS.get(backend)
    if known is None:
        return {"backend": f"unknown backend {backend!r}"}
    errors: dict[str, str] = {}
    for name, value in options.items():
        if name not in known:
            allowed = ", ".join(sorted(known)) or "none"
            errors[str(name)[:100]] = f"unknown option for {backend} (allowed: {allowed})"
            continue
        check, what = known[name]
        if not check(value):
            errors[name] = f"must be {what}"
    if backend == "openai":
        for name in OPENAI_REQUIRED:
            if name not in options:
                errors.setdefault(name, "required for the openai backend")
        base_url = options.get("base_url")
        if (
            isinstance(base_url, str)
            and "base_url" not in errors
            and "@" in urlsplit(base_url).netloc
        ):
            # Stored in the database and named in job errors, which trainers read.
            errors["base_url"] = (
                "holds credentials (user:password@): give the key through api_key_env instead"
            )
        key_env = options.get("api_key_env")
        if isinstance(key_env, str) and KEY_LIKE.match(key_env) and not ENV_NAME.fullmatch(key_env):
            errors["api_key_env"] = (
                "looks like a key: give the name of the environment variable that holds it"
            )
        elif (
            "api_key_env" not in errors
            and isinstance(key_env, str)
            and (problem := api_key_env_error(key_env))
        ):
            errors["api_key_env"] = problem
    return errors


def api_key_env_error(name: str) -> str | None:
    """Why the worker may not send the value of the environment variable ``name`` to a model
    server as its key (None: it may): one of the app's own settings (SECRET_KEY, DATABASE_URL,
    ...) never is; another is only when named as a model server's key (``KEY_ENV_NAME``) or
    listed in ``MODEL_API_KEY_ENVS``. Checked on save, and by the worker before it reads one
    (a version saved before)."""
    if name in SETTINGS_NAMES:
        return (
            f"{name} is one of Tandem's own settings, never sent to a model server: name a "
            "variable that holds this server's key only"
        )
    if KEY_ENV_NAME.fullmatch(name) or name in settings.MODEL_API_KEY_ENVS:
        return None
    return f"{name} is not a model server's key variable: name {KEY_ENV_NAMES_TAKEN}"
