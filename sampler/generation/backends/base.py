"""The generation backend interface: a prefix, K, sampling parameters and a seed in; K
completions out, with what their log-probabilities mean. Torch-free."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from sampler.generation.params import GenerationParams


class LogprobKind:
    """What a completion's ``logprob_sum`` measures (``Sample.LogprobKind`` stores the same
    values): training reads these numbers, so it must know."""

    # The transformers backend: under the model at the sampling temperature, before top-k/top-p.
    SAMPLING = "sampling"
    # vLLM: under the model's raw distribution (temperature 1, unfiltered).
    RAW = "raw"
    # Whatever an OpenAI-compatible server reports (servers differ).
    ENDPOINT = "endpoint"
    NONE = "none"


class FinishReason:
    END_OF_TURN = "end_of_turn"
    LENGTH = "length"


@dataclass(frozen=True)
class GenerationRequest:
    """K completions of one prefix: the model writes the next turn of ``role``."""

    messages: list[dict]
    n: int
    params: GenerationParams
    seed: int
    role: str = "assistant"


@dataclass
class Completion:
    text: str
    # Tokens generated, the end-of-turn token included when the model ended its turn.
    token_count: int
    finish_reason: str
    # Sum of the sampled tokens' log-probabilities (None when the backend gives none).
    logprob_sum: float | None

    @property
    def finished(self) -> bool:
        return self.finish_reason == FinishReason.END_OF_TURN


@dataclass
class GenerationResult:
    completions: list[Completion]
    logprob_kind: str
    # What the job should tell its reader (e.g. the prefix was truncated, top_k not applied).
    notes: list[str] = field(default_factory=list)


class BackendError(Exception):
    """Generation failed for a reason the message states in full (shown as the job's error)."""


class BackendUnavailable(BackendError):
    """The server is down, overloaded or rate-limited: worth trying again later (the job goes
    back to its queue, within its attempts)."""


class GenerationBackend(ABC):
    """Samples completions for one model version; one instance per worker process."""

    name: str = ""

    @abstractmethod
    def generate(self, request: GenerationRequest) -> GenerationResult:
        """K completions of one prefix, seeded (reproducible where the engine allows)."""

    def generate_many(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Several requests that wait together; a backend that batches them overrides this."""
        return [self.generate(request) for request in requests]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free what the backend holds (weights, an engine, connections)."""
