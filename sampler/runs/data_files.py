"""Checks on a data file a run is asked to read, made when the run is created: where it may be
(``data_path_checker``), whether its first record is of the kind's format and schema, whether
every record has the keys the kind reads, and whether every line can be read (JSON objects of
UTF-8 text without unpaired surrogates), all in one pass over the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat

from ranking.exports.filters import SCHEMA_VERSION
from sampler.runs.models import TrainingRun, run_of_kind
from sampler.training.records import (
    DataError,
    ReadLimitReached,
    kto_label_problem,
    numbered_records,
)

# The keys a record of each kind's file must have (any one set): every record is checked when
# the run is made, so a file of another format, or with a record short of one, is refused
# before any run exists (by the first record, or by the line of the one that lacks it).
RECORD_KEYS = {
    TrainingRun.Kind.SFT: (("messages",),),
    TrainingRun.Kind.REWARD: (("candidates", "ordering"), ("chosen", "rejected")),
    TrainingRun.Kind.DPO: (("candidates", "ordering"), ("chosen", "rejected")),
    TrainingRun.Kind.KTO: (("completion", "label"),),
}
# Why a record of each kind's file cannot be trained on ("" when it can), checked on every
# record when the run is made (the trainer checks it again).
RECORD_PROBLEM: dict[str, Callable[[dict], str]] = {TrainingRun.Kind.KTO: kto_label_problem}


# What the check of an uploaded gzip file reads of it, decompressed: at most this many times its
# size (JSON lines compress 4 to 10 times; a file packed far tighter is mostly repeats or blank
# lines, each of which costs the check as much as a record), and at least UPLOAD_READ_FLOOR. A
# few kilobytes of gzip can hold gigabytes of blank lines: read whole, they tied up the web
# request for as long as a plain upload a thousand times its size would.
UPLOAD_READ_RATIO = 50
UPLOAD_READ_FLOOR = 4 * 1024 * 1024


def upload_read_limit(path: str) -> int | None:
    """The most the checks of the uploaded file at ``path`` read of it (None for a plain file:
    it holds no more than was sent)."""
    with Path(path).open("rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            return None
    return max(UPLOAD_READ_FLOOR, UPLOAD_READ_RATIO * Path(path).stat().st_size)


def newer_schema_problem(record: dict, *, name: str) -> str:
    """Why a record of the file ``name`` cannot be read here ("" when it can): exported with a
    newer schema, which may change what a field means (schema 2 renamed pairs' `margin`)."""
    schema = record.get("schema_version")
    if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION:
        return (
            f"{name} was exported with schema_version {schema}, and this version of Tandem "
            f"reads up to {SCHEMA_VERSION}: update it, or export the data with this one."
        )
    return ""


def data_file_problem(kind: str, path: str, *, max_bytes: int | None = None) -> str:
    """Why the file at ``path`` cannot be ``kind``'s data, by its first bad record ("" when it
    may be). The whole file is read: a bad line anywhere would fail the run on its worker. With
    ``max_bytes`` (an upload's ``upload_read_limit``), a file holding more than that once
    decompressed is refused as too large, when that much is read."""
    name = Path(path).name
    records = numbered_records(path, max_bytes=max_bytes)
    record_problem = RECORD_PROBLEM.get(kind)
    try:
        numbered = next(records, None)
        if problem := _first_record_problem(kind, numbered and numbered[1], name=name):
            return problem
        while numbered is not None:
            number, record = numbered
            if number > 1 and (problem := _keys_problem(kind, record, f"line {number} of {name}")):
                return problem
            if record_problem is not None and (problem := record_problem(record)):
                return f"{name} line {number}: {problem}"
            numbered = next(records, None)
    except ReadLimitReached:
        return (
            f"{name} is too large decompressed: an uploaded gzip file is read up to "
            f"{UPLOAD_READ_RATIO} times its size or {filesizeformat(UPLOAD_READ_FLOOR)}, "
            f"whichever is more ({filesizeformat(max_bytes)} here), and this "
            "one holds more. Upload it uncompressed, or copy it to the server and train with "
            "manage.py train_*."
        )
    except DataError as error:
        return str(error)
    except OSError as error:  # unreadable (permissions, a folder)
        return f"Cannot read {name}: {error.strerror or error}."
    finally:
        records.close()
    return ""


def _first_record_problem(kind: str, first: dict | None, *, name: str) -> str:
    """Why the file ``name`` whose first record is ``first`` is not of ``kind``'s format, or of
    a schema this checkout reads ("" when it is)."""
    if first is None:
        return f"{name} holds no record."
    if not isinstance(first, dict):
        return f"The first record of {name} is not a JSON object."
    if problem := newer_schema_problem(first, name=name):
        return problem
    return _keys_problem(kind, first, f"the first record of {name}")


def _keys_problem(kind: str, record: dict, where: str) -> str:
    """Why ``record`` (said as ``where``: "line 3 of x.jsonl") lacks the keys ``kind`` reads
    ("" when it has one of its sets)."""
    shapes = RECORD_KEYS.get(kind, ())
    if not shapes or any(all(key in record for key in shape) for shape in shapes):
        return ""
    wanted = " or ".join(", ".join(f"`{key}`" for key in shape) for shape in shapes)
    has = ", ".join(f"`{key}`" for key in sorted(record)[:8]) or "no field"
    return f"{run_of_kind(kind)} reads records with {wanted}; {where} has {has}."


def data_path_checker(allowed_roots: list[Path] | None) -> Callable[..., str]:
    """Resolves a data file a run may read (inside ``allowed_roots`` when given); a refusal is
    named by ``field`` (the input that gave the path)."""

    def check(path: str, field: str = "data_path") -> str:
        resolved = Path(path).expanduser().resolve()
        if allowed_roots is not None and not any(
            resolved.is_relative_to(Path(root).resolve()) for root in allowed_roots
        ):
            raise ValidationError({field: "That file is not in a folder training may read."})
        if not resolved.is_file():
            raise ValidationError({field: f"No file at {path}."})
        return str(resolved)

    return check
