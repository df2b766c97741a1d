from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from ranking.exports.models import DatasetExport
from ranking.projects.models import project_default_id
from ranking.projects.selectors import projects_for_trainer
from sampler.comparisons.models import ModelComparison, SideBySide, SideBySideVote
from sampler.comparisons.ratings import Rating, bradley_terry
from sampler.registry.models import ModelVersion
from sampler.runs.models import TrainingRun


@dataclass(frozen=True)
class TrainedSplit:
    """The split one training run in a compared policy's lineage held out (by conversation)."""

    policy: str
    # The version the run made: the policy itself or one of its ancestors.
    version: str
    run_id: int
    run_kind: str
    test_fraction: float
    split_seed: int

    @property
    def run(self) -> str:
        """How a message names the run: "PPO run 7 (which made ppo-1)"."""
        return f"{self.run_kind} run {self.run_id} (which made {self.version})"

    def as_dict(self) -> dict:
        return {
            "policy": self.policy,
            "version": self.version,
            "run": self.run_id,
            "kind": self.run_kind,
            "test_fraction": self.test_fraction,
            "split_seed": self.split_seed,
        }


@dataclass(frozen=True)
class LineageHeldOut:
    """What the compared policies' training held out of this database's conversations.

    ``splits``: each run in a policy's lineage (the version, its parent, and so on) that read
    this database, or an export of it, with the split it recorded. ``unchecked``: runs whose
    split this database cannot know (trained on an uploaded file, or on a file that is no export
    of it; their records' split is the file's)."""

    splits: tuple[TrainedSplit, ...] = ()
    unchecked: tuple[str, ...] = field(default=())

    @property
    def test_fraction(self) -> float | None:
        """The largest fraction every run held out: the smallest recorded (None: no run)."""
        return min((split.test_fraction for split in self.splits), default=None)

    @property
    def split_seed(self) -> int | None:
        """The seed every run split with (None: no run, or runs that disagree)."""
        seeds = {split.split_seed for split in self.splits}
        return seeds.pop() if len(seeds) == 1 else None


def lineage_held_out(*, versions: list[ModelVersion] | tuple[ModelVersion, ...]) -> LineageHeldOut:
    """The held-out splits of the training runs that made ``versions`` and their ancestors.

    A policy with no recorded run (imported, registered) adds nothing: what it trained on is
    not this database's to know."""
    splits, unchecked = [], []
    for policy in versions:
        current, seen = policy, set()
        while current is not None and current.pk not in seen:
            seen.add(current.pk)
            run = current.training_run
            if run is not None:
                split = _run_split(run)
                named = dict(
                    policy=policy.name,
                    version=current.name,
                    run_id=run.pk,
                    run_kind=run.get_kind_display(),
                )
                if split is None:
                    unchecked.append(
                        f"{policy.name}: {run.get_kind_display()} run {run.pk} (which made "
                        f"{current.name}) trained on a file this database did not export"
                    )
                else:
                    fraction, seed = split
                    splits.append(TrainedSplit(**named, test_fraction=fraction, split_seed=seed))
            current = current.parent
    return LineageHeldOut(splits=tuple(splits), unchecked=tuple(unchecked))


def _run_split(run: TrainingRun) -> tuple[float, int] | None:
    """(test_fraction, split_seed) a run held out: its database filters', or those of the
    export of this database it read; None when neither is recorded."""
    dataset = run.dataset or {}
    filters = dataset.get("filters") if dataset.get("source") == "database" else None
    if filters is None and dataset.get("source") == "file" and dataset.get("path"):
        # The run keeps the path resolved; an export keeps it as EXPORT_ROOT spells it.
        path = Path(dataset["path"]).resolve()
        exports = DatasetExport.objects.filter(file_path__endswith=path.name).order_by("-pk")
        export = next((e for e in exports if Path(e.file_path).resolve() == path), None)
        filters = export.filters if export is not None else None
    if not filters or "test_fraction" not in filters:
        return None
    return float(filters["test_fraction"]), int(filters.get("split_seed") or 0)


def model_comparison_list(*, limit: int = 20) -> QuerySet[ModelComparison]:
    return ModelComparison.objects.select_related(
        "version_a", "version_b", "reward_version"
    ).order_by("-created_at")[:limit]


def side_by_sides_for_voter(*, voter: AbstractBaseUser) -> QuerySet[SideBySide]:
    """The side-by-sides ``voter`` may see and vote on: those of comparisons in projects they
    may rank in (one made outside a comparison counts as the default project's)."""
    projects = projects_for_trainer(trainer=voter)
    visible = Q(comparison__project__in=projects)
    if projects.filter(pk=project_default_id()).exists():
        visible |= Q(comparison__isnull=True)
    return SideBySide.objects.filter(visible)


