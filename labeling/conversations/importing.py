"""Reading finished conversations from JSONL, one conversation per line (no database: the
``conversations_import`` service saves what this module parses).

Each line is the common chat format::

    {"title": "optional", "messages": [{"role": "user", "content": "Hi"},
                                       {"role": "assistant", "content": "Hello!"}]}

A title is one line, as everywhere a title is written (``config.text.validate_one_line``); one
left out is the first user turn's start, made one line.
A message may say ``"origin": "human"``, ``"model"`` or ``"model_edited"``; by default
assistant turns are model-written and user/system turns human-written. A record of Tandem's own
demonstrations export (it has a ``schema_version``) imports as it was exported: its
``origins`` list gives each turn's origin, and the keys that name rows of the exporting
database (ids, writer, split, ...) are known but not kept. Any other key is refused, and so is
a key given twice in one object. Every line is checked completely before anything is written; an
invalid one is reported with its 1-based line number, and a file with any invalid line is not
imported at all (``conversations_import``).

Each conversation read has a fingerprint (``conversation_fingerprint``: of its turns, not its
title), by which ``conversations_import`` skips a line whose conversation the project already
holds from an import, or an earlier line of the same file holds, unless told to allow
duplicates.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import IO

from config.parsers import object_without_repeated_keys
from config.text import as_one_line, counted, one_line_problem
from labeling.conversations.models import (
    MAX_CONTENT_CHARS,
    MAX_PATH_MESSAGES,
    MAX_TITLE_CHARS,
    Message,
)
from sampler.training.records import NotJSON, json_line

MAX_LINE_BYTES = 1024 * 1024
MAX_LINES = 100_000
ROLES = {Message.Role.SYSTEM, Message.Role.USER, Message.Role.ASSISTANT}
ORIGINS = set(Message.Origin.values)
# The demonstrations export's schema versions (ranking.exports.filters.SCHEMA_VERSION) and its
# keys besides messages: origins, and what describes the row it came from in the exporting
# database, which an import does not keep (the ids are not this database's).
EXPORT_SCHEMA_VERSIONS = (1, 2)
EXPORT_KEYS = (
    "schema_version",
    "origins",
    "conversation_id",
    "leaf_message_id",
    "writer",
    "split",
    "red_team",
    "attack_id",
    "guideline_version",
)
DEFAULT_ORIGIN = {
    Message.Role.SYSTEM: Message.Origin.HUMAN,
    Message.Role.USER: Message.Origin.HUMAN,
    Message.Role.ASSISTANT: Message.Origin.MODEL,
}


@dataclass
class ImportReport:
    valid: int = 0  # lines that passed every check
    created: int = 0  # conversations saved (or, in a dry run, that would be)
    conversation_ids: list[int] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (1-based line number, message)
    # Valid lines not saved (or, in a dry run, that would not be) as their conversation is
    # already imported: (1-based line number, where it is: the project, or an earlier line).
    skipped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def import_summary(report: ImportReport, *, dry_run: bool = False) -> str:
    """One sentence for the person who imported a valid file: what was (or, in a dry run,
    would be) imported, and how many lines were (would be) skipped as already imported."""
    conversations = counted(report.created, "conversation")
    if dry_run:
        summary = f"Dry run: {conversations} would be imported"
    else:
        summary = f"Imported {conversations}"
    if report.skipped:
        skipped = "would be skipped" if dry_run else "skipped"
        summary += (
            f"; {len(report.skipped)} already imported, {skipped} (their turns are in the "
            "project or on an earlier line)"
        )
    return summary + "."


@dataclass(frozen=True)
class ParsedMessage:
    role: str
    content: str
    origin: str


@dataclass(frozen=True)
class ParsedConversation:
    title: str
    messages: list[ParsedMessage]

    @cached_property  # an import asks for it more than once; the turns do not change
    def fingerprint(self) -> str:
        return conversation_fingerprint(self.messages)


def conversation_fingerprint(messages: Iterable[ParsedMessage]) -> str:
    """The SHA-256 (64 hex digits) of the turns' canonical JSON: a list of one
    ``{"content", "origin", "role"}`` object per turn, in order, keys sorted, no spaces, UTF-8.

    The text counts exactly as read (a space or a line ending more is another conversation);
    the origin counts, as it says what the turn is to training (a human's demonstration or a
    model's reply). The title does not count: it labels the conversation and is not trained on;
    a re-import may give it another ``title_prefix``; and one left out is made from the first
    user turn. So a line imported again under another title or prefix is still the
    conversation already imported, and two lines with the same turns are one conversation.
    """
    turns = [
        {"content": message.content, "origin": message.origin, "role": message.role}
        for message in messages
    ]
    canonical = json.dumps(turns, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class LineError(ValueError):
    """Why one line cannot be imported; the text is shown to the person importing."""


def jsonl_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Lines of a binary stream, each cut after ``MAX_LINE_BYTES + 2`` bytes (room for a line of
    the limit and its ``\\r\\n``).

    A plain ``for line in stream`` would hold an arbitrarily long line in memory; here the rest
    of an over-long line is read and dropped in bounded pieces, and the cut line is then refused
    by its length.
    """
    while True:
        line = stream.readline(MAX_LINE_BYTES + 2)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
        yield line


class _AtMost:
    """``readline`` of a stream, raising ``OSError`` once more than ``limit`` bytes were read."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream, self.limit, self.read = stream, limit, 0

    def readline(self, size: int = -1) -> bytes:
        line = self.stream.readline(size)
        self.read += len(line)
        if self.read > self.limit:
            raise OSError(f"it holds more than {self.limit // (1024 * 1024)} MB once decompressed")
        return line


def uploaded_stream(upload: IO[bytes], *, limit: int) -> IO[bytes]:
    """An uploaded file as its JSONL bytes: decompressed when it is gzip (by its first bytes,
    whatever its name), and then read up to ``limit`` bytes (a small .gz can hold a lot)."""
    compressed = upload.read(2) == b"\x1f\x8b"
    upload.seek(0)
    if not compressed:
        return upload
    return _AtMost(gzip.GzipFile(fileobj=upload, mode="rb"), limit)  # type: ignore[return-value]


def _check_storable(text: str, where: str) -> None:
    """Text JSON can carry but a database cannot store: NUL (PostgreSQL) and lone surrogates."""
    if "\x00" in text:
        raise LineError(f"{where} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise LineError(f"{where} contains an unpaired surrogate (\\u escape)") from error


def _no_other_keys(record: dict, allowed: tuple[str, ...], where: str) -> None:
    """A key the format does not have is refused: a misspelt ``origin`` would otherwise be
    quietly replaced by the default."""
    unknown = sorted(str(key)[:40] for key in record if key not in allowed)
    if unknown:
        takes = ", ".join(allowed)
        raise LineError(f"{where}unknown key {unknown[0]!r} (it takes {takes})")


def _parse_message(item: object, index: int) -> ParsedMessage:
    where = f"messages[{index}]"
    if not isinstance(item, dict):
        raise LineError(f"{where} must be an object with role and content")
    _no_other_keys(item, ("role", "content", "origin"), f"{where}: ")
    role = item.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise LineError(f"{where}: role must be one of user, assistant, system (got {role!r})")
    content = item.get("content")
    if not isinstance(content, str) or not content.strip():
        raise LineError(f"{where}: content must be a non-empty string")
    if len(content) > MAX_CONTENT_CHARS:
        raise LineError(
            f"{where}: content is {len(content)} characters; the limit is {MAX_CONTENT_CHARS}"
        )
    _check_storable(content, f"{where}: content")
    origin = item.get("origin", DEFAULT_ORIGIN[role])
    _check_origin(origin, f"{where}: ")
    return ParsedMessage(role=role, content=content, origin=origin)


def _check_origin(origin: object, where: str) -> None:
    if not isinstance(origin, str) or origin not in ORIGINS:
        raise LineError(f"{where}origin must be human, model or model_edited (got {origin!r})")


def _check_export_record(record: dict, items: list) -> list[str] | None:
    """The per-turn origins of a demonstrations export record (None when it gives none)."""
    version = record["schema_version"]
    if type(version) is not int:  # True is an int to isinstance
        raise LineError(f"schema_version must be an integer (got {version!r})")
    if version not in EXPORT_SCHEMA_VERSIONS:
        known = ", ".join(map(str, EXPORT_SCHEMA_VERSIONS))
        raise LineError(
            f"schema_version {version} is not a demonstrations export this version reads ({known})"
        )
    if "origins" not in record:
        return None
    origins = record["origins"]
    if not isinstance(origins, list) or len(origins) != len(items):
        raise LineError(f"origins must be a list of {len(items)}, one per message")
    for index, origin in enumerate(origins):
        _check_origin(origin, f"origins[{index}]: ")
        if isinstance(items[index], dict) and "origin" in items[index]:
            raise LineError(f"messages[{index}]: origin is given here and in origins")
    return origins


def _check_turn_order(messages: list[ParsedMessage]) -> None:
    """System messages only at the start; then user, assistant, user, ... alternating."""
    expected = Message.Role.USER
    for index, message in enumerate(messages):
        if message.role == Message.Role.SYSTEM:
            if index > 0 and messages[index - 1].role != Message.Role.SYSTEM:
                raise LineError(f"messages[{index}]: system messages may only come first")
            continue
        if message.role != expected:
            raise LineError(
                f"messages[{index}]: expected role '{expected}', got '{message.role}' "
                "(user and assistant turns alternate, starting with the user)"
            )
        expected = Message.Role.ASSISTANT if expected == Message.Role.USER else Message.Role.USER
    if not any(m.role == Message.Role.ASSISTANT for m in messages):
        # The same rule as finishing a conversation in the editor.
        raise LineError("a conversation needs at least one user and one assistant turn")


def _line_content(line: bytes | str) -> bytes | str:
    """The line less its ending (``\\n`` or ``\\r\\n``), which the length limit does not count."""
    if isinstance(line, bytes):
        return line[:-2] if line.endswith(b"\r\n") else line.removesuffix(b"\n")
    return line[:-2] if line.endswith("\r\n") else line.removesuffix("\n")


def _parse_line(line: bytes | str, *, title_prefix: str) -> ParsedConversation:
    if len(_line_content(line)) > MAX_LINE_BYTES:
        raise LineError(f"the line is longer than {MAX_LINE_BYTES} bytes")
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise LineError(f"not valid UTF-8 (byte {error.start + 1})") from error
    try:
        # A key given twice is refused, as the API refuses it: which value was meant is unknown.
        record = json_line(line.lstrip("\ufeff"), object_pairs_hook=object_without_repeated_keys)
    except NotJSON as error:
        raise LineError(f"invalid JSON: {error}") from error
    if not isinstance(record, dict):
        raise LineError("expected a JSON object with a messages list")
    exported = "schema_version" in record
    _no_other_keys(record, ("title", "messages", *(EXPORT_KEYS if exported else ())), "")
    items = record.get("messages")
    if not isinstance(items, list) or not items:
        raise LineError("messages must be a non-empty list")
    if len(items) > MAX_PATH_MESSAGES:
        raise LineError(f"{len(items)} messages; the limit is {MAX_PATH_MESSAGES} per conversation")
    origins = _check_export_record(record, items) if exported else None
    messages = [_parse_message(item, index) for index, item in enumerate(items)]
    if origins is not None:
        messages = [replace(m, origin=o) for m, o in zip(messages, origins, strict=True)]
    _check_turn_order(messages)
    title = record.get("title")
    if title is None:  # left out, or null: no title
        title = ""
    if not isinstance(title, str):
        raise LineError("title must be a string")
    if len(title) > MAX_TITLE_CHARS:
        raise LineError(f"title is {len(title)} characters; the limit is {MAX_TITLE_CHARS}")
    _check_storable(title, "title")
    # One line, as the API and the Write page take it (surrounding whitespace trimmed).
    if problem := one_line_problem(title.strip()):
        raise LineError(f"title: {problem}")
    if not title.strip():
        first_user = next(m for m in messages if m.role == Message.Role.USER)
        title = as_one_line(first_user.content)[:80]
    title = f"{title_prefix}{title.strip()}"[:MAX_TITLE_CHARS]
    return ParsedConversation(title=title, messages=messages)


def parsed_lines(
    lines: Iterable[bytes | str], *, title_prefix: str = ""
) -> Iterator[tuple[int, ParsedConversation | LineError]]:
    """``(1-based line number, the parsed conversation or why the line cannot be imported)`` for
    each non-blank line; past ``MAX_LINES`` lines, one error and nothing more. A file without
    a non-blank line is one error too (importing nothing is not what was asked)."""
    seen = False
    for line_number, line in enumerate(lines, start=1):
        if line_number > MAX_LINES:
            yield (
                line_number,
                LineError(f"more than {MAX_LINES} lines; this line and the rest were skipped"),
            )
            return
        if not line.strip():
            continue
        seen = True
        try:
            yield line_number, _parse_line(line, title_prefix=title_prefix)
        except LineError as error:
            yield line_number, error
    if not seen:
        yield 1, LineError("the file holds no conversation (it is empty or every line is blank)")
