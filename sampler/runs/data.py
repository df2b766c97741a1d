"""The data a training run reads: its rows (``RunData``) from a JSONL file or the database, the
held-out prompts of the database's records, whether they hold enough to train on
(``too_little_to_train_problem``), what a held-out fraction leaves on each side of a split
(``split_problem``), and the snapshot of the rows a run from the database first read,
which it resumes on.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterable, Iterator
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
# Records of the database that ``filters`` choose (``prompt_records``).
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


def prompt_keys(record: dict) -> list[str]:
    """The distinct prompts a record holds (prefixes ending in a user turn), as keys."""
    return [prompt_key(messages) for messages in prompt_prefixes(record)]


@dataclass(frozen=True)
class Counted:
    """What a run reads, counted in ``unit``s on each side of its split: the distinct prompts
    of its records (``units``: ``prompt_keys``) or the records themselves (``units`` None),
    of the records its trainer makes an example of (``usable``; None: every one); ``once``:
    a unit its trainer takes once, on the side of the record it first reads it in (PPO's
    prompts), not on both. It evaluates on at least ``held_out`` held-out units and trains on
    at least ``trained`` (0: it does not train); ``why_held_out`` / ``why_trained`` say why
    more than one. ``records_named`` names the records, for when there are none; ``add`` what
    to add when there are too few ("Add more conversations first.")."""

    unit: str
    records_named: str
    units: Callable[[dict], list[str]] | None = None
    usable: Callable[[dict], bool] | None = None
    once: bool = False
    held_out: int = 1
    why_held_out: str = ""
    trained: int = 1
    why_trained: str = ""
    add: str = "conversations"


PROMPTS = Counted(
    unit="prompt",
    records_named="finished conversation or ranking with a user turn",
    units=prompt_keys,
)
# Said of a split, when a fraction held out too much or too little.
BY_CONVERSATION = "(whole conversations are held out, chosen by a hash of their id)"
# Of a file's records, split as ``record_split`` splits them.
BY_FILE_CONVERSATION = (
    "(whole conversations are held out, chosen by a hash of their `conversation_id`, or of their "
    "opening turns without one)"
)


def split_problem(
    records: Iterable[dict],
    *,
    counted: Counted,
    is_held_out: Callable[[dict], bool],
    fraction: float,
    purpose: str,
    advice: str,
    fewer_advice: str = "",
    where: str = "",
    split_by: str = BY_CONVERSATION,
) -> str:
    """Why a held-out ``fraction`` leaves too little of ``records`` on one side ("" when it
    leaves enough on both): fewer held-out units than ``counted.held_out`` to ``purpose``, or
    fewer to train on than ``counted.trained``. Each says what there is, then "Add more" and
    ``counted.add``, and what else to do: ``advice`` for too little held out (", or ..."),
    ``fewer_advice`` for too little left to train on. ``is_held_out`` says which records are
    held out, as the trainer splits them; ``where`` says where the records are (" in project
    ..."); ``split_by`` how they were split. Records are read until both sides hold enough."""
    held, trained, every = set(), set(), set()
    for number, record in enumerate(records):
        if counted.usable is not None and not counted.usable(record):
            continue
        keys = counted.units(record) if counted.units else [number]
        if counted.once:
            keys = [key for key in keys if key not in held and key not in trained]
        (held if is_held_out(record) else trained).update(keys)
        if len(held) >= counted.held_out and len(trained) >= counted.trained:
            return ""
        if len(every) < PROMPTS_COUNTED:
            every.update(keys)
    unit, shown = counted.unit, f"{fraction:g}"
    if not every:
        return (
            f"No held-out {unit} to {purpose}: {_none_yet(counted, where)}, so a held-out "
            f"fraction of {shown} holds out none. Add more {counted.add} first."
        )
    count = f"{len(every)}" if len(every) < PROMPTS_COUNTED else f"{PROMPTS_COUNTED}+"
    if len(held) < counted.held_out:
        if held:
            problem = (
                f"Too few held-out {unit}s to {purpose}: a held-out fraction of {shown} holds "
                f"out {len(held)} of the {count} {unit}s{where}, and {counted.why_held_out}"
            )
        elif len(every) == 1:
            problem = (
                f"No held-out {unit} to {purpose}: a held-out fraction of {shown} does not "
                f"hold out the only {unit}{where}"
            )
        else:
            problem = (
                f"No held-out {unit} to {purpose}: a held-out fraction of {shown} holds out "
                f"none of the {count} {unit}s{where}"
            )
    else:
        advice = fewer_advice
        if trained:
            problem = (
                f"Too few {unit}s to train on: a held-out fraction of {shown} leaves "
                f"{len(trained)} of the {count} {unit}s{where} to train on, and "
                f"{counted.why_trained}"
            )
        elif len(every) == 1:
            problem = (
                f"No {unit} to train on: a held-out fraction of {shown} holds out the only "
                f"{unit}{where}"
            )
        else:
            problem = (
                f"No {unit} to train on: a held-out fraction of {shown} holds out all "
                f"{count} {unit}s{where}"
            )
    return f"{problem} {split_by}. Add more {counted.add}{advice}."


def _none_yet(counted: Counted, where: str) -> str:
    """ "there is no prompt yet in project ... (no ranking)"."""
    named = "" if counted.records_named == counted.unit else f" (no {counted.records_named})"
    return f"there is no {counted.unit} yet{where}{named}"


def too_little_to_train_problem(
    records: Iterable[dict],
    *,
    counted: Counted,
    where: str = "",
    filtered_away: Callable[[], bool] | None = None,
) -> str:
    """Why ``records`` leave a run too little to train on, whatever its split: none of the
    units its trainer uses (see ``Counted``), or fewer than ``counted.trained`` ("" when they
    hold enough). Records are read until they do. With none, ``filtered_away`` (asked then
    only) says whether the run's filters left out those there are."""
    units: set = set()
    for number, record in enumerate(records):
        if counted.usable is not None and not counted.usable(record):
            continue
        units.update(counted.units(record) if counted.units else [number])
        if len(units) >= counted.trained:
            return ""
    if not units and filtered_away is not None and filtered_away():
        return (
            f"Nothing to train on: the filters leave none of the {counted.unit}s there "
            f"are{where} (dates, trainers, agreement, flags, versions, guidelines, red team). "
            "Widen them."
        )
    if not units:
        return f"Nothing to train on: {_none_yet(counted, where)}. Add more {counted.add} first."
    there = f"is 1 {counted.unit}" if len(units) == 1 else f"are {len(units)} {counted.unit}s"
    return (
        f"Too few {counted.unit}s to train on: there {there}{where}, and "
        f"{counted.why_trained}. Add more {counted.add} first."
    )


def missing_held_out_prompt(
    *,
    filters: ExportFilters,
    purpose: str,
    advice: str,
) -> str:
    """Why ``filters``' held-out fraction holds out none of the prompts of ``prompt_records``
    (by the split the export gives them) to ``purpose`` ("" when it holds one out): see
    ``split_problem``."""
    return split_problem(
        prompt_records(filters=replace(filters, split="all")),
        counted=replace(PROMPTS, trained=0),
        is_held_out=lambda record: record.get("split") == "test",
        fraction=filters.test_fraction,
        purpose=purpose,
        advice=advice,
        where=projects_named(filters),
    )


def projects_named(filters: ExportFilters) -> str:
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
    rows = list(islice(database_records(source, data_format), limit))
    return RunData(rows, {**source, "rows": len(rows), "sha256": records_sha256(rows)})


def database_records(source: dict, data_format: str) -> Iterator[dict]:
    """The records a run from the database (``source``: its filters, and the sources it learns
    from where its kind chooses them) reads, in ``data_format``."""
    filters = ExportFilters.from_dict(source["filters"])
    if data_format == PROMPTS_FORMAT:
        return prompt_records(filters=filters)
    if data_format == KTO_FORMAT:
        return kto_records(filters, sources=tuple(source.get("sources") or KTO_SOURCES))
    if data_format == "rankings" and source.get("sources"):
        return reward_records(filters, sources=tuple(source["sources"]))
    return export_records(format=data_format, filters=filters)


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
