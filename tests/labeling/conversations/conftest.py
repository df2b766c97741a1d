"""JSONL files to import: good lines and the kinds of bad ones."""

import json

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


MIXED_FILE = jsonl(GOOD_WITH_SYSTEM, b'{"messages": [', WRONG_ROLE, GOOD_PLAIN, NOT_ALTERNATING)
