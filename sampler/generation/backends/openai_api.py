"""The ``openai`` backend: any OpenAI-compatible chat-completions server (vLLM's server, TGI,
llama.cpp's server, ``transformers serve``, hosted APIs), through the official ``openai`` client.

Options (``ModelVersion.backend_options``, checked by ``options.py``): ``base_url``, ``model``,
``api_key_env`` (the NAME of the environment variable holding the key; never the key),
``timeout``, ``max_retries``, ``logprobs``, ``supports_n``, ``extra_sampling_params``.

Servers differ on ``n``, ``seed`` and ``logprobs``: a server that returns fewer than K choices
is asked again for the rest (one request each, seeds ``seed + i``), and the job's notes say so;
never fewer samples than asked. The client retries 408, 409, 429 and 5xx answers and lost
connections with exponential backoff; past its retries the error is ``BackendUnavailable``
(the job goes back to its queue), any other refusal is a ``BackendError`` with the server's
reason: a ``RequestRefused`` only for a prompt longer than the model's context with nothing left
to cut (sent again, it is refused again); a 400 may as well be a key the server will not take,
options it does not support or its own error, which an admin or another try may clear. A prefix
the server refuses as longer than its context is cut from the left, as the local backends cut
it: the oldest messages after a leading system message are dropped (1, 2, 4, ... of them, one
request each) until it fits or one is left, and the job's notes say how many.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sampler.generation.backends import base
from sampler.generation.backends.options import api_key_env_error

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 3
# Sent when no key is configured: servers without authentication accept any.
NO_KEY = "EMPTY"
# How servers say a request does not fit the model's context (vLLM, OpenAI, llama.cpp; TGI's
# two input validation errors, the total and the input alone).
CONTEXT_PHRASES = (
    "context length",
    "context size",
    "context window",
    "max_model_len",
    "`inputs` tokens + `max_new_tokens` must be <=",
    "`inputs` must have less than",
)


# The answers a server gives a request it rejects (a prompt too long among them).
REQUEST_REJECTED = (400, 413, 422)
# Answers below 500 that say the server could not take the request now.
PASSING = (408, 409)


class PromptTooLong(base.RequestRefused):
    """The server refused the request as longer than the model's context."""


@dataclass
class _Prefix:
    """The messages sent: a leading system message kept, the oldest others dropped to fit."""

    messages: list[dict]
    dropped: int = 0

    @property
    def head(self) -> list[dict]:
        return self.messages[:1] if self.messages and self.messages[0]["role"] == "system" else []

    @property
    def body(self) -> list[dict]:
        return self.messages[len(self.head) :]

    @property
    def sent(self) -> list[dict]:
        return self.head + self.body[self.dropped :]

    def drop_more(self) -> bool:
        """Drop twice as many as before (one at first); False when one message is left."""
        if self.dropped >= len(self.body) - 1:
            return False
        self.dropped = min(len(self.body) - 1, max(1, 2 * self.dropped))
        return True


