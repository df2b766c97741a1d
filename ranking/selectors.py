from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from labeling.selectors import message_path
from ranking import metrics
from ranking.models import Assignment, DatasetExport, Ranking, RankingTask
from sampler.models import ModelVersion
from sampler.moderation import moderation_latest_by_sample


def ranking_queue_summary() -> dict[str, int]:
    counts = RankingTask.objects.aggregate(
        ready=Count("id", filter=Q(status=RankingTask.Status.READY)),
        preparing=Count("id", filter=Q(status=RankingTask.Status.PREPARING)),
        complete=Count("id", filter=Q(status=RankingTask.Status.COMPLETE)),
    )
    return {key: value or 0 for key, value in counts.items()}


def dataset_export_list() -> QuerySet[DatasetExport]:
    return DatasetExport.objects.select_related("created_by").order_by("-created_at")


# ---- assignments as a trainer sees them -------------------------------------------------------


def assignment_get_for_trainer(*, assignment_id: int, trainer: AbstractBaseUser) -> Assignment:
    """One of the trainer's own assignments; 404 for anyone else's."""
    return get_object_or_404(
        Assignment.objects.select_related("task"), pk=assignment_id, trainer=trainer
    )


@dataclass(frozen=True)
class AssignmentScreen:
    """What a trainer needs to rank: the conversation so far and the replies as shown."""

    assignment: Assignment
    prefix: list[dict[str, str]]
    candidates: list[dict[str, object]]


def assignment_screen(*, assignment: Assignment) -> AssignmentScreen:
    """The prefix (root to the user turn) and the candidates in presentation order, each with
    its message and newest content filter result (4 queries)."""
    task = assignment.task
    prefix = [
        {"role": message.role, "content": message.content}
        for message in message_path(message=task.prefix_message)
    ]
    rows = {
        row["id"]: row
        for row in task.candidates.values(
            "id", "message_id", "message__content", "message__sample_id"
        )
    }
    # The content filter's verdict is shown on each reply, so a trainer is warned before reading.
    moderation = moderation_latest_by_sample(
        sample_ids=[row["message__sample_id"] for row in rows.values() if row["message__sample_id"]]
    )
    candidates = [
        {
            "id": candidate_id,
            "text": rows[candidate_id]["message__content"],
            "message_id": rows[candidate_id]["message_id"],
            "moderation": moderation.get(rows[candidate_id]["message__sample_id"]),
        }
        for candidate_id in assignment.presentation_order
        if candidate_id in rows
    ]
    return AssignmentScreen(assignment=assignment, prefix=prefix, candidates=candidates)


# ---- quality (agreement between trainers) -----------------------------------------------------


@dataclass(frozen=True)
class TrainerRow:
    username: str
    quality: metrics.TrainerQuality


@dataclass(frozen=True)
class TaskRow:
    task: RankingTask
    agreement: metrics.Agreement


@dataclass(frozen=True)
class QualityReport:
    overall: metrics.Agreement
    ranking_count: int
    task_count: int
    trainers: list[TrainerRow]
    lowest_tasks: list[TaskRow]


def ranking_quality(
    *,
    submitted_from: datetime | None = None,
    submitted_before: datetime | None = None,
    model_version_id: int | None = None,
    lowest: int = 20,
) -> QualityReport:
    """Agreement overall, per trainer and for the worst tasks, in a fixed number of queries.

    The rankings in the window are fetched in one query and aggregated in Python
    (``ranking.metrics``); skips, usernames and the lowest tasks take one query each.
    """
    rankings = Ranking.objects.all()
    skips = Assignment.objects.filter(status=Assignment.Status.SKIPPED)
    if submitted_from is not None:
        rankings = rankings.filter(submitted_at__gte=submitted_from)
        skips = skips.filter(closed_at__gte=submitted_from)
    if submitted_before is not None:
        rankings = rankings.filter(submitted_at__lt=submitted_before)
        skips = skips.filter(closed_at__lt=submitted_before)
    if model_version_id is not None:
        rankings = rankings.filter(task__model_version_id=model_version_id)
        skips = skips.filter(task__model_version_id=model_version_id)
    records = [
        metrics.RankingRecord(
            task_id=task_id,
            ranker_id=ranker_id,
            ordering=ordering or [],
            cannot_rank=cannot_rank,
            flagged=any(entry.get("flags") for entry in (flags or {}).values()),
            duration_ms=duration_ms,
        )
        for task_id, ranker_id, ordering, cannot_rank, flags, duration_ms in rankings.values_list(
            "task_id", "ranker_id", "ordering", "cannot_rank", "flags", "duration_ms"
        )
    ]
    skip_counts = dict(
        skips.values("trainer_id").annotate(count=Count("id")).values_list("trainer_id", "count")
    )
    summary = metrics.quality_summary(records, skips=skip_counts)

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
        ranking_count=len(records),
        task_count=len(summary.tasks),
        trainers=[
            TrainerRow(username=usernames.get(row.ranker_id, f"#{row.ranker_id}"), quality=row)
            for row in summary.trainers
        ],
        lowest_tasks=[
            TaskRow(task=tasks[task_id], agreement=summary.tasks[task_id])
            for task_id in lowest_ids
            if task_id in tasks
        ],
    )


def model_version_choices() -> QuerySet[ModelVersion]:
    """Model versions that have ranking tasks, for the quality page's filter."""
    return ModelVersion.objects.filter(
        pk__in=RankingTask.objects.values("model_version_id")
    ).order_by("-created_at")
