"""Reading and keying training records: no torch, so the web process may use it too."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO


class DataError(ValueError):
    """The data cannot be trained on (empty, wrong format); the message is meant for users."""


class NotJSON(ValueError):
    """A line ``json_line`` cannot read; the message says why, in words meant for users."""


# Deeper than any record a run or an import reads (a ranking's ordering, a turn of a prompt:
# three levels); a line nested deeper is refused before anything walks it, for json.dumps and
# the record's readers recurse (Python's json reads about 990 levels, and refuses more with a
# RecursionError, not a JSON error).
MAX_LINE_DEPTH = 32
TOO_DEEP = f"nested too deeply (more than {MAX_LINE_DEPTH} levels)"


def json_depth_exceeds(value: object, limit: int) -> bool:
    """Whether ``value`` nests lists/objects more than ``limit`` levels (iterative: no
    recursion for a hostile value to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def json_line(line: str | bytes, **options) -> object:
    """The value of one line of a JSONL file (``json.loads`` with ``options``); a line that is
    not JSON, or is nested deeper than ``MAX_LINE_DEPTH``, raises ``NotJSON`` saying why
    ("Expecting value (column 1)", ``TOO_DEEP``, an integer too long to convert)."""
    try:
        value = json.loads(line, **options)
    except RecursionError as error:
        raise NotJSON(TOO_DEEP) from error
    except json.JSONDecodeError as error:
        raise NotJSON(f"{error.msg} (column {error.colno})") from error
    except ValueError as error:  # an integer too long to convert, or an options hook's refusal
        raise NotJSON(str(error)) from error
    if json_depth_exceeds(value, MAX_LINE_DEPTH):
        raise NotJSON(TOO_DEEP)
    return value


# What bytes that are not UTF-8 become when decoded with ``surrogateescape`` (valid UTF-8 never
# decodes to them).
_UNDECODABLE = re.compile("[\udc80-\udcff]")
# A JSON escape of a surrogate (``\ud800``): a pair decodes to one character, a lone one to a
# surrogate, which no tokenizer or database takes (UTF-8 cannot encode it).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Records of a JSONL file: those of ``numbered_records`` without their line numbers."""
    for _, record in numbered_records(path):
        yield record


class ReadLimitReached(DataError):
    """``numbered_records`` was asked to read at most ``max_bytes`` of a file, and it holds
    more (decompressed); the caller says what that means for its reader."""


class _Counted(io.RawIOBase):
    """A binary stream read through, raising ``ReadLimitReached`` once more than ``limit``
    bytes have come out of it."""

    def __init__(self, stream: IO[bytes], limit: int):
        self._stream, self._limit, self._read = stream, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        self._read += len(data)
        if self._read > self._limit:
            raise ReadLimitReached(f"more than {self._limit} bytes")
        buffer[: len(data)] = data
        return len(data)


def numbered_records(
    path: str | Path, *, max_bytes: int | None = None
) -> Iterator[tuple[int, dict]]:
    """Records of a JSONL file with the line each is on (the first is line 1; gzip when the
    file starts with gzip's magic bytes). Bytes that are not UTF-8 are refused by the line they
    are on (the decoder reads ahead of the lines, so its own error would not say which), and so
    are unpaired surrogates. With ``max_bytes``, a file holding more than that (decompressed)
    raises ``ReadLimitReached`` once that much is read."""
    path = Path(path)
    with path.open("rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            if max_bytes is not None:
                stream = io.BufferedReader(_Counted(stream, max_bytes))
            text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape")
            for number, line in enumerate(text, start=1):
                if _UNDECODABLE.search(line):
                    raise DataError(f"{path.name} line {number} is not UTF-8 text.")
                if not line.strip():
                    continue
                try:
                    record = json_line(line)
                except NotJSON as error:
                    # A line nested too deeply may be JSON: it is refused for its depth.
                    said = "is" if str(error) == TOO_DEEP else "is not JSON:"
                    raise DataError(f"{path.name} line {number} {said} {error}.") from error
                if not isinstance(record, dict):
                    raise DataError(f"{path.name} line {number} is not a JSON object.")
                if _SURROGATE_ESCAPE.search(line) and _SURROGATE.search(
                    json.dumps(record, ensure_ascii=False)
                ):
                    raise DataError(
                        f"{path.name} line {number} holds unpaired surrogate characters "
                        "(\\ud800-\\udfff), which are not allowed."
                    )
                yield number, record
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{path.name} is not a whole gzip file ({error}).") from error


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def records_sha256(records: Iterable[dict]) -> str:
    """The sha256 of the records written as compact JSONL (what an uncompressed export holds)."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def prompt_prefixes(record: dict) -> list[list[dict]]:
    """Conversation prefixes ending in a user turn that a record holds.

    A ranking or pair record (``prompt``) gives its prompt (a string, TRL's standard form, is
    the user's turn); a demonstration (``messages``) gives the prefix up to each of its user
    turns; a record that is only a prompt (``messages`` ending in a user turn) gives itself.
    """
    if isinstance(record.get("prompt"), str):
        return [[{"role": "user", "content": record["prompt"]}]] if record["prompt"] else []
    if isinstance(record.get("prompt"), list):
        prompt = [_message(m) for m in record["prompt"]]
        return [prompt] if prompt and prompt[-1]["role"] == "user" else []
    messages = [_message(m) for m in record.get("messages") or []]
    return [messages[: index + 1] for index, m in enumerate(messages) if m["role"] == "user"]


def _message(message: dict) -> dict:
    return {"role": str(message["role"]), "content": str(message["content"])}


def prompt_key(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def demonstration_turns(
    messages: list[dict], *, origins: object = None, learn_origins: Sequence[str] = ()
) -> tuple[list[dict], list[bool] | None] | None:
    """What SFT learns from a demonstration: its ``messages`` up to the last assistant turn (a
    trailing user turn has nothing to teach) and, with ``learn_origins``, which of their
    assistant turns it learns (``origins``: one per message, as exported; None: all of them).
    None when nothing is left to learn: no assistant turn, or none of those origins."""
    while messages and messages[-1]["role"] != "assistant":
        messages = messages[:-1]
    if not messages:
        return None
    learned_turns = None
    if learn_origins:
        if not isinstance(origins, list) or len(origins) < len(messages):
            raise DataError(
                "Choosing demonstrations by origin needs each record's `origins` (one per "
                "message, as the demonstrations export writes them)."
            )
        assistant_origins = [
            origin
            for origin, message in zip(origins, messages, strict=False)
            if message["role"] == "assistant"
        ]
        learned_turns = [origin in learn_origins for origin in assistant_origins]
        if not any(learned_turns):
            return None
    return messages, learned_turns


# A record's side: trained on, or held out (evaluated on only).
SPLITS = ("train", "test")


def carries_own_split(records: Iterable[dict]) -> bool:
    """Whether a file's records carry their own ``split`` (an export's, which training keeps
    whatever the held-out fraction), by its first."""
    first = next(iter(records), None)
    return first is not None and "split" in first


def record_split(record: dict, *, test_fraction: float, seed: int) -> str:
    """The record's own ``split`` (exports carry one, by conversation), else a seeded hash of its
    conversation id, or of its opening turns, so that no conversation lands on both sides."""
    split = record.get("split")
    if split in SPLITS:
        return split
    key = record.get("conversation_id")
    if key is None:
        # TRL's implicit-prompt pairs carry the whole conversation in ``chosen``.
        turns = record.get("prompt") or record.get("messages") or record.get("chosen") or []
        opening = _opening(turns)
        key = json.dumps(opening, sort_keys=True)
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def _opening(turns: object) -> object:
    """What stands for a record's conversation when it has no id: its turns up to and
    including the first user turn (a system message shared by every conversation does not
    put them all on one side; a demonstration and a ranking of the same conversation fall on
    the same one). A prompt given as text is its own opening."""
    if not isinstance(turns, list):
        return turns
    for index, turn in enumerate(turns):
        if isinstance(turn, dict) and turn.get("role") == "user":
            return turns[: index + 1]
    return turns


def prompt_messages(prompt) -> list[dict]:
    """A record's ``prompt`` as chat messages: TRL's conversational form (a list of messages)
    or its standard form (a string: the user's turn)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def kto_label_problem(record: dict) -> str:
    """Why a KTO record's ``label`` says neither desirable nor undesirable ("" when it does: a
    boolean, not ``"yes"`` or 1). Checked on every record of a file when its run is made, and
    again by the trainer."""
    if "label" in record and isinstance(record["label"], bool):
        return ""
    given = json.dumps(record["label"])[:40] if "label" in record else "missing"
    return f"A KTO record's `label` is true (desirable) or false (undesirable), not {given}."


def ranking_from_record(record: dict) -> tuple[list[dict], list[str], list[list[int]]] | None:
    """(prompt, candidate texts, ordering as groups of indices) of a ``rankings`` or ``pairs``
    record; None for a ranking that says nothing (cannot rank, all equal or all bad: fewer
    than two groups), which the reward and DPO trainers skip."""
    if record.get("cannot_rank") and "chosen" not in record:
        return None
    try:
        if "chosen" in record and "rejected" in record:
            # A pairwise record (TRL's form) is a ranking with K = 2.
            texts = [_reply_text(record["chosen"]), _reply_text(record["rejected"])]
            return prompt_messages(record.get("prompt") or []), texts, [[0], [1]]
        texts_by_id = {c["candidate_id"]: c["text"] for c in record["candidates"]}
        ordering = record["ordering"]
        prompt = prompt_messages(record["prompt"])
    except (KeyError, TypeError) as error:
        raise DataError(
            "A record is neither a ranking (prompt, candidates, ordering) nor a pair "
            "(prompt, chosen, rejected)."
        ) from error
    position: dict[int, int] = {}
    texts: list[str] = []
    groups: list[list[int]] = []
    for group in ordering:
        indices = []
        for candidate_id in group:
            if candidate_id not in texts_by_id or candidate_id in position:
                return None  # a malformed ordering: skip it rather than guess
            position[candidate_id] = len(texts)
            texts.append(texts_by_id[candidate_id])
            indices.append(position[candidate_id])
        if indices:
            groups.append(indices)
    if len(groups) < 2:
        return None
    return prompt, texts, groups


def _reply_text(value) -> str:
    if isinstance(value, str):
        return value
    return "".join(message["content"] for message in value if message["role"] == "assistant")


HALVES = ("first", "second")


def record_half(record: dict) -> str:
    """ "first" or "second": a fixed hash of the record's conversation (its prompt when it has no
    id), independent of any seed, so runs that train on opposite halves never share one."""
    key = record.get("conversation_id")
    if key is None:
        key = json.dumps(record.get("prompt") or record.get("messages", [])[:1], sort_keys=True)
    digest = hashlib.sha256(f"tandem-half:{key}".encode()).digest()
    return HALVES[digest[0] & 1]


def in_half(records: Iterable[dict], half: str, *, read: Counter | None = None) -> Iterator[dict]:
    """The records of one half ("first" / "second"), or all of them ("all"); ``read["records"]``
    counts every record read, kept or not (to say why a half holds none)."""
    for record in records:
        if read is not None:
            read["records"] += 1
        if half == "all" or record_half(record) == half:
            yield record


def none_in_half(read: int, half: str) -> str:
    """Why a run on ``half`` has no record although ``read`` were read, for a message."""
    other = HALVES[1 - HALVES.index(half)]
    read_as = (
        "1 record was read, and its conversation is not"
        if read == 1
        else f"{read} records were read, and none of their conversations is"
    )
    return (
        f"{read_as} in the {half} half this run trains on: train on every conversation or the "
        f"{other} half, or rank more conversations"
    )
