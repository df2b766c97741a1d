"""The ``transformers`` backend: the model in this worker process, sampled by the project's own
loop (``sampler.generation.sampling``): exact and seeded, with log-probabilities at the
sampling temperature before top-k/top-p. Several jobs that wait together are sampled in one
batch (``generate_batch``)."""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from sampler.generation.backends import base
from sampler.generation.sampling import (
    LoadedModel,
    model_cache,
    sample_completions,
    sample_completions_many,
)


@contextmanager
def _refusals() -> Iterator[None]:
    """The engine's refusals (``base.engine_refusals``), and running out of accelerator memory,
    as ``BackendError``: a batch that does not fit is then sampled request by request
    (``generate_many``), and a request that does not fit alone fails with that reason."""
    try:
        with base.engine_refusals():
            yield
    except torch.OutOfMemoryError as error:
        raise _out_of_memory(error) from error


def _out_of_memory(error: torch.OutOfMemoryError, *, empty: bool = True) -> base.BackendError:
    if empty:
        torch.cuda.empty_cache()  # what the failed pass held goes back before the next one
    reason = str(error).splitlines()[0] if str(error) else "no detail"
    return base.BackendError(f"The model ran out of accelerator memory ({reason}).")


def _result(completions, prepared) -> base.GenerationResult:
    return base.GenerationResult(
        completions=[
            base.Completion(
                text=completion.text,
                token_count=completion.token_count,
                finish_reason=base.FinishReason.END_OF_TURN
                if completion.finished
                else base.FinishReason.LENGTH,
                logprob_sum=completion.logprob_sum,
            )
            for completion in completions
        ],
        logprob_kind=base.LogprobKind.SAMPLING,
        notes=list(prepared.notes),
    )


class TransformersBackend(base.GenerationBackend):
    name = "transformers"
    batches = True

    def __init__(self, *, path: str, device: str = "auto") -> None:
        self.path = path
        self.device = device

    @property
    def loaded(self) -> LoadedModel:
        """The per-process model cache: one model at a time, loaded once. A folder the engine
        cannot serve (no chat template, no end-of-turn token) is the version's fault, which an
        admin may mend: a ``BackendError``, never a refusal of the request (a retry of a red-team
        run's failed attacks sends those again)."""
        try:
            return model_cache.get(self.path, device=self.device)
        except ValueError as error:
            failure = base.BackendError(str(error))
        except torch.OutOfMemoryError as error:
            failure = _out_of_memory(error, empty=False)
        # Out of the except block, the failed load's frames are gone, and with them what it had
        # loaded (the cache keeps nothing of it): freed before the next try, not held by the
        # error's traceback.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise failure

    def generate_many(
        self, requests: list[base.GenerationRequest]
    ) -> list[base.GenerationResult | base.BackendError]:
        """A model that cannot be loaded fails every request with that reason, loaded once: not
        tried again for each request, as a refused batch's requests are sampled alone."""
        try:
            _ = self.loaded  # loaded here once, or failed
        except base.BackendError as error:
            return [error] * len(requests)
        return super().generate_many(requests)

    def generate(self, request: base.GenerationRequest) -> base.GenerationResult:
        loaded = self.loaded
        with _refusals():
            completions, prepared = sample_completions(
                loaded,
                request.messages,
                n=request.n,
                params=request.params,
                seed=request.seed,
                role=request.role,
            )
        return _result(completions, prepared)

    def generate_batch(self, requests: list[base.GenerationRequest]) -> list[base.GenerationResult]:
        """Requests with the same sampling parameters share one batch (each keeps its seed)."""
        groups: dict = defaultdict(list)
        for position, request in enumerate(requests):
            groups[request.params].append(position)
        results: list[base.GenerationResult | None] = [None] * len(requests)
        loaded = self.loaded
        with _refusals():
            for params, positions in groups.items():
                batch = [
                    (requests[p].messages, requests[p].n, requests[p].seed, requests[p].role)
                    for p in positions
                ]
                outputs = sample_completions_many(loaded, batch, params=params)
                for position, (completions, prepared) in zip(positions, outputs, strict=True):
                    results[position] = _result(completions, prepared)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if model_cache.path == self.path:
            model_cache.clear()


def build(*, path: str, options: dict, device: str = "auto") -> TransformersBackend:
    return TransformersBackend(path=path, device=device)
