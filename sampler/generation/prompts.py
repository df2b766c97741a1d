"""Rendering a conversation prefix with the model's chat template, cut to fit its context.

Torch-free (it needs only the tokenizer): the in-process backends (transformers, vLLM) share it,
so a prefix becomes the same token ids whichever engine samples it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SENTINEL = "\x00tandem-turn-start\x00"
# A prompt keeps at least this many tokens in the worker (the web refuses max_new_tokens that
# leave less than params.MIN_PROMPT_TOKENS before anything is queued).
MIN_BUDGET = 8


@dataclass
class PreparedPrompt:
    input_ids: list[int]
    dropped_messages: int = 0
    dropped_tokens: int = 0
    notes: list[str] = field(default_factory=list)


def render(tokenizer, messages: list[dict], role: str) -> str:
    """The prefix as text, ending where a turn of ``role`` begins."""
    if role == "assistant":
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # No chat template has a "generation prompt" for the user side: render an extra turn of
    # that role holding a sentinel and keep everything before the sentinel.
    rendered = tokenizer.apply_chat_template(
        [*messages, {"role": role, "content": SENTINEL}], tokenize=False
    )
    cut = rendered.find(SENTINEL)
    if cut < 0:
        raise ValueError(f"The chat template cannot render a {role!r} turn.")
    return rendered[:cut]


def prepare_prompt(
    tokenizer, messages: list[dict], *, context_length: int, role: str, max_new_tokens: int
) -> PreparedPrompt:
    """Render the prefix; drop the oldest turns (then oldest tokens) until it fits the context."""
    budget = context_length - max_new_tokens
    if budget < MIN_BUDGET:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} leaves no room for a prompt in this model's "
            f"{context_length}-token context."
        )
    # Leading system messages are kept: they carry instructions the rest depends on.
    head = [m for m in messages[:1] if m["role"] == "system"]
    body = messages[len(head) :]
    dropped = 0
    while True:
        text = render(tokenizer, head + body[dropped:], role)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= budget or dropped >= len(body) - 1:
            break
        dropped += 1
    prepared = PreparedPrompt(input_ids=list(ids), dropped_messages=dropped)
    if dropped:
        prepared.notes.append(
            f"Prefix truncated from the left: dropped the {dropped} oldest of {len(body)} messages "
            f"to fit the {context_length}-token context."
        )
    if len(ids) > budget:
        prepared.dropped_tokens = len(ids) - budget
        prepared.input_ids = list(ids[-budget:])
        prepared.notes.append(
            f"The remaining prefix was cut by its first {prepared.dropped_tokens} tokens to fit."
        )
    return prepared
