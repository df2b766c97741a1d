"""Sampling parameters: what a job asks for, validated before anything is queued (no torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Tokens a prompt keeps at least: a max_new_tokens that leaves less of the context is refused.
MIN_PROMPT_TOKENS = 16


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters. Validation messages are shown to users as they are."""

    temperature: float = 0.8
    top_p: float = 0.9
    # 0 disables top-k filtering.
    top_k: int = 0
    max_new_tokens: int = 64
    repetition_penalty: float = 1.0

    def validate(self, *, max_new_tokens_cap: int) -> dict[str, str]:
        errors: dict[str, str] = {}
        if not 0.05 <= self.temperature <= 2.0:
            errors["temperature"] = "temperature must be between 0.05 and 2.0."
        if not 0.0 < self.top_p <= 1.0:
            errors["top_p"] = "top_p must be greater than 0 and at most 1."
        if not 0 <= self.top_k <= 1000:
            errors["top_k"] = "top_k must be between 0 (off) and 1000."
        if not 1 <= self.max_new_tokens <= max_new_tokens_cap:
            errors["max_new_tokens"] = f"max_new_tokens must be between 1 and {max_new_tokens_cap}."
        if not 1.0 <= self.repetition_penalty <= 2.0:
            errors["repetition_penalty"] = "repetition_penalty must be between 1.0 and 2.0."
        return errors

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def max_new_tokens_most(*, context_length: int | None, cap: int) -> int | None:
    """The largest ``max_new_tokens`` a job for a model with ``context_length`` (None: not
    known) is accepted with: ``cap`` (``GENERATION_MAX_NEW_TOKENS``), or less where the context
    leaves less after ``MIN_PROMPT_TOKENS`` of prompt. None when the context holds no reply at
    all (``context_room_error`` says so)."""
    if context_length is None:
        return cap
    if context_length <= MIN_PROMPT_TOKENS:
        return None
    return min(cap, context_length - MIN_PROMPT_TOKENS)


def max_new_tokens_within(*, wanted: int, context_length: int | None, cap: int) -> int:
    """``wanted``, lowered to ``cap`` (``GENERATION_MAX_NEW_TOKENS``) and to what a model's
    ``context_length`` leaves after ``MIN_PROMPT_TOKENS`` of prompt (at least 1: a context too
    short for any reply is ``context_room_error``'s to refuse)."""
    most = max_new_tokens_most(context_length=context_length, cap=cap)
    return max(1, min(wanted, most or 1))


def context_too_short(context_length: int) -> str:
    """What is wrong with a context of ``MIN_PROMPT_TOKENS`` or fewer: it holds no reply."""
    return (
        f"This model's {context_length}-token context is too short for any reply: a prompt "
        f"keeps at least {MIN_PROMPT_TOKENS} tokens."
    )


def context_room_error(
    *, context_length: int | None, max_new_tokens: int, version_name: str = ""
) -> str | None:
    """Why ``max_new_tokens`` cannot fit a model's context (None when it fits or is unknown).
    A context of ``MIN_PROMPT_TOKENS`` or fewer holds no reply at all: that is said, with the
    version's ``context_length`` to correct, rather than a limit that would be refused too.
    ``version_name`` leads the reason where a request names several versions (a comparison)."""
    if context_length is None:
        return None
    if context_length <= MIN_PROMPT_TOKENS:
        problem = (
            f"{context_too_short(context_length)} Correct the model version's context_length "
            "(an admin, in the registry)."
        )
    elif context_length - max_new_tokens < MIN_PROMPT_TOKENS:
        problem = (
            f"max_new_tokens={max_new_tokens} leaves less than {MIN_PROMPT_TOKENS} tokens for the "
            f"prompt in this model's {context_length}-token context; ask for at most "
            f"{max(1, context_length - MIN_PROMPT_TOKENS)}."
        )
    else:
        return None
    return f"{version_name}: {problem}" if version_name else problem
