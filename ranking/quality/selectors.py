"""What human rankings say about two model versions against each other."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Max, QuerySet
from django.db.models.functions import TruncDate
from django.shortcuts import get_object_or_404
from django.utils import timezone

from config.querysets import filter_given
from labeling.conversations.selectors import message_path
from ranking.gold.selectors import gold_accuracy_by_trainer
from ranking.quality import metrics, trust
from ranking.quality.models import TrustEstimate
from ranking.rank.models import Assignment, Candidate, Ranking, RankingTask
from sampler.registry.models import ModelVersion


@dataclass(frozen=True)
class HumanPreference:
    """Over every ranking of a task holding replies of both versions: each (reply of A, reply
    of B) pair counts once per ranking as a win of A, a win of B or a tie."""

    rankings: int
    wins_a: int
    wins_b: int
    ties: int

    @property
    def pairs(self) -> int:
        return self.wins_a + self.wins_b + self.ties

    @property
    def win_rate_a(self) -> float | None:
        """Ties count half; None without any pair."""
        return (self.wins_a + 0.5 * self.ties) / self.pairs if self.pairs else None


def human_preference_between_versions(*, version_a_id: int, version_b_id: int) -> HumanPreference:
    # Gold copies left out: each holds its original's replies and is ranked by every trainer,
    # so it would count one task's replies over and over.
    tasks = (
        RankingTask.objects.filter(gold_ordering__isnull=True)
        .filter(candidates__message__model_version_id=version_a_id)
        .filter(candidates__message__model_version_id=version_b_id)
    )
    version_of: dict[int, int] = {}
    for candidate_id, version_id in Candidate.objects.filter(
        task__in=tasks, message__model_version_id__in=[version_a_id, version_b_id]
    ).values_list("id", "message__model_version_id"):
        version_of[candidate_id] = version_id
    counts: dict[str, int] = defaultdict(int)
    for ordering in Ranking.objects.filter(task__in=tasks, cannot_rank=False).values_list(
        "ordering", flat=True
    ):
        rank = {candidate: index for index, group in enumerate(ordering) for candidate in group}
        side_a = [c for c in rank if version_of.get(c) == version_a_id]
        side_b = [c for c in rank if version_of.get(c) == version_b_id]
        if not side_a or not side_b:
            continue
        counts["rankings"] += 1
        for a in side_a:
            for b in side_b:
                if rank[a] < rank[b]:
                    counts["wins_a"] += 1
                elif rank[a] > rank[b]:
                    counts["wins_b"] += 1
                else:
                    counts["ties"] += 1
    return HumanPreference(
        rankings=counts["rankings"],
        wins_a=counts["wins_a"],
        wins_b=counts["wins_b"],
        ties=counts["ties"],
    )


@dataclass(frozen=True)
class TrainerRow:
    username: str
    quality: metrics.TrainerQuality
    # Mean agreement with gold tasks' expected order, and how many gold tasks it rests on.
    gold_accuracy: float | None = None
    gold_count: int = 0
    trust: float | None = None


@dataclass(frozen=True)
class TaskRow:
    task: RankingTask
    agreement: metrics.Agreement


@dataclass(frozen=True)
class QualityReport:
    overall: metrics.Agreement
    # The rankings and tasks agreement is measured over (gold copies left out).
    ranking_count: int
    task_count: int
    trainers: list[TrainerRow]
    lowest_tasks: list[TaskRow]
    # When the trust shown was estimated (None: not yet; a periodic task estimates it).
    trust_estimated_at: datetime | None = None


def quality_rankings(
    *,
    submitted_from: datetime | None = None,
    submitted_before: datetime | None = None,
    model_version_id: int | None = None,
    project_id: int | None = None,
) -> QuerySet[Ranking]:
    """The rankings the quality page's filters select (each filter left out when not given)."""
    return filter_given(
        Ranking.objects.all(),
        submitted_at__gte=submitted_from,
        submitted_at__lt=submitted_before,
        task__model_version_id=model_version_id,
        project_id=project_id,
    )


