"""Writes of gold tasks and qualification: making a gold copy of an agreed task (or one with a
written order), and deciding a trainer's qualification once they ranked enough gold."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ranking.gold.models import Qualification
from ranking.gold.selectors import gold_rankings, gold_score
from ranking.projects.models import Project
from ranking.rank.models import Candidate, Ranking, RankingTask

# A gold task is offered to every trainer who may take it; the overlap only bounds the count.
GOLD_OVERLAP = 32000


def _agreed_ordering(task: RankingTask) -> list[list[int]]:
    rankings = list(task.rankings.order_by("pk").values_list("ordering", "verdict", "cannot_rank"))
    if not rankings:
        raise ValidationError("Nobody ranked this task yet: write the expected order instead.")
    # "All bad" and "cannot rank" are answers without an order: a ranker who gave one did not
    # agree with an order the others gave, so there is no order all of them agreed on.
    unordered = sum(
        1
        for _, verdict, cannot_rank in rankings
        if cannot_rank or verdict in {Ranking.Verdict.ALL_BAD, Ranking.Verdict.CANNOT_RANK}
    )
    if unordered:
        raise ValidationError(
            f"{unordered} of the {len(rankings)} rankings of this task give no order (all "
            "bad, or cannot rank), so its rankers did not agree on one: write the expected "
            "order instead."
        )
    orderings = [ordering for ordering, _, _ in rankings]
    normalised = {tuple(tuple(sorted(group)) for group in ordering) for ordering in orderings}
    if len(normalised) != 1:
        raise ValidationError(
            f"The {len(orderings)} rankings of this task do not agree: write the expected "
            "order instead."
        )
    agreed = [list(group) for group in next(iter(normalised))]
    if len(agreed) < 2:
        # "All equally good": no pair to get right, so no answer could ever pass it.
        raise ValidationError(
            "The rankings of this task agree that every reply is as good as the others; a gold "
            "order needs at least two ranks: write the expected order instead."
        )
    return agreed


def _checked_ordering(ordering: object, candidate_ids: set[int]) -> list[list[int]]:
    if not isinstance(ordering, list) or not all(isinstance(group, list) for group in ordering):
        raise ValidationError({"ordering": "The order is a list of tie groups of reply ids."})
    seen = [candidate for group in ordering for candidate in group]
    if any(isinstance(c, bool) or not isinstance(c, int) for c in seen) or any(
        not group for group in ordering
    ):
        raise ValidationError({"ordering": "Every tie group holds reply ids."})
    if len(seen) != len(set(seen)) or set(seen) != candidate_ids:
        raise ValidationError({"ordering": "Name every reply of the task exactly once."})
    if len(ordering) < 2:
        raise ValidationError({"ordering": "A gold order needs at least two ranks."})
    return ordering


@transaction.atomic
def gold_task_create(*, task: RankingTask, ordering: list[list[int]] | None = None) -> RankingTask:
    """A gold copy of ``task``: the same prompt and replies, offered only to trainers who did
    not rank the original, with the expected ``ordering`` (the task's candidate ids) or, when
    none is given, the order all its rankers agreed on."""
    task = RankingTask.objects.select_for_update().get(pk=task.pk)
    if task.gold_ordering is not None:
        raise ValidationError("This task is already gold.")
    existing = RankingTask.objects.filter(gold_of=task).values_list("pk", flat=True).first()
    if existing is not None:
        # Two copies would be one question asked twice, scored twice.
        raise ValidationError(f"Task {task.pk} has a gold copy already: task {existing}.")
    if task.status not in {RankingTask.Status.READY, RankingTask.Status.COMPLETE}:
        raise ValidationError("Only a task with its replies can become gold.")
    originals = list(task.candidates.order_by("position"))
    expected = (
        _agreed_ordering(task)
        if ordering is None
        else _checked_ordering(ordering, {c.pk for c in originals})
    )
    copy = RankingTask.objects.create(
        project_id=task.project_id,
        source_message_id=task.source_message_id,
        prefix_message_id=task.prefix_message_id,
        generation_job_id=task.generation_job_id,
        model_version_id=task.model_version_id,
        source_owner_id=task.source_owner_id,
        status=RankingTask.Status.READY,
        ready_at=timezone.now(),
        alternatives_requested=task.alternatives_requested,
        overlap_required=GOLD_OVERLAP,
        gold_of=task,
        holds_source=False,
    )
    copies = Candidate.objects.bulk_create(
        Candidate(task=copy, message_id=c.message_id, is_source=c.is_source, position=c.position)
        for c in originals
    )
    new_id = {old.pk: new.pk for old, new in zip(originals, copies, strict=True)}
    copy.gold_ordering = [[new_id[c] for c in group] for group in expected]
    copy.save(update_fields=["gold_ordering"])
    return copy


@transaction.atomic
def qualification_update(*, project: Project, trainer: AbstractBaseUser) -> Qualification | None:
    """After a gold ranking in a project that requires qualification: count the trainer's gold
    rankings there and, at N, decide against the threshold (once; the result stays, unless a
    gold ranking it counted is taken back: ``qualification_ranking_undone``)."""
    if not project.qualification_required:
        return None
    qualification, _ = Qualification.objects.select_for_update().get_or_create(
        project=project, trainer=trainer
    )
    if qualification.status != Qualification.Status.PENDING:
        return qualification
    rows = list(
        gold_rankings(project_ids=[project.pk])
        .filter(ranker=trainer)
        .order_by("submitted_at", "pk")
        .values_list("ordering", "cannot_rank", "task__gold_ordering")[
            : project.qualification_tasks
        ]
    )
    scores = [gold_score(ordering=o, gold_ordering=g, cannot_rank=c) for o, c, g in rows]
    qualification.gold_ranked = len(scores)
    qualification.accuracy = sum(scores) / len(scores) if scores else None
    if len(scores) >= project.qualification_tasks:
        passed = qualification.accuracy >= project.qualification_threshold
        qualification.status = (
            Qualification.Status.PASSED if passed else Qualification.Status.FAILED
        )
        qualification.reason = (
            f"Agreement with the expected order {qualification.accuracy:.0%} on "
            f"{len(scores)} gold tasks is {'at or above' if passed else 'below'} the "
            f"threshold of {project.qualification_threshold:.0%}."
        )
        qualification.decided_at = timezone.now()
    qualification.save()
    return qualification


@transaction.atomic
def qualification_ranking_undone(
    *, project: Project, trainer: AbstractBaseUser, ranking_id: int, submitted_at: datetime
) -> Qualification | None:
    """After the trainer's gold ranking ``ranking_id`` (submitted at ``submitted_at``) in
    ``project`` was taken back and deleted: when it was one of the first N that decided the
    qualification, the qualification is pending again; either way it is counted anew from the
    gold rankings left, so the next gold ranking decides."""
    qualification = (
        Qualification.objects.select_for_update().filter(project=project, trainer=trainer).first()
    )
    if qualification is None or not project.qualification_required:
        # Not required (any more): a decision already made stands, as nothing would remake it.
        return qualification
    earlier = (
        gold_rankings(project_ids=[project.pk])
        .filter(ranker=trainer)
        .filter(Q(submitted_at__lt=submitted_at) | Q(submitted_at=submitted_at, pk__lt=ranking_id))
        .count()
    )
    if earlier < project.qualification_tasks:
        qualification.status = Qualification.Status.PENDING
        qualification.reason = ""
        qualification.decided_at = None
        qualification.save(update_fields=["status", "reason", "decided_at"])
    return qualification_update(project=project, trainer=trainer)
