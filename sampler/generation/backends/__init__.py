"""Generation backends: one interface from a conversation prefix to K sampled completions.

- ``transformers`` (``huggingface.py``): the model in the worker process, sampled by this
  project's own loop (exact, seeded); batches several jobs that wait together.
- ``vllm`` (``vllm_engine.py``): a vLLM engine in the worker process (``LLM.generate`` with
  ``SamplingParams(n=K, seed=...)``), loaded once per process.
- ``openai`` (``openai_api.py``): any OpenAI-compatible chat-completions server through the
  official client (vLLM's server, TGI, llama.cpp, ``transformers serve``, hosted APIs).

This module and ``base``/``options`` are torch-free: web processes validate options with them.
The engines are imported by ``backend_get`` only, in the worker that serves such a version.
"""

from __future__ import annotations

import importlib
import threading

from sampler.generation.backends.base import (
    BackendError,
    BackendUnavailable,
    Completion,
    FinishReason,
    GenerationBackend,
    GenerationRequest,
    GenerationResult,
    LogprobKind,
    RequestNotSent,
    RequestRefused,
)
from sampler.generation.backends.options import validate_options

# Backend name -> the module holding its ``build(path, options, device)``.
MODULES = {
    "transformers": "sampler.generation.backends.huggingface",
    "vllm": "sampler.generation.backends.vllm_engine",
    "openai": "sampler.generation.backends.openai_api",
}

_backends: dict[tuple, GenerationBackend] = {}
_lock = threading.Lock()


def _key(backend: str, path: str, options: dict) -> tuple:
    return (backend, path, tuple(sorted((k, repr(v)) for k, v in options.items())))


def backend_get(
    *, backend: str, path: str, options: dict | None = None, device: str = "auto"
) -> GenerationBackend:
    """The backend serving ``path`` with ``options`` in this process (built once and kept).

    An in-process engine (transformers, vllm) holds one model at a time per process: asking for
    another model of the same backend replaces it, so a worker never holds two copies.
    """
    options = options or {}
    if backend not in MODULES:
        raise BackendError(f"Unknown generation backend {backend!r}.")
    key = _key(backend, path, options)
    with _lock:
        found = _backends.get(key)
        if found is not None:
            return found
        if backend in {"transformers", "vllm"}:
            for other in [k for k in _backends if k[0] == backend]:
                _backends.pop(other).close()
        module = importlib.import_module(MODULES[backend])
        built = module.build(path=path, options=options, device=device)
        _backends[key] = built
        return built


def backends_clear() -> None:
    """Close every backend this process holds (tests; a worker shutting down)."""
    with _lock:
        for backend in _backends.values():
            backend.close()
        _backends.clear()


__all__ = [
    "BackendError",
    "BackendUnavailable",
    "Completion",
    "FinishReason",
    "GenerationBackend",
    "GenerationRequest",
    "GenerationResult",
    "LogprobKind",
    "RequestNotSent",
    "RequestRefused",
    "backend_get",
    "backends_clear",
    "validate_options",
]
