from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, Q
from django.shortcuts import get_object_or_404
from django.utils import timezone

from config.celery import Queue
from labeling.conversations.selectors import message_path, ranking_source_candidates
from ranking.rank.models import Assignment, Ranking, RankingTask
from sampler.moderation.selectors import moderation_latest_by_sample
from sampler.workers.selectors import workers_live_by_queue


@dataclass(frozen=True)
class WaitingState:
    """Why a trainer has no task right now, with the numbers to say so."""

    # "workers_offline": tasks wait for sampling but no worker consumes the generation queue;
    # "refilling": tasks are being prepared (or the pool is about to be refilled);
    # "ranked_everything": open tasks exist, but none this trainer may rank (their own
    # conversations, or ranked or skipped already); "no_conversations": no finished
    # conversation has a model-written reply left to build a task from.
    reason: str
    ready: int
    preparing: int
    complete: int
    open_for_others: int
    pool_target: int

    @property
    def progress_percent(self) -> int:
        """Open tasks (ready or being prepared) against the pool size."""
        if not self.pool_target:
            return 0
        return min(100, round(100 * (self.ready + self.preparing) / self.pool_target))


def ranking_waiting_state(*, trainer: AbstractBaseUser) -> WaitingState:
    """Why nothing is offered to ``trainer`` (a handful of counting queries)."""
    summary = ranking_queue_summary()
    open_for_others = (
        RankingTask.objects.filter(
            status=RankingTask.Status.READY,
            overlap_required__gt=F("rankings_count") + F("leased_count"),
        )
        .filter(Q(source_owner=trainer) | Q(assignments__trainer=trainer))
        .distinct()
        .count()
    )
    if summary["preparing"]:
        offline = (
            not settings.CELERY_TASK_ALWAYS_EAGER
            and workers_live_by_queue().get(Queue.GENERATION.value, 0) == 0
        )
        reason = "workers_offline" if offline else "refilling"
    elif open_for_others:
        reason = "ranked_everything"
    elif not ranking_source_candidates(origins=settings.RANKING_SOURCE_ORIGINS).exists():
        reason = "no_conversations"
    else:
        reason = "refilling"
    return WaitingState(
        reason=reason,
        ready=summary["ready"],
        preparing=summary["preparing"],
        complete=summary["complete"],
        open_for_others=open_for_others,
        pool_target=settings.RANKING_POOL_SIZE,
    )


def ranking_queue_summary() -> dict[str, int]:
    counts = RankingTask.objects.aggregate(
        ready=Count("id", filter=Q(status=RankingTask.Status.READY)),
        preparing=Count("id", filter=Q(status=RankingTask.Status.PREPARING)),
        complete=Count("id", filter=Q(status=RankingTask.Status.COMPLETE)),
    )
    return {key: value or 0 for key, value in counts.items()}


# ---- assignments as a trainer sees them -------------------------------------------------------


def assignment_current(*, trainer: AbstractBaseUser) -> Assignment | None:
    """The trainer's lease still running, if any (read only: claiming is a POST)."""
    return (
        Assignment.objects.select_related("task__project")
        .filter(trainer=trainer, status=Assignment.Status.LEASED, expires_at__gte=timezone.now())
        .order_by("leased_at")
        .first()
    )


def assignment_get_for_trainer(*, assignment_id: int, trainer: AbstractBaseUser) -> Assignment:
    """One of the trainer's own assignments; 404 for anyone else's."""
    return get_object_or_404(
        Assignment.objects.select_related("task__project"), pk=assignment_id, trainer=trainer
    )


def ranking_get_for_trainer(*, ranking_id: int, trainer: AbstractBaseUser) -> Ranking:
    """One of the trainer's own rankings; 404 for anyone else's."""
    return get_object_or_404(Ranking, pk=ranking_id, ranker=trainer)


def ranking_as_form_data(*, ranking: Ranking, presentation_order: list[int]) -> dict[str, object]:
    """A stored ranking as the ranking form posts it (to show a ranking taken back)."""
    data: dict[str, object] = {
        "order": [str(cid) for cid in presentation_order],
        "rationale": ranking.rationale,
        "verdict": "" if ranking.verdict == Ranking.Verdict.RANKED else ranking.verdict,
    }
    if ranking.verdict == Ranking.Verdict.RANKED:
        for rank, group in enumerate(ranking.ordering, start=1):
            for candidate_id in group:
                data[f"rank_{candidate_id}"] = str(rank)
    for candidate_id, entry in (ranking.flags or {}).items():
        data[f"flag_{candidate_id}"] = list(entry.get("flags", []))
        data[f"flag_note_{candidate_id}"] = entry.get("note", "")
    if ranking.first_placement_ms is not None:
        data["first_placement_ms"] = str(ranking.first_placement_ms)
    return data


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
