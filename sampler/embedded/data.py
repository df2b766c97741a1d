"""Real human conversations from the `chitchat_dataset` package, as chat messages.

The package ships its data (7,168 conversations from the Chit Chat Challenge) inside itself, so
nothing is downloaded. Its `Dataset` is a dict ``{conversation_id: {"messages": [[utterance,
...], ...], ...}}``, each inner list holding the consecutive utterances of one sender
(``{"text", "timestamp", "sender"}``).
"""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import chitchat_dataset

Message = dict[str, str]
Split = Literal["train", "validation"]


@dataclass(frozen=True)
class Conversation:
    id: str
    messages: list[Message]


def conversation_messages(turns: list[list[dict]]) -> list[Message]:
    """One chitchat conversation as alternating user/assistant messages.

    The first sender is the user. Consecutive utterances of one sender are joined with a space
    (also across the package's groups, should one sender own two in a row); empty ones dropped.
    """
    merged: list[tuple[str, list[str]]] = []
    for turn in turns:
        for utterance in turn:
            text = " ".join(utterance["text"].split())
            if not text:
                continue
            sender = utterance["sender"]
            if merged and merged[-1][0] == sender:
                merged[-1][1].append(text)
            else:
                merged.append((sender, [text]))
    roles = ("user", "assistant")
    return [
        {"role": roles[index % 2], "content": " ".join(texts)}
        for index, (_sender, texts) in enumerate(merged)
    ]


def split_of(conversation_id: str, *, seed: int, validation_fraction: float) -> Split:
    """A split that depends only on the id and the seed: stable as the dataset grows or shuffles."""
    digest = hashlib.sha256(f"{seed}:{conversation_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "validation" if position < validation_fraction else "train"


def load_conversations(
    split: Split | None = None,
    *,
    seed: int = 0,
    validation_fraction: float = 0.05,
    limit: int | None = None,
) -> Iterator[Conversation]:
    """Conversations of one split (or all, with ``split=None``), in the package's order.

    Conversations with fewer than two messages (no reply to learn from) are skipped. ``limit``
    stops after that many yielded conversations.
    """
    yielded = 0
    for conversation_id, record in chitchat_dataset.Dataset().items():
        if limit is not None and yielded >= limit:
            return
        if split is not None and split != split_of(
            conversation_id, seed=seed, validation_fraction=validation_fraction
        ):
            continue
        messages = conversation_messages(record["messages"])
        if len(messages) < 2:
            continue
        yield Conversation(id=conversation_id, messages=messages)
        yielded += 1
