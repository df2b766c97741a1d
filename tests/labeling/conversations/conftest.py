"""JSONL files to import: good lines and the kinds of bad ones; a sample made for another
prompt."""

import json

import pytest

from sampler.generation.models import Sample
from sampler.generation.services import generation_job_create

GOOD_WITH_SYSTEM = {
    "title": "Greetings",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "Just saying hi."},
        {"role": "assistant", "content": "Hi to you too.", "origin": "human"},
    ],
}
GOOD_PLAIN = {
    "messages": [
        {"role": "user", "content": "What is   the capital\nof France?"},
        {"role": "assistant", "content": "Paris."},
    ]
}
WRONG_ROLE = {"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Yo"}]}
NOT_ALTERNATING = {
    "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Hello?"},
        {"role": "assistant", "content": "Yes?"},
    ]
}


def jsonl(*records: object) -> bytes:
    return b"".join(
        (record if isinstance(record, bytes) else json.dumps(record).encode()) + b"\n"
        for record in records
    )


# A title is one line (the list shows it as one): any line break, or other control character.
MULTI_LINE_TITLES = [
    "two\nlines",
    "carriage\rreturn",
    "line\u2028separator",
    "paragraph\u2029separator",
    "next\x85line",
    "tab\there",
    "colour \x1b[31mred",
]


MIXED_FILE = jsonl(GOOD_WITH_SYSTEM, b'{"messages": [', WRONG_ROLE, GOOD_PLAIN, NOT_ALTERNATING)


@pytest.fixture
def unrelated_sample(trainer, policy) -> Sample:
    """A user-turn sample of the trainer's own API job, asked for from an unrelated prompt: it
    has no prefix message either, yet it is no suggestion for a conversation's first turn."""
    job = generation_job_create(
        messages=[
            {"role": "user", "content": "Write a poem."},
            {"role": "assistant", "content": "Roses are red."},
        ],
        n=1,
        role="user",
        requested_by=trainer,
        queue=False,
    )
    return Sample.objects.create(
        job=job, index=0, text="Another one?", token_count=2, finish_reason="end_of_turn"
    )
