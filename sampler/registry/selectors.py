from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Lower

from config.querysets import ids_existing
from config.text import text_problem
from sampler.registry.models import ModelVersion
from sampler.runs.models import TrainingRun


def model_version_active(*, kind: str = ModelVersion.Kind.POLICY) -> ModelVersion | None:
    return ModelVersion.objects.filter(kind=kind, is_active=True).first()


def sampler_model_path() -> str:
    """``SAMPLER_MODEL`` as the default policy is registered under: a folder named relative to
    where this process runs as its absolute path (a worker runs elsewhere), else as given."""
    path = str(settings.SAMPLER_MODEL)
    if not Path(path).is_absolute() and Path(path).exists():
        return str(Path(path).resolve())
    return path


def policy_version_by_path(*, path: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(path=path, kind=ModelVersion.Kind.POLICY).first()


def _named(name: str) -> QuerySet[ModelVersion]:
    """The version named ``name`` in any letter case (one at most: names are unique so),
    folded as the constraint folds (``Lower``, not iexact's ``UPPER``)."""
    return ModelVersion.objects.alias(folded_name=Lower("name")).filter(
        folded_name=Lower(Value(name))
    )


def model_versions_named(*, names: Iterable[str]) -> QuerySet[ModelVersion]:
    """The versions ``names`` name, each in any letter case (folded as ``_named`` folds)."""
    folded = {name for name in names if isinstance(name, str)}
    if not folded:
        return ModelVersion.objects.none()
    return ModelVersion.objects.alias(folded_name=Lower("name")).filter(
        reduce(or_, (Q(folded_name=Lower(Value(name))) for name in folded))
    )


def model_version_by_name(*, name: str) -> ModelVersion | None:
    """The version named ``name``, whatever the letter case it is typed in (a name is one
    version's in any case, so this is never a guess); None when there is none."""
    return _named(name).first()


def model_version_name_taken(*, name: str, exclude_pk: int | None = None) -> str | None:
    """Why no other version than ``exclude_pk`` may take ``name`` (None: it may): the one
    sentence every door that names a version says, naming the version that has it. A name that
    cannot be stored (a NUL) is no one's: its own check refuses it."""
    if text_problem(name) is not None:
        return None
    taken = _named(name).exclude(pk=exclude_pk).values_list("name", flat=True).first()
    if taken is None:
        return None
    case = "" if taken == name else "; names that differ only in letter case are one"
    return f"A model version named {taken} already exists{case}."


def model_version_ids_by_name(*, names: list[str]) -> tuple[int, ...]:
    """The ids of the policy versions named, in any letter case (the filter "the policy that
    sampled the task"), in their order; ValidationError naming any that is unknown, or not a
    policy (it would match nothing)."""
    # By the version's name as given first: "Tiny" and "tiny" are one version.
    labels: dict[int, str] = {}
    unknown = set()
    for name in names:
        pk = _named(name).values_list("pk", flat=True).first()
        if pk is None:
            unknown.add(name)
        else:
            labels.setdefault(pk, name)
    if unknown:
        raise ValidationError(
            {"model_version": f"Unknown model version: {', '.join(sorted(unknown))}."}
        )
    ids = tuple(labels)
    _policies_only(ids, labels, key="model_version")
    return ids


def model_version_ids_existing(*, ids: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """``ids`` when each names a policy version; ValidationError naming those that do not
    exist, or are not policies."""
    found = ids_existing(
        ModelVersion.objects.all(), ids, what="model version", key="model_version_id"
    )
    _policies_only(found, {pk: pk for pk in found}, key="model_version_id")
    return found


def _policies_only(ids: tuple[int, ...], labels: dict, *, key: str) -> None:
    """A ValidationError under ``key`` naming (by ``labels``) the versions of ``ids`` that are
    not policies: no ranking task, red-team attack or demonstration is sampled by one."""
    others = set(
        ModelVersion.objects.filter(pk__in=ids)
        .exclude(kind=ModelVersion.Kind.POLICY)
        .values_list("pk", flat=True)
    )
    named = [str(labels[pk]) for pk in ids if pk in others]
    if named:
        raise ValidationError(
            {key: f"Not a policy (tasks are sampled by policies): {', '.join(named)}."}
        )


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("parent", "training_run").order_by("-created_at")


# What the tree shows of a version's final metrics, in this order, where present.
KEY_METRICS = (
    ("eval/scores", "held-out score"),
    ("eval/kl", "held-out KL"),
    ("objective/scores", "score (after the EOS penalty)"),
    ("objective/kl", "KL"),
    ("response/length", "length"),
    ("accuracy/eval", "held-out accuracy"),
    ("loss/eval", "held-out loss"),
)


# Data statistics worth a column, by kind of run: counts a run trained and was tested on.
DATA_SIZE_KEYS = (
    "prompts/train",
    "prompts/test",
    "rankings/train",
    "rankings/test",
    "pairs/train",
    "examples/train",
    "examples/test",
)


@dataclass
class VersionRow:
    version: ModelVersion
    depth: int
    run: TrainingRun | None
    metrics: list[tuple[str, float]] = field(default_factory=list)
    data: list[tuple[str, int]] = field(default_factory=list)
    stopped_early: str = ""
    # Against the parent: the newest comparison's judge verdict and people's votes (views fill).
    judge_win_rate: float | None = None
    judge_name: str = ""
    votes: object = None


# PPO versions trained before ``objective/raw_scores`` was recorded: their
# ``objective/scores`` is the reward model's score, before any penalty.
_BEFORE_RAW_SCORES = {"objective/scores": "score"}


def _row(version: ModelVersion, depth: int) -> VersionRow:
    metrics = version.metrics or {}
    relabel = {} if "objective/raw_scores" in metrics else _BEFORE_RAW_SCORES
    shown = [
        (relabel.get(name, label), float(metrics[name]))
        for name, label in KEY_METRICS
        if isinstance(metrics.get(name), int | float)
    ]
    data = metrics.get("data") if isinstance(metrics.get("data"), dict) else {}
    sizes = [(name, int(data[name])) for name in DATA_SIZE_KEYS if name in data]
    return VersionRow(
        version=version,
        depth=depth,
        run=version.training_run,
        metrics=shown,
        data=sizes,
        stopped_early=str(metrics.get("stopped_early") or ""),
    )


def model_version_tree(*, limit: int = 500) -> list[VersionRow]:
    """Versions in tree order (each after its parent, siblings oldest first) with their depth:
    base -> SFT -> reward / PPO round 1 -> ..."""
    versions = list(
        ModelVersion.objects.select_related("training_run", "parent").order_by("created_at", "pk")[
            :limit
        ]
    )
    known = {version.pk for version in versions}
    children: dict[int | None, list[ModelVersion]] = {}
    for version in versions:
        parent = version.parent_id if version.parent_id in known else None
        children.setdefault(parent, []).append(version)
    rows: list[VersionRow] = []
    stack = [(version, 0) for version in reversed(children.get(None, []))]
    while stack:
        version, depth = stack.pop()
        rows.append(_row(version, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(version.pk, [])))
    return rows


def policy_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY).order_by("-created_at")


def reward_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(kind=ModelVersion.Kind.REWARD).order_by("-created_at")
