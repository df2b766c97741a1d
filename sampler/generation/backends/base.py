"""The generation backend interface: a prefix, K, sampling parameters and a seed in; K
completions out, with what their log-probabilities mean. Torch-free."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sampler.generation.params import GenerationParams

logger = logging.getLogger(__name__)


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


class RequestRefused(BackendError):
    """The backend refused the request for what it asks (a prompt longer than the model's
    context, a turn the model's chat template cannot write): sent again as it is, to the same
    version, it is refused again. Failures of the backend itself (not installed, a key not set,
    a model not served, not loadable or out of memory, a server's other 400s, which may be its
    options) are other ``BackendError``s: an admin, or another try, may clear them."""


class BackendUnavailable(BackendError):
    """The server is down, overloaded or rate-limited: worth trying again later (the job goes
    back to its queue, within its attempts)."""


class RequestNotSent(BackendUnavailable):
    """A request of a call that was not sent: the server failed an earlier request of the same
    call (down or failing), and the rest were not sent to wait out the same. Nothing is known
    of this request itself."""


@contextmanager
def engine_refusals() -> Iterator[None]:
    """An in-process engine's refusals of a request (``ValueError``: no room for a prompt, a
    turn its chat template cannot write) raised as ``RequestRefused``, with their message. A
    model it cannot load is no refusal: the backends load it outside this."""
    try:
        yield
    except ValueError as error:
        raise RequestRefused(str(error)) from error


class GenerationBackend(ABC):
    """Samples completions for one model version; one instance per worker process."""

    name: str = ""
    # Whether ``generate_batch`` samples several requests together (one pass of the engine).
    batches: bool = False

    @abstractmethod
    def generate(self, request: GenerationRequest) -> GenerationResult:
        """K completions of one prefix, seeded (reproducible where the engine allows); a
        request refused raises ``BackendError``."""

    def generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Several requests sampled together, or one error for all of them (any one request
        refused spoils the pass): what a backend that ``batches`` overrides."""
        raise NotImplementedError(f"The {self.name} backend does not batch requests.")

    def generate_many(
        self, requests: list[GenerationRequest]
    ) -> list[GenerationResult | BackendError]:
        """Each request's result, or the ``BackendError`` that refused that request alone.

        A backend that ``batches`` samples them in one ``generate_batch``; when that is refused,
        each request is sampled again alone, so that one the engine refuses (a prompt too long)
        costs only its own result. Other backends send them one after another: a server that is
        down or failing (``BackendUnavailable``) on one request is that request's outcome, the
        results before it are kept, and the requests after it are not sent (``RequestNotSent``).
        A batch the server fails as a whole is ``BackendUnavailable`` for every request.
        """
        if self.batches and len(requests) > 1:
            try:
                return self.generate_batch(requests)
            except BackendUnavailable as error:
                return [error] * len(requests)
            except BackendError as error:
                logger.warning(
                    "%s: a batch of %d requests was refused (%s); each is sampled alone",
                    self.name,
                    len(requests),
                    error,
                )
        outcomes: list[GenerationResult | BackendError] = []
        for index, request in enumerate(requests):
            try:
                outcomes.append(self.generate(request))
            except BackendUnavailable as error:
                not_sent = RequestNotSent(
                    f"Not sent: the server failed an earlier request of the same call ({error})"
                )
                return outcomes + [error] + [not_sent] * (len(requests) - index - 1)
            except BackendError as error:
                outcomes.append(error)
        return outcomes

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free what the backend holds (weights, an engine, connections)."""
