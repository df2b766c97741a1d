"""What differs between kinds of training run: config, data, the trainer, the output.

Each kind is a small plug-in; the run executor (``sampler.runs.services``) does everything
else the same way for all of them: claim, progress and heartbeat, cancellation, the output
directory, registration of the new version, failure and retry.
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
from django.utils.module_loading import import_string

from ranking.exports.filters import KTO_FORMAT, SCHEMA_VERSION, ExportFilters
from ranking.exports.selectors import export_records
from ranking.projects.models import Project
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active
from sampler.runs.models import TrainingRun
from sampler.runs.sources import REWARD_SOURCES, kto_records, reward_records
from sampler.training.config import CONFIGS, KTO_SOURCES, ConfigError
from sampler.training.ppo_config import PPOConfig
from sampler.training.records import (
    DataError,
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


def validated_version(version: ModelVersion | None, kind: str, field_name: str) -> ModelVersion:
    version = version or model_version_active(kind=kind)
    if version is None:
        what = "policy" if kind == ModelVersion.Kind.POLICY else "reward model"
        raise ValidationError({field_name: f"No active {what}: promote one or name the version."})
    if version.kind != kind:
        raise ValidationError({field_name: f"{version.name} is not a {kind} version."})
    if not version.path:
        raise ValidationError({field_name: f"{version.name} has no local model directory."})
    if problem := model_folder_problem(version):
        raise ValidationError({field_name: problem})
    return version


def model_folder_problem(version: ModelVersion) -> str:
    """Why ``version``'s local folder cannot be loaded ("" when it may be): registration checked
    it, but a folder can be moved or deleted since (a hub id, not a local path, is left alone)."""
    path = Path(version.path)
    if path.is_absolute() and not (path / "config.json").is_file():
        return (
            f"{version.name}'s folder {version.path} holds no model (no config.json): was it "
            "moved or deleted?"
        )
    return ""


@dataclass(frozen=True)
class TrainingKind:
    """One kind of training run.

    ``inputs`` validates what the kind needs beyond the common arguments and returns what to
    add to the run's ``dataset`` record; ``load`` reads the data when the run starts; ``train``
    runs the Django-free trainer and returns its ``RunResult``.
    """

    name: str
    data_format: str
    output_kind: str
    config_from_dict: Callable[[dict], Any]
    load: Callable[[TrainingRun, Any], RunData]
    train: Callable[..., Any]
    inputs: Callable[..., dict] = lambda **_: {}
    describe: Callable[[TrainingRun, RunData], str] = lambda run, data: (
        f"{run.get_kind_display()} run {run.pk} from {run.base_version.name}."
    )
    # Recorded on the new version beside the trainer's metrics.
    version_metrics: Callable[[RunData], dict] = lambda data: {}
    # The database records whose held-out prompts the run evaluates on (its data, or what
    # holds them: a run from the database with a held-out fraction that holds out none of
    # them is refused), with how to name them; None: not checked.
    evaluated_on: tuple[RecordsOf, str] | None = None


def no_evaluation_problem(kind: TrainingKind, filters: ExportFilters) -> str:
    """Why a run of ``kind`` from the database on ``filters`` would evaluate on nothing ("" when
    it holds out a prompt, or was asked to hold out none: a held-out fraction of 0)."""
    if kind.evaluated_on is None or not filters.test_fraction:
        return ""
    records, records_named = kind.evaluated_on
    return missing_held_out_prompt(
        filters=filters,
        purpose="evaluate on",
        advice=", or choose a larger held-out fraction (or 0 to train without evaluation)",
        records=records,
        records_named=records_named,
    )


def validated_config(kind: TrainingKind, values: dict | None):
    try:
        return kind.config_from_dict(values or {})
    except ConfigError as error:
        raise ValidationError(error.errors) from error


def _train_on_records(trainer: str) -> Callable[..., Any]:
    """``train`` for a kind whose trainer reads the run's rows as ``records`` from the base
    version. ``trainer`` is its dotted path: torch loads in workers only (the web process
    imports this module to validate runs)."""

    def train(*, run: TrainingRun, config, data: RunData, **arguments):
        return import_string(trainer)(
            config=config, records=data.rows, base_model=run.base_version.path, **arguments
        )

    return train


# ---- SFT --------------------------------------------------------------------------------------


# The rows a run from the database read when it first started, kept beside its checkpoints.
DATA_SNAPSHOT = "data.jsonl.gz"


def _load_main(run: TrainingRun, config) -> RunData:
    """The run's rows. A run from the database keeps the rows it first read beside its
    checkpoints and resumes on those: rankings, feedback and trust estimates made since (which
    change records it had read, e.g. their trust weights) do not stop it or change its data. A
    file must be unchanged (its sha256)."""
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


def _policy_from_records(name: str, trainer: str, *, data_format: str, **more) -> TrainingKind:
    """A kind that trains a new policy from the base version on the run's rows with
    ``trainer`` (see ``_train_on_records``), configured by ``CONFIGS[name]``."""
    return TrainingKind(
        name=name,
        data_format=data_format,
        output_kind=ModelVersion.Kind.POLICY,
        config_from_dict=CONFIGS[name].from_dict,
        load=_load_main,
        train=_train_on_records(trainer),
        **more,
    )


SFT = _policy_from_records(
    TrainingRun.Kind.SFT, "sampler.training.sft.train_sft", data_format="demonstrations"
)


# ---- reward -----------------------------------------------------------------------------------


def _reward_inputs(
    *,
    demonstrations_path: str | None = None,
    reward_sources: tuple[str, ...] | list[str] | None = None,
    validate_path,
    config,
    dataset: dict,
    **_,
) -> dict:
    """Demonstrations to normalise on (a file; the database's by default for database runs)
    and, from the database, which signals to learn from (rankings, red-team pairs, feedback
    pairs). A file run that normalises must name its demonstrations: the same normalisation as
    a database run, or a clear refusal, never a silent skip."""
    inputs: dict = {}
    if reward_sources:
        unknown = set(reward_sources) - set(REWARD_SOURCES)
        if unknown or dataset["source"] != "database":
            raise ValidationError(
                {
                    "reward_sources": (
                        f"reward_sources: any of {', '.join(REWARD_SOURCES)}, from the database."
                    )
                }
            )
        inputs["sources"] = [name for name in REWARD_SOURCES if name in reward_sources]
    if demonstrations_path:
        path = validate_path(demonstrations_path, field="demonstrations")
        if config.normalize_to_demonstrations:
            try:
                rows = list(islice(read_jsonl(path), config.normalization_samples))
            except DataError as error:
                raise ValidationError({"demonstrations": str(error)}) from error
            name = Path(path).name
            problem = (newer_schema_problem(rows[0], name=name) if rows else "") or (
                _not_demonstrations(rows, name=name)
            )
            if problem:
                raise ValidationError({"demonstrations": problem})
        inputs["demonstrations"] = {"source": "file", "path": path}
    elif dataset["source"] == "file" and config.normalize_to_demonstrations:
        raise ValidationError(
            {
                "demonstrations": (
                    "A reward model trained from a file is normalised on demonstrations (scores "
                    "mean 0 on them, as from the database): name a demonstrations export, or "
                    "turn normalize_to_demonstrations off."
                )
            }
        )
    return inputs


def _not_demonstrations(rows: list[dict], *, name: str) -> str:
    """Why ``rows`` give nothing to normalise on ("" when one has an assistant turn)."""
    for row in rows:
        messages = row.get("messages")
        if isinstance(messages, list) and any(
            isinstance(m, dict) and m.get("role") == "assistant" for m in messages
        ):
            return ""
    holds = f"its first record has {', '.join(sorted(rows[0]))}" if rows else "it is empty"
    return (
        f"{name} holds no demonstration to normalise the scores on (a record with `messages` "
        f"and an assistant turn, as the demonstrations export writes): {holds}."
    )


def _demonstrations_source(run: TrainingRun) -> dict | None:
    """Demonstrations named for normalisation, else the database's with the run's dates,
    trainers and projects (a file-trained run without them skips normalisation)."""
    if "demonstrations" in run.dataset:
        return {
            key: value
            for key, value in run.dataset["demonstrations"].items()
            if key in {"source", "path", "filters"}
        }
    if run.dataset["source"] != "database":
        return None
    filters = dict(run.dataset["filters"])
    kept = {"date_from", "date_to", "exclude_trainer_ids", "pseudonymize", "project_ids"}
    return {
        "source": "database",
        "filters": {key: value for key, value in filters.items() if key in kept},
    }


def _load_reward(run: TrainingRun, config) -> RunData:
    data = _load_main(run, config)
    source = _demonstrations_source(run)
    if source is not None and config.normalize_to_demonstrations:
        demonstrations = read_source(source, "demonstrations", limit=config.normalization_samples)
        # Before training: a run must not spend its steps to find this out at the end.
        name = Path(source["path"]).name if source["source"] == "file" else "The database"
        if problem := _not_demonstrations(demonstrations.rows, name=name):
            raise DataError(problem)
        data.extra["demonstrations"] = demonstrations
        data.description["demonstrations"] = demonstrations.description
    return data


def _train_reward(*, run: TrainingRun, config, data: RunData, **arguments):
    # torch loads in workers only.
    from sampler.training.reward import train_reward

    demonstrations = data.extra.get("demonstrations")
    return train_reward(
        config=config,
        records=data.rows,
        demonstrations=demonstrations.rows if demonstrations else None,
        base_model=run.base_version.path,
        **arguments,
    )


REWARD = TrainingKind(
    name=TrainingRun.Kind.REWARD,
    data_format="rankings",
    output_kind=ModelVersion.Kind.REWARD,
    config_from_dict=CONFIGS["reward"].from_dict,
    load=_load_reward,
    train=_train_reward,
    inputs=_reward_inputs,
)


# ---- PPO --------------------------------------------------------------------------------------


def _ppo_inputs(
    *, reward_version: ModelVersion | None = None, base: ModelVersion, config, **_
) -> dict:
    # The policy's context (known at registration) must hold a prompt beside the reply; the
    # trainer checks it again against the loaded model.
    if base.context_length and base.context_length - config.max_new_tokens < 8:
        raise ValidationError(
            {
                "max_new_tokens": (
                    f"max_new_tokens={config.max_new_tokens} leaves no room for prompts in "
                    f"{base.name}'s {base.context_length}-token context."
                )
            }
        )
    reward = validated_version(reward_version, ModelVersion.Kind.REWARD, "reward_version")
    return {"reward_version": {"id": reward.pk, "name": reward.name}}


def _load_ppo(run: TrainingRun, config) -> RunData:
    data = _load_main(run, config)
    data.extra["reward"] = ModelVersion.objects.get(pk=run.dataset["reward_version"]["id"])
    return data


def _train_ppo(*, run: TrainingRun, config, data: RunData, **arguments):
    # torch loads in workers only.
    from sampler.training.ppo import train_ppo

    return train_ppo(
        config=config,
        prompts=data.rows,
        base_model=run.base_version.path,
        reward_model=data.extra["reward"].path,
        **arguments,
    )


PPO = TrainingKind(
    name=TrainingRun.Kind.PPO,
    data_format=PROMPTS_FORMAT,
    output_kind=ModelVersion.Kind.POLICY,
    config_from_dict=PPOConfig.from_dict,
    load=_load_ppo,
    train=_train_ppo,
    inputs=_ppo_inputs,
    describe=lambda run, data: (
        f"PPO run {run.pk} from {run.base_version.name} against {data.extra['reward'].name}."
    ),
    version_metrics=lambda data: {"reward_version": data.extra["reward"].name},
    evaluated_on=(prompt_records, "finished conversation or ranking with a user turn"),
)


# ---- DPO --------------------------------------------------------------------------------------


DPO = _policy_from_records(
    TrainingRun.Kind.DPO,
    "sampler.training.dpo.train_dpo",
    data_format="rankings",
    describe=lambda run, data: (
        f"DPO run {run.pk} ({run.config.get('mode')}, beta {run.config.get('beta')}) from "
        f"{run.base_version.name}, which is also its reference."
    ),
    evaluated_on=(ranking_records, "ranking"),
)


# ---- KTO --------------------------------------------------------------------------------------


def _kto_inputs(*, config, dataset: dict, **_) -> dict:
    # The sources are the config's; a database run reads exactly those.
    if dataset["source"] == "database":
        return {"sources": list(config.source_names)}
    if set(config.source_names) != set(type(config)().source_names):
        raise ValidationError(
            {"sources": "sources choose rows of the database; a data file is read whole."}
        )
    return {}


KTO = _policy_from_records(
    TrainingRun.Kind.KTO,
    "sampler.training.kto.train_kto",
    data_format=KTO_FORMAT,
    inputs=_kto_inputs,
    describe=lambda run, data: (
        f"KTO run {run.pk} from {run.base_version.name} (also its reference) on "
        + (
            f"{', '.join(run.config.get('sources', '').split(','))}."
            if run.dataset["source"] == "database"
            else f"the records of {Path(run.dataset['path']).name}."
        )
    ),
)


TRAINING_KINDS: dict[str, TrainingKind] = {kind.name: kind for kind in (SFT, REWARD, PPO, DPO, KTO)}


def training_kind(name: str) -> TrainingKind:
    try:
        return TRAINING_KINDS[name]
    except KeyError:
        raise ValidationError(
            {"kind": f"kind must be one of {', '.join(TRAINING_KINDS)}."}
        ) from None


# The keys a record of each kind's file must have (any one set): the first record is checked
# when the run is made, so a file of another format is refused before any run exists.
RECORD_KEYS = {
    TrainingRun.Kind.SFT: (("messages",),),
    TrainingRun.Kind.REWARD: (("candidates", "ordering"), ("chosen", "rejected")),
    TrainingRun.Kind.DPO: (("candidates", "ordering"), ("chosen", "rejected")),
    TrainingRun.Kind.KTO: (("completion", "label"),),
}


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


def data_file_problem(kind: str, path: str) -> str:
    """Why the file at ``path`` cannot be ``kind``'s data, by its first record ("" when it
    may be; the rest is read when the run starts)."""
    name = Path(path).name
    records = read_jsonl(path)
    try:
        first = next(records, None)
    except DataError as error:
        return str(error)
    except OSError as error:  # unreadable (permissions, a folder)
        return f"Cannot read {name}: {error.strerror or error}."
    finally:
        records.close()
    if first is None:
        return f"{name} holds no record."
    if not isinstance(first, dict):
        return f"The first record of {name} is not a JSON object."
    if problem := newer_schema_problem(first, name=name):
        return problem
    shapes = RECORD_KEYS.get(kind, ())
    if not shapes or any(all(key in first for key in shape) for shape in shapes):
        return ""
    wanted = " or ".join(", ".join(f"`{key}`" for key in shape) for shape in shapes)
    has = ", ".join(f"`{key}`" for key in sorted(first)[:8]) or "no field"
    return f"A {kind} run reads records with {wanted}; the first record of {name} has {has}."


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