def ranking_quality(
    *,
    submitted_from: datetime | None = None,
    submitted_before: datetime | None = None,
    model_version_id: int | None = None,
    project_id: int | None = None,
    lowest: int = 20,
) -> QualityReport:
    """Agreement overall, per trainer and for the worst tasks, in a fixed number of queries.

    The rankings in the window are fetched in one query and aggregated in Python
    (``ranking.metrics``); skips, usernames and the lowest tasks take one query each. Gold
    copies' rankings count in each trainer's habits and gold accuracy, not in agreement.
    """
    rankings = quality_rankings(
        submitted_from=submitted_from,
        submitted_before=submitted_before,
        model_version_id=model_version_id,
        project_id=project_id,
    )
    skips = filter_given(
        Assignment.objects.filter(status=Assignment.Status.SKIPPED),
        closed_at__gte=submitted_from,
        closed_at__lt=submitted_before,
        task__model_version_id=model_version_id,
        task__project_id=project_id,
    )
    # Over the same selection as everything else on the page (dates, model version, project).
    gold = gold_accuracy_by_trainer(rankings=rankings)
    # As last estimated (a periodic task and exports keep it current; a page never estimates).
    trust_estimate = trust_estimate_latest(project_id=project_id)
    trusts = trust_stored(trust_estimate)
    records = [
        metrics.RankingRecord(
            task_id=task_id,
            ranker_id=ranker_id,
            ordering=ordering or [],
            cannot_rank=cannot_rank,
            verdict=verdict,
            flagged=any(entry.get("flags") for entry in (flags or {}).values()),
            duration_ms=duration_ms,
            order_unchanged=order_unchanged,
            gold=gold_ordering is not None,
        )
        for (
            task_id,
            ranker_id,
            ordering,
            cannot_rank,
            verdict,
            flags,
            duration_ms,
            order_unchanged,
            gold_ordering,
        ) in rankings.values_list(
            "task_id",
            "ranker_id",
            "ordering",
            "cannot_rank",
            "verdict",
            "flags",
            "duration_ms",
            "order_unchanged",
            "task__gold_ordering",
        )
    ]
    skip_counts = dict(
        skips.values("trainer_id").annotate(count=Count("id")).values_list("trainer_id", "count")
    )
    summary = metrics.quality_summary(
        records,
        skips=skip_counts,
        fast_ms=settings.RANKING_FAST_SUBMIT_SECONDS * 1000,
        outlier_share=settings.RANKING_OUTLIER_PERCENT / 100,
        outlier_min_rankings=settings.RANKING_OUTLIER_MIN_RANKINGS,
    )

    usernames = dict(
        get_user_model()
        .objects.filter(pk__in=[row.ranker_id for row in summary.trainers])
        .values_list("pk", "username")
    )
    compared = [
        (agreement.pairwise, task_id)
        for task_id, agreement in summary.tasks.items()
        if agreement.pairwise is not None
    ]
    lowest_ids = [task_id for _, task_id in sorted(compared)[:lowest]]
    tasks = RankingTask.objects.select_related("prefix_message", "model_version").in_bulk(
        lowest_ids
    )
    return QualityReport(
        overall=summary.overall,
        # The rankings agreement is measured over: those of real tasks (gold copies are scored
        # against their known order, the gold accuracy column).
        ranking_count=sum(not record.gold for record in records),
        task_count=len(summary.tasks),
        trainers=[
            TrainerRow(
                username=usernames.get(row.ranker_id, f"#{row.ranker_id}"),
                quality=row,
                gold_accuracy=gold.get(row.ranker_id, (None, 0))[0],
                gold_count=gold.get(row.ranker_id, (None, 0))[1],
                trust=trusts[row.ranker_id].trust if row.ranker_id in trusts else None,
            )
            for row in summary.trainers
        ],
        lowest_tasks=[
            TaskRow(task=tasks[task_id], agreement=summary.tasks[task_id])
            for task_id in lowest_ids
            if task_id in tasks
        ],
        trust_estimated_at=trust_estimate.estimated_at if trust_estimate else None,
    )


