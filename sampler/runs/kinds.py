"""What differs between kinds of training run: config, data, the trainer, the output.

Each kind is a small plug-in; the run executor (``sampler.runs.services``) does everything
else the same way for all of them: claim, progress and heartbeat, cancellation, the output
directory, registration of the new version, failure and retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

from ranking.exports.filters import KTO_FORMAT, ExportFilters
from sampler.registry.models import ModelVersion
from sampler.runs.data import (
    BY_CONVERSATION,
    BY_FILE_CONVERSATION,
    PROMPTS,
    PROMPTS_FORMAT,
    Counted,
    RunData,
    database_records,
    load_run_data,
    projects_named,
    prompt_keys,
    read_source,
    split_problem,
    too_little_to_train_problem,
)
from sampler.runs.data_files import newer_schema_problem
from sampler.runs.models import TrainingRun, run_of_kind
from sampler.runs.sources import REWARD_SOURCES
from sampler.runs.versions import validated_version
from sampler.training.config import CONFIGS, ConfigError, setting_label
from sampler.training.ppo_config import PPOConfig
from sampler.training.records import (
    DataError,
    carries_own_split,
    demonstration_turns,
    in_half,
    none_in_half,
    numbered_records,
    ranking_from_record,
    read_jsonl,
    record_half,
    record_split,
)


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
    # Recorded on the new version beside the trainer's metrics (called in the transaction that
    # registers it).
    version_metrics: Callable[[RunData], dict] = lambda data: {}
    # How a run from the database counts the records it reads (given its ``dataset`` and
    # config) on each side of its split: a held-out fraction that leaves too few on one side
    # (none held out to evaluate on, or none left to train on) is refused when the run is made.
    # None: not checked.
    counted: Callable[[dict, Any], Counted] | None = None


# What to do when a held-out fraction holds out too little, or too much.
LARGER = ", or choose a larger held-out fraction (or 0 to train without evaluation)"
SMALLER = ", or choose a smaller held-out fraction"
EVERY_CONVERSATION = ", or train on every conversation"


def data_split_problems(kind: TrainingKind, config, dataset: dict) -> dict[str, str]:
    """Why a run of ``kind`` on ``dataset`` (the database's records, or a file's) would fail,
    or train without the evaluation it asks for, because of how its data splits ({} when it
    would not), by the field to change. Its records are split as its trainer splits them: a
    reward run on one half of the conversations (``data_half``) whose records all fall in the
    other half fails (its ``none_in_half``); records of which its trainer makes nothing, or
    fewer units than it needs, leave it too little to train on, whatever the fraction
    (``data``); a held-out fraction above 0 that holds out none of what the kind evaluates on
    (or fewer than it needs) trains and reports no held-out metric, and one that holds out all
    of it fails (nothing to train on). A fraction of 0 asks for no evaluation. A file whose
    records carry their own ``split`` (an export's) is held out as they say, whatever the
    fraction: only what it leaves to train on is checked."""
    if dataset["source"] == "database":
        filters = ExportFilters.from_dict(dataset["filters"])
        return _split_problems(
            kind,
            config,
            dataset,
            lambda: database_records(dataset, kind.data_format),
            fraction=filters.test_fraction,
            where=projects_named(filters),
        )
    name = Path(dataset["path"]).name
    records = _ReadOnce(lambda: _file_records(kind, config, dataset))
    try:
        return _split_problems(
            kind,
            config,
            dataset,
            lambda: records,
            fraction=config.test_fraction,
            where=f" in {name}",
        )
    # A record its trainer cannot read (it reads them with these same functions): the run would
    # fail on it once a worker started it.
    except DataError as error:
        return {"data_path": str(error)}
    finally:
        records.close()


# The most records of a file ``_ReadOnce`` keeps to go over again (enough for the checks of
# any split that passes them; a file read further is read again, not held whole in memory).
KEPT_RECORDS = 10_000


class _ReadOnce:
    """The records of one reading of a file, gone over as often as the checks ask: each pass
    goes over the records read so far, then reads on from where the last stopped, so the file
    is opened and read once (each check stops as soon as it has seen enough). Past
    ``KEPT_RECORDS`` a pass reads on without keeping them, and a later pass reads the file
    again."""

    def __init__(self, open_records: Callable[[], Iterator[dict]]):
        self._open = open_records
        self._source: Iterator[dict] | None = None
        self._kept: list[dict] = []
        self._finished = False
        self._overflowed = False

    def __iter__(self) -> Iterator[dict]:
        if self._overflowed:
            yield from self._open()
            return
        index = 0
        while True:
            if index < len(self._kept):
                yield self._kept[index]
            elif self._finished:
                return
            else:
                if self._source is None:
                    self._source = self._open()
                record = next(self._source, None)
                if record is None:
                    self._finished = True
                    return
                if len(self._kept) < KEPT_RECORDS:
                    self._kept.append(record)
                else:
                    # This pass reads on from the source; a later one starts the file over.
                    self._overflowed = True
                    yield record
                    yield from self._source
                    return
                yield record
            index += 1

    def close(self) -> None:
        if self._source is not None:
            self._source.close()


def _file_records(kind: TrainingKind, config, dataset: dict) -> Iterator[dict]:
    """The records of a run's file, each first read as ``_split_problems`` reads it (its half,
    its split, what the kind counts of it): a record of the wrong shape (a turn that is no
    object, a message without a role) fails those with ``KeyError`` or ``TypeError``, said as a
    ``DataError`` naming its line. Only those calls are guarded: an error anywhere else is a
    fault of this code, and is raised as it is."""
    path = dataset["path"]
    counted = kind.counted(dataset, config) if kind.counted is not None else None
    for number, record in numbered_records(path):
        try:
            record_half(record)
            record_split(record, test_fraction=config.test_fraction, seed=config.seed)
            usable = counted is not None and (counted.usable is None or counted.usable(record))
            if usable and counted.units is not None:
                counted.units(record)
        except (KeyError, TypeError) as error:
            raise DataError(
                f"{run_of_kind(kind.name)} cannot read line {number} of {Path(path).name}: "
                "a field holds a value of the wrong shape (a turn that is not an object with "
                "a `role` and `content`, text where a list belongs)."
            ) from error
        yield record


def _split_problems(
    kind: TrainingKind, config, dataset: dict, records, *, fraction: float, where: str
) -> dict[str, str]:
    """``data_split_problems`` on the ``records()`` of ``dataset``, held out by ``fraction``;
    ``where`` says where they are (" in project ...", " in data.jsonl")."""
    half = getattr(config, "data_half", "all")
    if half != "all" and (problem := _empty_half_problem(records(), half)):
        return {"data_half": problem}
    if kind.counted is None:
        return {}
    counted = kind.counted(dataset, config)
    if dataset["source"] == "file":
        name = Path(dataset["path"]).name
        counted = replace(counted, records_named=counted.unit, add=f"records to {name}")
    where = ("" if half == "all" else f" in the {half} half") + where
    if counted.trained and (
        problem := too_little_to_train_problem(
            in_half(records(), half),
            counted=counted,
            where=where,
            filtered_away=(
                _filtered_away(kind, dataset, counted, half)
                if dataset["source"] == "database"
                else None
            ),
        )
    ):
        return {"data": problem}
    if not fraction:
        return {}
    split_by = BY_CONVERSATION if dataset["source"] == "database" else BY_FILE_CONVERSATION
    if dataset["source"] == "file" and carries_own_split(records()):
        counted = replace(counted, held_out=0)
    also = "" if half == "all" else EVERY_CONVERSATION
    problem = split_problem(
        in_half(records(), half),
        counted=counted,
        is_held_out=lambda record: (
            record_split(record, test_fraction=config.test_fraction, seed=config.seed) == "test"
        ),
        fraction=fraction,
        purpose="evaluate on",
        advice=LARGER + also,
        fewer_advice=SMALLER + also,
        where=where,
        split_by=split_by,
    )
    return {"test_fraction": problem} if problem else {}


# The filters that leave rows out (beside the projects and the split, which choose where).
NARROWING = (
    "date_from",
    "date_to",
    "model_version_ids",
    "min_agreement",
    "exclude_flags",
    "exclude_trainer_ids",
    "guideline_versions",
    "red_team",
)


def _filtered_away(
    kind: TrainingKind, dataset: dict, counted: Counted, half: str
) -> Callable[[], bool]:
    """Whether a database run's filters left out every unit its records hold (asked only once
    it has none): the records of its projects without them hold one."""

    def filtered_away() -> bool:
        filters = ExportFilters.from_dict(dataset["filters"])
        defaults = ExportFilters()
        wide = replace(filters, **{name: getattr(defaults, name) for name in NARROWING})
        if wide == filters:
            return False
        records = database_records({**dataset, "filters": wide.as_dict()}, kind.data_format)
        one = replace(counted, trained=1)
        return not too_little_to_train_problem(in_half(records, half), counted=one)

    return filtered_away


def _empty_half_problem(records, half: str) -> str:
    """Why a run on ``half`` of ``records`` has none to train on ("" when one is in it, or when
    there is none at all: ``too_little_to_train_problem`` says so)."""
    read = 0
    for record in records:
        if record_half(record) == half:
            return ""
        read += 1
    return f"Nothing in the {half} half to train on: {none_in_half(read, half)}." if read else ""


def _either(names: list[str]) -> str:
    """ "a", "a or b", "a, b or c"."""
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def lora_targets_problem(kind: TrainingKind, config, base: ModelVersion) -> str:
    """Why ``config``'s LoRA target modules are not all modules of ``base`` ("" when they are,
    or cannot be told here: no LoRA or no targets named, or a base that is no folder of this
    machine, such as a hub id: its trainer says so when it loads it). PEFT would fail the run
    on its worker with NoMatchingPeftModuleError."""
    if not getattr(config, "lora_r", 0) or not getattr(config, "lora_targets", ""):
        return ""
    if not (Path(base.path) / "config.json").is_file():
        return ""
    # torch loads in workers and commands only: here, only for a run that names its targets.
    missing = import_string("sampler.training.model.missing_lora_targets")(
        base.path,
        config.lora_targets,
        task="reward" if kind.name == TrainingRun.Kind.REWARD else "causal_lm",
    )
    if not missing:
        return ""
    named = _either([f"`{name}`" for name in missing])
    return (
        f"{base.name} has no module named {named} for LoRA to adapt: name modules it has "
        "(GPT-2: c_attn, c_proj, c_fc; Llama: q_proj, k_proj, v_proj, o_proj), or leave the "
        "targets empty for PEFT's default."
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


def _policy_from_records(name: str, trainer: str, *, data_format: str, **more) -> TrainingKind:
    """A kind that trains a new policy from the base version on the run's rows with
    ``trainer`` (see ``_train_on_records``), configured by ``CONFIGS[name]``."""
    return TrainingKind(
        name=name,
        data_format=data_format,
        output_kind=ModelVersion.Kind.POLICY,
        config_from_dict=CONFIGS[name].from_dict,
        load=load_run_data,
        train=_train_on_records(trainer),
        **more,
    )


def _demonstrations_counted(learn_origins: tuple[str, ...]) -> Counted:
    """SFT's demonstrations: those with an assistant turn to learn, of ``learn_origins`` when
    it names some (the trainer skips the others)."""
    written = _either([name.replace("_", " ") for name in learn_origins])
    return Counted(
        unit="demonstration",
        records_named="finished conversation"
        + (f" with a reply written as {written}" if learn_origins else ""),
        usable=lambda record: (
            demonstration_turns(
                record.get("messages") or [],
                origins=record.get("origins"),
                learn_origins=learn_origins,
            )
            is not None
        ),
    )


SFT = _policy_from_records(
    TrainingRun.Kind.SFT,
    "sampler.training.sft.train_sft",
    data_format="demonstrations",
    counted=lambda dataset, config: _demonstrations_counted(config.learn_origins),
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
                        f"A reward model learns from any of {', '.join(REWARD_SOURCES)}, and "
                        "chooses them from the database only."
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
                "demonstrations": ValidationError(
                    "A reward model trained from a file is normalised on demonstrations (scores "
                    "mean 0 on them, as from the database): %(remedy)s.",
                    code=NORMALISING_NEEDS_DEMONSTRATIONS,
                    params={
                        "remedy": "name a demonstrations export, or turn "
                        "normalize_to_demonstrations off"
                    },
                )
            }
        )
    return inputs


# The code of the refusal above, whose remedy each door words with its own controls.
NORMALISING_NEEDS_DEMONSTRATIONS = "normalising_needs_demonstrations"


def normalising_remedy_worded(error: ValidationError, *, remedy: str) -> ValidationError:
    """``error`` with the remedy of a file-trained reward model refused for want of
    demonstrations worded as the door that asked says it (its option, its box)."""
    for errors in getattr(error, "error_dict", {}).values():
        for item in errors:
            if item.code == NORMALISING_NEEDS_DEMONSTRATIONS:
                item.params = {**(item.params or {}), "remedy": remedy}
    return error


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
    data = load_run_data(run, config)
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


# What each of a reward model's sources gives, and a KTO run's.
REWARD_RECORDS = {"rankings": "ranking", "red_team": "red-team pair", "feedback": "feedback pair"}
KTO_RECORDS = {
    "thumbs_up": "thumbs up",
    "thumbs_down": "thumbs down",
    "reports": "report",
    "flags": "reply flagged harmful/untruthful",
}


def _orders_something(record: dict) -> bool:
    """Whether the reward or DPO trainer learns from a ranking or pair: it skips a ranking that
    orders nothing ("cannot rank", "all equal", "all bad"), which the export keeps."""
    return ranking_from_record(record) is not None


def _reward_counted(sources: list[str]) -> Counted:
    """A reward model's records: rankings, and the pairs of its other sources."""
    named = _either([REWARD_RECORDS[name] for name in sources])
    return Counted(
        unit="ranking" if sources == ["rankings"] else "record",
        records_named=named,
        usable=_orders_something,
        add=_either([f"{REWARD_RECORDS[name]}s" for name in sources]),
    )


