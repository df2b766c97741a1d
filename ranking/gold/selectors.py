"""Reads of gold tasks: how a ranking scores against the expected order, per-trainer gold
accuracy, and where a trainer stands in a project's qualification."""

from __future__ import annotations

from collections import defaultdict

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from ranking.gold.models import Qualification
from ranking.projects.models import Project
from ranking.rank.models import Ranking, RankingTask


def gold_score(
    *, ordering: list[list[int]], gold_ordering: list[list[int]], cannot_rank: bool
) -> float:
    """The share of the gold order's strict pairs the ranking orders the same way (ties and
    "cannot rank" count as wrong): 1.0 is the expected order exactly."""
    if cannot_rank or not ordering:
        return 0.0
    ranks = {candidate: rank for rank, group in enumerate(ordering) for candidate in group}
    pairs = right = 0
    for index, better in enumerate(gold_ordering):
        for worse in gold_ordering[index + 1 :]:
            for winner in better:
                for loser in worse:
                    pairs += 1
                    if winner in ranks and loser in ranks and ranks[winner] < ranks[loser]:
                        right += 1
    return right / pairs if pairs else 0.0


def gold_rankings(
    *, project_ids: list[int] | None = None, rankings: QuerySet[Ranking] | None = None
) -> QuerySet[Ranking]:
    """The rankings of gold tasks among ``rankings`` (default: all), of ``project_ids`` only
    when named."""
    rankings = (Ranking.objects.all() if rankings is None else rankings).filter(
        task__gold_ordering__isnull=False
    )
    if project_ids:
        rankings = rankings.filter(project_id__in=project_ids)
    return rankings


def gold_ranked_count(*, trainer: AbstractBaseUser, project: Project) -> int:
    """How many of the project's gold tasks the trainer has ranked."""
    return gold_rankings(project_ids=[project.pk]).filter(ranker=trainer).count()


def gold_accuracy_by_trainer(
    *, project_ids: list[int] | None = None, rankings: QuerySet[Ranking] | None = None
) -> dict[int, tuple[float, int]]:
    """Trainer id -> (mean gold score, number of gold rankings), over the gold rankings among
    ``rankings`` (default: all; a page's filtered selection) of ``project_ids`` when named."""
    scores: dict[int, list[float]] = defaultdict(list)
    for ranker_id, ordering, cannot_rank, gold in gold_rankings(
        project_ids=project_ids, rankings=rankings
    ).values_list("ranker_id", "ordering", "cannot_rank", "task__gold_ordering"):
        scores[ranker_id].append(
            gold_score(ordering=ordering, gold_ordering=gold, cannot_rank=cannot_rank)
        )
    return {trainer: (sum(values) / len(values), len(values)) for trainer, values in scores.items()}


def gold_tasks(*, project: Project) -> QuerySet[RankingTask]:
    return RankingTask.objects.filter(project=project, gold_ordering__isnull=False)


def qualification_for(*, project: Project, trainer: AbstractBaseUser) -> Qualification | None:
    return Qualification.objects.filter(project=project, trainer=trainer).first()


def qualifications_of_trainer(*, trainer: AbstractBaseUser) -> dict[int, Qualification]:
    """Project id -> the trainer's qualification there."""
    return {q.project_id: q for q in Qualification.objects.filter(trainer=trainer)}


def qualifications_of_project(*, project: Project) -> QuerySet[Qualification]:
    return Qualification.objects.filter(project=project).select_related("trainer")
