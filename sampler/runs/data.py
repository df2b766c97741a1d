"""The data a training run reads: its rows (``RunData``) from a JSONL file or the database, the
held-out prompts of the database's records, and the snapshot of the rows a run from the
database first read, which it resumes on.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from itertools import chain, islice
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError

from ranking.exports.filters import KTO_FORMAT, ExportFilters
from ranking.exports.selectors import export_records
from ranking.projects.models import Project
from sampler.runs.models import TrainingRun
from sampler.runs.sources import kto_records, reward_records
from sampler.training.config import KTO_SOURCES
from sampler.training.records import (
    file_sha256,
    prompt_key,
    prompt_prefixes,
    read_jsonl,
    records_sha256,
)

PROMPTS_FORMAT = "prompts"
# How far the prompts are counted to say how many a held-out fraction left out: enough to tell
# "too little data" from "too small a fraction".
PROMPTS_COUNTED = 10000
# Records of the database that ``filters`` choose (``prompt_records``, ``ranking_records``).
RecordsOf = Callable[..., Iterator[dict]]


@dataclass
class RunData:
    """Rows a run trains on, described for the run's record (source, rows, sha256)."""

    rows: list[dict]
    description: dict
    # Further inputs of the kind (e.g. demonstrations to normalise a reward model on).
    extra: dict[str, Any] = field(default_factory=dict)


def prompt_records(*, filters: ExportFilters) -> Iterator[dict]:
    """Records holding prompts, from the database: demonstrations (each user turn of a finished
    conversation ends a prefix) and rankings (their prompt), with the export's ``split``."""
    return chain(
        export_records(format="demonstrations", filters=filters),
        export_records(format="rankings", filters=filters),
    )


def ranking_records(*, filters: ExportFilters) -> Iterator[dict]:
    """The ranking records a DPO run from the database reads, with their ``split``."""
    return export_records(format="rankings", filters=filters)


def distinct_prompts(
    *, filters: ExportFilters, limit: int, records: RecordsOf = prompt_records
) -> list[list[dict]]:
    """Distinct prefixes ending in a user turn of the ``records`` of ``filters`` (its split;
    by default those of ``prompt_records``), oldest first."""
    prompts, seen = [], set()
    for record in records(filters=filters):
        for messages in prompt_prefixes(record):
            key = prompt_key(messages)
            if key not in seen:
                seen.add(key)
                prompts.append(messages)
                if len(prompts) >= limit:
                    return prompts
    return prompts


def held_out_prompts(
    *, filters: ExportFilters | None = None, limit: int, records: RecordsOf = prompt_records
) -> list[list[dict]]:
    """Distinct prefixes ending in a user turn from held-out conversations, oldest first."""
    filters = replace(filters or ExportFilters(), split="test")
    return distinct_prompts(filters=filters, limit=limit, records=records)


def missing_held_out_prompt(
    *,
    filters: ExportFilters,
    purpose: str,
    advice: str,
    records: RecordsOf = prompt_records,
    records_named: str = "finished conversation or ranking with a user turn",
) -> str:
    """Why ``filters``' held-out fraction holds out none of the prompts of ``records`` ("" when
    it holds one out): "No held-out prompt to ``purpose``", what there is, then "Add more
    conversations" and ``advice`` (what follows it: ", or ..." for what else to do).
    ``records_named`` names the records, for when there are none at all."""
    if held_out_prompts(filters=filters, limit=1, records=records):
        return ""
    fraction = f"{filters.test_fraction:g}"
    where = _projects_named(filters)
    every = distinct_prompts(
        filters=replace(filters, split="all"), limit=PROMPTS_COUNTED, records=records
    )
    if not every:
        return (
            f"No held-out prompt to {purpose}: there is no prompt yet{where} (no "
            f"{records_named}), so a held-out fraction of {fraction} holds out none. Add more "
            "conversations first."
        )
    if len(every) == 1:
        counted = "does not hold out the only prompt"
    else:
        count = f"{len(every)}" if len(every) < PROMPTS_COUNTED else f"{PROMPTS_COUNTED}+"
        counted = f"holds out none of the {count} prompts"
    return (
        f"No held-out prompt to {purpose}: a held-out fraction of {fraction} {counted}{where} "
        "(whole conversations are held out, chosen by a hash of their id). Add more "
        f"conversations{advice}."
    )


def _projects_named(filters: ExportFilters) -> str:
    if not filters.project_ids:
        return ""
    names = sorted(
        Project.objects.filter(pk__in=filters.project_ids).values_list("name", flat=True)
    )
    quoted = ", ".join(f"\u201c{name}\u201d" for name in names)
    return f" in project{'s' if len(names) > 1 else ''} {quoted}"