class OpenAIBackend(base.GenerationBackend):
    name = "openai"

    def __init__(self, *, options: dict) -> None:
        try:
            # Imported only by a worker serving an openai version.
            import openai
        except ImportError as error:
            raise base.BackendError(
                "This version is served through the openai client, which is not installed on "
                f"this worker (pip install 'tandem[openai]'): {error}"
            ) from error
        self.openai = openai
        self.base_url = options["base_url"]
        self.model = options["model"]
        self.logprobs = options.get("logprobs", True)
        self.supports_n = options.get("supports_n", True)
        self.extra = options.get("extra_sampling_params", False)
        key_env = options.get("api_key_env")
        api_key = NO_KEY
        if key_env and (problem := api_key_env_error(key_env)):
            # Saved before it was refused: never read, never sent anywhere.
            raise base.BackendError(
                f"This version's api_key_env is refused: {problem} (correct it in the registry)."
            )
        if key_env:
            api_key = os.environ.get(key_env, "")
            if not api_key:
                raise base.BackendError(
                    f"The environment variable {key_env} (this version's api_key_env) is not set "
                    "on the worker: set it to the server's API key."
                )
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key,
            timeout=float(options.get("timeout", DEFAULT_TIMEOUT)),
            max_retries=int(options.get("max_retries", DEFAULT_MAX_RETRIES)),
        )

    # ---- one request ------------------------------------------------------------------------

    def _create_fitting(self, request: base.GenerationRequest, prefix: _Prefix, **kwargs):
        """``_create`` on the prefix, cut further while the server says it is too long."""
        while True:
            try:
                return self._create(request, prefix.sent, **kwargs)
            except PromptTooLong as error:
                if not prefix.drop_more():
                    # Nothing left to cut (max_tokens alone may not fit): the server's reason.
                    raise base.RequestRefused(str(error)) from error

    def _create(
        self,
        request: base.GenerationRequest,
        messages: list[dict],
        *,
        n: int,
        seed: int,
        logprobs: bool,
    ):
        params = request.params
        body = {}
        if self.extra:
            body = {"top_k": params.top_k, "repetition_penalty": params.repetition_penalty}
        openai = self.openai
        try:
            return self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                n=n,
                seed=seed,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                logprobs=logprobs,
                extra_body=body or None,
            )
        except (openai.APIConnectionError, openai.APITimeoutError) as error:
            raise base.BackendUnavailable(
                f"The model server at {self.base_url} did not answer ({type(error).__name__}: "
                f"{error})."
            ) from error
        except (openai.RateLimitError, openai.InternalServerError) as error:
            raise base.BackendUnavailable(
                f"The model server at {self.base_url} is busy or failing (HTTP "
                f"{error.status_code}: {_reason(error)})."
            ) from error
        except openai.APIStatusError as error:
            # A request that timed out (408) or met a conflict (409) may pass later, as the
            # client's own retries assume: the server's state, not the request's fault.
            if error.status_code >= 500 or error.status_code in PASSING:
                raise base.BackendUnavailable(
                    f"The model server at {self.base_url} failed (HTTP {error.status_code}: "
                    f"{_reason(error)})."
                ) from error
            reason = _reason(error)
            # Only a prompt too long is told for sure to be the request's fault: servers answer
            # 400 as well for a bad key, options they do not take or their own errors while
            # preparing a prompt, which an admin or another try may clear.
            refusal = PromptTooLong if _too_long(error.status_code, reason) else base.BackendError
            raise refusal(
                f"The model server at {self.base_url} refused the request for {self.model!r} "
                f"(HTTP {error.status_code}): {reason}"
            ) from error

    @staticmethod
    def _completion(choice, *, usage_tokens: int | None) -> base.Completion:
        text = (choice.message.content or "").strip() if choice.message else ""
        tokens = getattr(getattr(choice, "logprobs", None), "content", None)
        logprob_sum = None
        token_count = usage_tokens
        if tokens:
            logprob_sum = float(sum(token.logprob for token in tokens))
            token_count = len(tokens)
        return base.Completion(
            text=text,
            token_count=int(token_count or 0),
            finish_reason=base.FinishReason.LENGTH
            if choice.finish_reason == "length"
            else base.FinishReason.END_OF_TURN,
            logprob_sum=logprob_sum,
        )

    # ---- the interface ----------------------------------------------------------------------

    def generate(self, request: base.GenerationRequest) -> base.GenerationResult:
        if request.role != "assistant":
            raise base.RequestRefused(
                "A chat-completions server writes assistant turns only; user-side suggestions "
                "need a transformers or vllm version."
            )
        notes: list[str] = []
        params = request.params
        if not self.extra and (params.top_k != 0 or params.repetition_penalty != 1.0):
            notes.append(
                "top_k and repetition_penalty were not sent (the chat-completions API has no such "
                "fields; set extra_sampling_params for servers that take them, e.g. vLLM)."
            )
        completions: list[base.Completion] = []
        prefix = _Prefix(list(request.messages))
        # Without log-probabilities a reply's length is known only from the usage, which sums
        # every reply of a request: n > 1 goes one request per reply from the start.
        if self.supports_n and (self.logprobs or request.n == 1):
            response = self._create_fitting(
                request, prefix, n=request.n, seed=request.seed, logprobs=self.logprobs
            )
            choices = sorted(response.choices, key=lambda choice: choice.index)[: request.n]
            usage = getattr(response, "usage", None)
            single = usage.completion_tokens if usage is not None and len(choices) == 1 else None
            parsed = [self._completion(choice, usage_tokens=single) for choice in choices]
            if all(c.logprob_sum is not None or single is not None for c in parsed):
                completions = parsed
            else:
                # No per-choice token counts (no log-probs): ask for each reply on its own.
                notes.append("The server gave no per-reply token counts: one request per reply.")
            if 0 < len(choices) < request.n:
                notes.append(
                    f"The server returned {len(choices)} of {request.n} replies in one request; "
                    "the rest were asked for one by one."
                )
        while len(completions) < request.n:
            index = len(completions)
            response = self._create_fitting(
                request, prefix, n=1, seed=request.seed + index, logprobs=self.logprobs
            )
            if not response.choices:
                raise base.BackendError(f"The model server at {self.base_url} returned no reply.")
            usage = getattr(response, "usage", None)
            completions.append(
                self._completion(
                    response.choices[0],
                    usage_tokens=usage.completion_tokens if usage is not None else None,
                )
            )
        if prefix.dropped:
            notes.insert(
                0,
                f"Prefix truncated from the left: dropped the {prefix.dropped} oldest of "
                f"{len(prefix.body)} messages to fit the server's context.",
            )
        have_logprobs = all(c.logprob_sum is not None for c in completions)
        if self.logprobs and not have_logprobs:
            notes.append("The server gave no log-probabilities.")
        return base.GenerationResult(
            completions=completions,
            logprob_kind=base.LogprobKind.ENDPOINT if have_logprobs else base.LogprobKind.NONE,
            notes=notes,
        )

    def close(self) -> None:
        self.client.close()


def _too_long(status: int, reason: str) -> bool:
    return status in REQUEST_REJECTED and any(p in reason.lower() for p in CONTEXT_PHRASES)


def _reason(error) -> str:
    """The server's own words: the client gives the body's ``error`` member when it has one,
    an object with a ``message`` (OpenAI, vLLM) or a string (TGI)."""
    body = getattr(error, "body", None)
    if isinstance(body, str) and body.strip():
        return body[:500]
    if isinstance(body, dict):
        inner = body.get("error")
        nested = inner.get("message") if isinstance(inner, dict) else inner
        message = body.get("message") or nested
        if message:
            return str(message)[:500]
    return str(error)[:500]


def build(*, path: str, options: dict, device: str = "auto") -> OpenAIBackend:
    return OpenAIBackend(options=options)
