"""Dataset exports: records built from the database in bounded chunks, written as JSONL.

Three formats, each record carrying ``schema_version`` (documented in the README):
- ``rankings``: one record per ranking by one trainer, with candidates and their provenance;
- ``pairs``: preference pairs in TRL's conversational form (``prompt`` / ``chosen`` /
  ``rejected``), per ranker or aggregated over rankers;
- ``demonstrations``: ``{"messages": [...]}``, one per finished conversation path.

Memory stays flat: tasks (or conversations) are read in keyset-paginated chunks and each
record is written as soon as it is built. The command and the export job write each file's
column types beside it (``write_features``, ``features.py``), for loaders that would otherwise
infer them chunk by chunk.
"""

from __future__ import annotations

import gzip
import hashlib
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from django.core.exceptions import ValidationError
from django.db.models import Q

from ranking.exports.demonstrations import demonstration_records
from ranking.exports.features import export_features
from ranking.exports.filters import FORMATS, ExportFilters, day_bounds
from ranking.exports.models import DatasetExport
from ranking.exports.pairs import pair_records
from ranking.exports.rankings import ranking_records
from ranking.exports.reading import rankings_query, tasks_query

# ---- reading rankings in chunks ---------------------------------------------------------------


# ---- formats ----------------------------------------------------------------------------------


RECORD_BUILDERS: dict[str, Callable[..., Iterator[dict]]] = {
    DatasetExport.Format.RANKINGS: ranking_records,
    DatasetExport.Format.PAIRS: pair_records,
    DatasetExport.Format.DEMONSTRATIONS: demonstration_records,
}


def records(
    format: str, filters: ExportFilters, *, skipped: Counter | None = None
) -> Iterator[dict]:
    """``format``'s records; what is left out for lack of a prompt (a ranked task whose
    generation job was deleted) is counted in ``skipped`` by reason (``SKIP_REASONS``), as the
    records are read."""
    if format not in RECORD_BUILDERS:
        raise ValidationError({"format": f"format must be one of {', '.join(FORMATS)}."})
    return RECORD_BUILDERS[format](filters, skipped=skipped)


def source_count(format: str, filters: ExportFilters) -> int:
    """How many rankings (for rankings and pairs) or finished conversations an export reads,
    counted in the database for its progress: the split and the agreement filter are applied
    as the records are built, so it can be more than the rows are written from. Rankings of a
    task without a prompt (its generation job was deleted) are not counted: the export skips
    them (``bundle_context``), and ``records`` counts them in ``skipped``."""
    if format == DatasetExport.Format.DEMONSTRATIONS:
        from labeling.conversations.selectors import demonstration_conversations

        return demonstration_conversations(
            finished_bounds=day_bounds(filters),
            exclude_owner_ids=filters.exclude_trainer_ids,
            red_team=filters.red_team,
            project_ids=filters.project_ids,
        ).count()
    with_prompt = tasks_query(filters).exclude(
        Q(generation_job__isnull=True) | Q(generation_job__prompt_messages=[])
    )
    return rankings_query(filters).filter(task__in=with_prompt).count()


def jsonl_lines(rows: Iterator[dict]) -> Iterator[bytes]:
    # orjson: UTF-8 out, compact, several times faster than json.dumps on these records.
    for row in rows:
        yield orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)


@dataclass
class WrittenFile:
    rows: int
    size_bytes: int
    sha256: str


class _HashingWriter:
    """Counts and hashes the bytes that reach the file (after compression)."""

    def __init__(self, raw) -> None:
        self.raw, self.digest, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def write_jsonl(
    rows: Iterator[dict],
    path: Path,
    *,
    compress: bool | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> WrittenFile:
    """Write ``rows`` as JSONL, buffered, hashing as it goes; gzip when ``compress`` (by default
    when the name ends in .gz). Missing folders on ``path`` are created.

    The rows go to ``<name>.<random>.partial`` beside ``path``, renamed to ``path`` once
    complete: an export that fails or is interrupted leaves no file (and an older file at
    ``path`` as it was), never a truncated one under the final name; each writer has its own
    partial file, so a job taken over by another worker while the first still writes is never
    two writers interleaved in one file. A ``path`` that is a device, a pipe or a link is
    written in place."""
    compress = path.suffix == ".gz" if compress is None else compress
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        # A device, a pipe or a link (``--out /dev/stdout``): written to in place, as named.
        with path.open("wb") as raw:
            return _write_rows(rows, raw, compress=compress, on_progress=on_progress)
    partial = _partial_beside(path)
    try:
        with partial.open("xb") as raw:
            written = _write_rows(rows, raw, compress=compress, on_progress=on_progress)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


def _partial_beside(path: Path) -> Path:
    """A name of its own beside ``path`` for one writer's partial file (opened with ``x``: a
    name another writer holds is never shared)."""
    return path.with_name(f"{path.name}.{secrets.token_hex(8)}.partial")


def write_features(format: str, filters: ExportFilters, target: Path) -> None:
    """Write the column types of ``format``'s records (``datasets.Features`` as a dict) to
    ``target``, whole or not at all; an export file's go beside it (``features_path``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_beside(target)
    features = export_features(format, pseudonymize=filters.pseudonymize)
    try:
        with partial.open("xb") as raw:
            raw.write(orjson.dumps(features, option=orjson.OPT_INDENT_2))
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_jsonl_stream(
    rows: Iterator[dict],
    raw,
    *,
    compress: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> WrittenFile:
    """Write ``rows`` as JSONL to the open binary stream ``raw`` (standard output), hashing as
    it goes; gzip when ``compress``."""
    return _write_rows(rows, raw, compress=compress, on_progress=on_progress)


def _write_rows(rows, raw, *, compress: bool, on_progress) -> WrittenFile:
    count = 0
    hashing = _HashingWriter(raw)
    # mtime=0: the same rows give a byte-identical .gz, so the same sha256.
    sink = gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0) if compress else hashing
    buffer = []
    for line in jsonl_lines(rows):
        buffer.append(line)
        count += 1
        if len(buffer) >= 1000:
            sink.write(b"".join(buffer))
            buffer.clear()
            if on_progress:
                on_progress(count)
    sink.write(b"".join(buffer))
    if sink is not hashing:
        sink.close()
    return WrittenFile(rows=count, size_bytes=hashing.size, sha256=hashing.digest.hexdigest())