def read_source(source: dict, data_format: str, *, limit: int | None = None) -> RunData:
    """Rows from a JSONL file or from the database (export records with the run's filters)."""
    if source["source"] == "file":
        rows = list(islice(read_jsonl(source["path"]), limit))
        described = {**source, "rows": len(rows), "sha256": file_sha256(source["path"])}
        if data_format == "rankings":
            described["format"] = _preference_file_format(rows)
        return RunData(rows, described)
    filters = ExportFilters.from_dict(source["filters"])
    if data_format == PROMPTS_FORMAT:
        rows = list(islice(prompt_records(filters=filters), limit))
    elif data_format == KTO_FORMAT:
        sources = tuple(source.get("sources") or KTO_SOURCES)
        rows = list(islice(kto_records(filters, sources=sources), limit))
    elif data_format == "rankings" and source.get("sources"):
        rows = list(islice(reward_records(filters, sources=tuple(source["sources"])), limit))
    else:
        rows = list(islice(export_records(format=data_format, filters=filters), limit))
    return RunData(rows, {**source, "rows": len(rows), "sha256": records_sha256(rows)})


def _preference_file_format(rows: list[dict]) -> str:
    """What a file for a ranking kind (reward, DPO) holds: ``rankings``, ``pairs`` (TRL's
    prompt/chosen/rejected form) or both; the trainers read either, record by record."""
    pairs = sum(1 for row in rows if isinstance(row, dict) and "chosen" in row)
    if pairs == 0:
        return "rankings"
    return "pairs" if pairs == len(rows) else "rankings and pairs"


# The rows a run from the database read when it first started, kept beside its checkpoints.
DATA_SNAPSHOT = "data.jsonl.gz"


def load_run_data(run: TrainingRun, config) -> RunData:
    """The run's rows (a kind's ``load``). A run from the database keeps the rows it first read
    beside its checkpoints and resumes on those: rankings, feedback and trust estimates made
    since (which change records it had read, e.g. their trust weights) do not stop it or change
    its data. A file must be unchanged (its sha256)."""
    recorded = run.dataset.get("sha256")
    snapshot = Path(run.checkpoint_dir) / DATA_SNAPSHOT if run.checkpoint_dir else None
    if snapshot is not None and run.dataset["source"] == "database":
        data = _database_rows_once(run, snapshot, _process_state())
    else:
        data = read_source(run.dataset, run.dataset["format"])
    if recorded and recorded != data.description["sha256"]:
        raise ValidationError(
            {"data": "The data changed since this run started; start a new run to use it."}
        )
    return data


def _database_rows_once(run: TrainingRun, snapshot: Path, state) -> RunData:
    """The run's rows from the database, chosen by the main process alone: the rows kept in
    ``snapshot`` when they are the ones the run records (a resumed run), else the database's,
    written there. Under ``accelerate launch`` the other processes wait for it and read that
    file: two reads moments apart can differ (a new ranking, a trust refresh), and every
    process must train on the same rows."""
    if state.is_main_process:
        data = _snapshot_rows(run, snapshot)
        if data is None:
            data = read_source(run.dataset, run.dataset["format"])
            _write_snapshot(snapshot, data.rows)
    state.wait_for_everyone()
    if state.is_main_process:
        return data
    rows = list(read_jsonl(snapshot))
    return RunData(rows, {**run.dataset, "rows": len(rows), "sha256": records_sha256(rows)})


def _snapshot_rows(run: TrainingRun, snapshot: Path) -> RunData | None:
    """The rows kept in ``snapshot`` when their sha256 is the one the run records."""
    recorded = run.dataset.get("sha256")
    if not recorded or not snapshot.is_file():
        return None
    rows = list(read_jsonl(snapshot))
    if records_sha256(rows) != recorded:
        return None
    return RunData(rows, {**run.dataset, "rows": len(rows)})


def _process_state():
    """This process's place among the training processes (``sampler.training.loop``)."""
    # torch and Accelerate load in workers and training commands only (web processes import
    # this module to validate runs; data is loaded only where a run trains).
    from sampler.training.loop import process_state

    return process_state()


def is_main_process() -> bool:
    """Under ``accelerate launch`` every process runs the trainer; one writes the database (and
    the run's data snapshot)."""
    return _process_state().is_main_process


def _write_snapshot(path: Path, rows: list[dict]) -> None:
    """``rows`` as compact JSONL (what ``records_sha256`` hashes), gzipped, written whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with gzip.open(partial, "wt", encoding="utf-8", compresslevel=1) as stream:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    partial.replace(path)