REWARD = TrainingKind(
    name=TrainingRun.Kind.REWARD,
    data_format="rankings",
    output_kind=ModelVersion.Kind.REWARD,
    config_from_dict=CONFIGS["reward"].from_dict,
    load=_load_reward,
    train=_train_reward,
    inputs=_reward_inputs,
    counted=lambda dataset, config: _reward_counted(dataset.get("sources") or ["rankings"]),
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
                    f"{setting_label('max_new_tokens')} of {config.max_new_tokens} leaves no room "
                    f"for prompts in {base.name}'s {base.context_length}-token context."
                )
            }
        )
    reward = validated_version(reward_version, ModelVersion.Kind.REWARD, "reward_version")
    return {"reward_version": {"id": reward.pk, "name": reward.name}}


def _load_ppo(run: TrainingRun, config) -> RunData:
    data = load_run_data(run, config)
    data.extra["reward"] = ModelVersion.objects.get(pk=run.dataset["reward_version"]["id"])
    return data


def _ppo_version_metrics(data: RunData) -> dict:
    """The reward model the policy was optimised against, by its name as it stands now (read
    in the registration's transaction, its row locked until that commits): one renamed while
    the run trained is named as renamed, and a rename under way waits for the policy and then
    carries it over (``model_version_save``)."""
    reward = data.extra["reward"]
    name = (
        ModelVersion.objects.select_for_update()
        .filter(pk=reward.pk)
        .values_list("name", flat=True)
        .first()
    )
    # A reward model deleted meanwhile leaves the name the run knew it by.
    return {"reward_version": name or reward.name}


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
    version_metrics=_ppo_version_metrics,
    # Each distinct prompt once, on the side it is first read on (``build_prompt_data``).
    counted=lambda dataset, config: replace(PROMPTS, once=True),
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
    counted=lambda dataset, config: Counted(
        unit="prompt",
        records_named="ranking",
        units=prompt_keys,
        usable=_orders_something,
        add="rankings",
    ),
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
    counted=lambda dataset, config: Counted(
        unit="example",
        # A file has no sources (it is read whole): its records are examples.
        records_named=(
            _either([KTO_RECORDS[name] for name in dataset["sources"]])
            if "sources" in dataset
            else "example"
        ),
        held_out=2,
        why_held_out=(
            "KTO evaluates on at least 2: its KL estimate puts each reply after another "
            "example's prompt"
        ),
        trained=2,
        why_trained="KTO trains on at least 2",
        add="feedback on replies",
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