def model_version_choices() -> QuerySet[ModelVersion]:
    """Model versions that have ranking tasks, for the quality page's filter."""
    return ModelVersion.objects.filter(
        pk__in=RankingTask.objects.values("model_version_id")
    ).order_by("-created_at")


# ---- dashboards -------------------------------------------------------------------------------


def rankings_per_day(*, days: int = 14, now: datetime | None = None) -> list[tuple[str, int]]:
    """Rankings submitted on each of the last ``days`` days (oldest first, 0 for none)."""
    today = timezone.localdate(now or timezone.now())
    first = today - timedelta(days=days - 1)
    counts = dict(
        Ranking.objects.filter(submitted_at__date__gte=first)
        .annotate(day=TruncDate("submitted_at"))
        .values("day")
        .annotate(count=Count("id"))
        .values_list("day", "count")
    )
    return [
        (
            (first + timedelta(days=offset)).isoformat(),
            counts.get(first + timedelta(days=offset), 0),
        )
        for offset in range(days)
    ]


def rankings_per_trainer(*, since: datetime) -> list[tuple[str, int]]:
    """Rankings submitted since ``since`` by each trainer, most first."""
    rows = (
        Ranking.objects.filter(submitted_at__gte=since)
        .values("ranker__username")
        .annotate(count=Count("id"))
        .order_by("-count", "ranker__username")
    )
    return [(row["ranker__username"], row["count"]) for row in rows]


@dataclass(frozen=True)
class TrainerDashboard:
    rankings: int
    rankings_this_week: int
    quality: metrics.TrainerQuality | None
    recent: list[Ranking]


def trainer_dashboard(*, trainer, now: datetime | None = None) -> TrainerDashboard:
    """A trainer's own numbers: rankings, agreement with the others, their latest rankings."""
    now = now or timezone.now()
    mine = Ranking.objects.filter(ranker=trainer)
    report = ranking_quality(lowest=0)
    own = [row.quality for row in report.trainers if row.quality.ranker_id == trainer.pk]
    return TrainerDashboard(
        rankings=mine.count(),
        rankings_this_week=mine.filter(submitted_at__gte=now - timedelta(days=7)).count(),
        quality=own[0] if own else None,
        recent=list(mine.select_related("task__prefix_message").order_by("-submitted_at")[:5]),
    )


@dataclass(frozen=True)
class TaskDetail:
    task: RankingTask
    prefix: list[dict[str, str]]
    candidates: list[dict]
    rankings: list[Ranking]
    agreement: metrics.Agreement


def task_detail(*, task_id: int) -> TaskDetail:
    """One task as the quality page's read-only view shows it: the conversation, its replies
    (by candidate id, in canonical order) and every ranking with its agreement."""
    task = get_object_or_404(
        RankingTask.objects.select_related("prefix_message", "model_version"), pk=task_id
    )
    rankings = list(task.rankings.select_related("ranker").order_by("submitted_at"))
    return TaskDetail(
        task=task,
        prefix=[
            {"role": message.role, "content": message.content}
            for message in message_path(message=task.prefix_message)
        ],
        candidates=list(
            task.candidates.order_by("position").values(
                "id", "position", "is_source", "message__content"
            )
        ),
        rankings=rankings,
        agreement=metrics.task_agreement([r.ordering for r in rankings if not r.cannot_rank]),
    )


# ---- trust and Krippendorff's alpha -----------------------------------------------------------


def _gold_pairs(gold_ordering: list[list[int]], task_id: int) -> dict[tuple[int, int, int], bool]:
    pairs = {}
    for judgement in trust.judgements_of(task_id, 0, gold_ordering):
        low, high = sorted((judgement.first, judgement.second))
        pairs[(task_id, low, high)] = judgement.first == low
    return pairs