def side_by_side_next(
    *, voter: AbstractBaseUser, rng: random.Random | None = None
) -> SideBySide | None:
    """A side-by-side this trainer may see and has not voted on, drawn at random (None when
    none is left). Pairs can go between the count and the read (a vote from another tab, a
    comparison deleted): the place drawn is then read past the end, and the last pair left is
    taken instead."""
    remaining = side_by_sides_for_voter(voter=voter).exclude(votes__voter=voter)
    count = remaining.count()
    if not count:
        return None
    offset = (rng or random.SystemRandom()).randrange(count)
    ordered = remaining.select_related("version_a", "version_b").order_by("pk")
    return ordered[offset : offset + 1].first() or ordered.last()


def side_by_side_get(*, item_id: int, voter: AbstractBaseUser) -> SideBySide | None:
    """Side-by-side ``item_id`` when ``voter`` may see it (None otherwise, as for no such id)."""
    return (
        side_by_sides_for_voter(voter=voter)
        .select_related("version_a", "version_b")
        .filter(pk=item_id)
        .first()
    )


def side_by_side_votes_count(*, voter: AbstractBaseUser) -> int:
    """The pairs ``voter`` has voted on among those they may see now: a vote on a project's
    pair they may no longer rank in is kept (and counts in the ratings), not shown to them."""
    return SideBySideVote.objects.filter(
        voter=voter, item__in=side_by_sides_for_voter(voter=voter)
    ).count()


SCORES = {
    SideBySideVote.Choice.A: 1.0,
    SideBySideVote.Choice.B: 0.0,
    SideBySideVote.Choice.TIE: 0.5,
}


def _outcomes() -> list[tuple[int, int, float]]:
    return [
        (a, b, SCORES[choice])
        for a, b, choice in SideBySideVote.objects.values_list(
            "item__version_a_id", "item__version_b_id", "choice"
        )
    ]


@dataclass(frozen=True)
class VersionRating:
    version: ModelVersion
    rating: Rating


def version_ratings() -> list[VersionRating]:
    """Bradley-Terry ratings of the versions people voted on, with 95 % intervals."""
    ratings = bradley_terry(_outcomes())
    versions = ModelVersion.objects.in_bulk([rating.key for rating in ratings])
    return [VersionRating(versions[r.key], r) for r in ratings if r.key in versions]


@dataclass(frozen=True)
class VoteTally:
    wins: int = 0
    losses: int = 0
    ties: int = 0

    @property
    def votes(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def win_rate(self) -> float | None:
        return (self.wins + 0.5 * self.ties) / self.votes if self.votes else None


def vote_tallies() -> dict[tuple[int, int], VoteTally]:
    """People's votes between every two versions, keyed (first, second) both ways round."""
    counts: Counter = Counter()
    for a, b, score in _outcomes():
        counts[a, b, score] += 1
    tallies: dict[tuple[int, int], VoteTally] = {}
    for a, b in {(a, b) for a, b, _ in counts} | {(b, a) for a, b, _ in counts}:
        wins = counts[a, b, 1.0] + counts[b, a, 0.0]
        losses = counts[a, b, 0.0] + counts[b, a, 1.0]
        ties = counts[a, b, 0.5] + counts[b, a, 0.5]
        tallies[a, b] = VoteTally(wins=wins, losses=losses, ties=ties)
    return tallies


def latest_judgements() -> dict[tuple[int, int], ModelComparison]:
    """The newest succeeded comparison of every two versions, keyed both ways round."""
    latest: dict[tuple[int, int], ModelComparison] = {}
    succeeded = ModelComparison.objects.filter(status="succeeded").select_related("reward_version")
    for comparison in succeeded.order_by("created_at"):
        latest[comparison.version_a_id, comparison.version_b_id] = comparison
        latest[comparison.version_b_id, comparison.version_a_id] = comparison
    return latest


def judgements_against_parents(
    *, versions: list[ModelVersion]
) -> dict[int, tuple[float | None, str, VoteTally | None]]:
    """Per version with a parent: (the newest comparison's judge win rate against the parent,
    the judges' names, people's votes against the parent)."""
    judgements, tallies = latest_judgements(), vote_tallies()
    verdicts = {}
    for version in versions:
        if version.parent_id is None:
            continue
        key = (version.pk, version.parent_id)
        comparison = judgements.get(key)
        rate = comparison.results.get("win_rate_a") if comparison is not None else None
        name = ""
        if rate is not None:
            rate = rate if comparison.version_a_id == version.pk else 1 - rate
            name = ", ".join(judge["name"] for judge in comparison.config.get("judges", []))
            name = name or comparison.reward_version.name
        verdicts[version.pk] = (rate, name, tallies.get(key))
    return verdicts