def _trust_rankings(project_ids: tuple[int, ...] | list[int] = ()) -> QuerySet[Ranking]:
    rankings = Ranking.objects.filter(cannot_rank=False)
    if project_ids:
        rankings = rankings.filter(project_id__in=project_ids)
    return rankings


def trainer_trust(*, project_ids: tuple[int, ...] | list[int] = ()) -> dict[int, trust.Trust]:
    """Trainer id -> trust (``ranking.quality.trust``) estimated now from every ranking of those
    projects (all when none is named), gold tasks' known orders included."""
    rankings = _trust_rankings(project_ids)
    votes = trust.Votes()
    gold: dict[tuple[int, int, int], bool] = {}
    for task_id, ranker_id, ordering, gold_ordering in rankings.values_list(
        "task_id", "ranker_id", "ordering", "task__gold_ordering"
    ).iterator(chunk_size=2000):
        votes.add_ranking(task_id, ranker_id, ordering or [])
        if gold_ordering:
            gold.update(_gold_pairs(gold_ordering, task_id))
    return trust.trust_estimate(votes, gold=gold)


def trust_scope_state(*, project_id: int | None) -> tuple[int, int | None]:
    """(how many rankings, the newest one's id) that a trust estimate of the scope counts."""
    state = _trust_rankings([project_id] if project_id is not None else []).aggregate(
        count=Count("pk"), last=Max("pk")
    )
    return state["count"], state["last"]


def trust_estimate_latest(*, project_id: int | None) -> TrustEstimate | None:
    """The newest stored estimate of one project (``None``: of every project together)."""
    return (
        TrustEstimate.objects.filter(project_id=project_id).order_by("-estimated_at", "-pk").first()
    )


def trust_estimate_is_current(estimate: TrustEstimate) -> bool:
    """Whether the scope still has exactly the rankings the estimate counted."""
    return trust_scope_state(project_id=estimate.project_id) == (
        estimate.rankings,
        estimate.last_ranking_id,
    )


def trust_stored(estimate: TrustEstimate | None) -> dict[int, trust.Trust]:
    if estimate is None:
        return {}
    return {
        trainer_id: trust.Trust(value, judgements, gold_judgements)
        for trainer_id, value, judgements, gold_judgements in estimate.trainers.values_list(
            "trainer_id", "trust", "judgements", "gold_judgements"
        )
    }


def trust_exact(*, project_ids: tuple[int, ...] | list[int] = ()) -> dict[int, trust.Trust]:
    """Trust over exactly the scope's rankings now: the stored estimate of one project (or of
    all) when it is current, else estimated here (nothing is written: a GET may call it)."""
    if len(project_ids) <= 1:
        estimate = trust_estimate_latest(project_id=project_ids[0] if project_ids else None)
        if estimate is not None and trust_estimate_is_current(estimate):
            return trust_stored(estimate)
    return trainer_trust(project_ids=project_ids)


def trust_of_trainer(*, trainer_id: int, project_id: int) -> trust.Trust | None:
    """One trainer's trust in one project as last estimated (what the trainer sees of it)."""
    return trust_stored(trust_estimate_latest(project_id=project_id)).get(trainer_id)


def krippendorff_alpha_by_project(
    *, rankings: QuerySet[Ranking] | None = None
) -> dict[int, float | None]:
    """Project id -> Krippendorff's alpha over its tasks' pairwise judgements among
    ``rankings`` (default: all; the quality page's selection), gold copies left out: they are
    measured against the known order, not between trainers."""
    orderings: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for project_id, task_id, ordering in (
        (Ranking.objects.all() if rankings is None else rankings)
        .filter(cannot_rank=False, task__gold_ordering__isnull=True)
        .values_list("project_id", "task_id", "ordering")
        .iterator(chunk_size=2000)
    ):
        orderings[project_id][task_id].append(ordering or [])
    return {
        project_id: trust.krippendorff_alpha_pairwise(tasks.values())
        for project_id, tasks in orderings.items()
    }
