from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from config.celery import Queue
from labeling.conversations.selectors import message_path, ranking_source_candidates
from ranking.gold.models import Qualification
from ranking.gold.selectors import gold_ranked_count, qualifications_of_trainer
from ranking.projects.models import Project
from ranking.projects.selectors import project_pool_size, projects_active, projects_for_trainer
from ranking.rank.models import (
    Assignment,
    Candidate,
    Ranking,
    RankingTask,
    UndoRemoval,
    source_finished,
)
from sampler.moderation.filters import content_filter_configured
from sampler.moderation.models import ModerationResult
from sampler.moderation.selectors import moderation_shown_of_texts
from sampler.workers.selectors import workers_live_by_queue


def tasks_open_to(*, trainer: AbstractBaseUser) -> QuerySet[RankingTask]:
    """Ready tasks that still need a ranker and that ``trainer`` may take: of finished
    conversations (``source_finished``), not held back, not from their own conversation, never
    assigned to them before; gold copies only of originals they were never assigned (ranked or
    skipped: either way they saw it), and originals only when they did not rank its gold copy
    (they have seen its answer). Oldest first."""
    open_tasks = (
        RankingTask.objects.filter(
            source_finished(),
            status=RankingTask.Status.READY,
            overlap_required__gt=F("rankings_count") + F("leased_count"),
            held_back=False,
        )
        .exclude(source_owner=trainer)
        .exclude(assignments__trainer=trainer)
        .order_by("created_at", "id")
    )
    return open_tasks.exclude(gold_of__assignments__trainer=trainer).exclude(
        gold_copies__rankings__ranker=trainer
    )


def project_ids_with_regular_tasks(
    *, projects: Iterable[Project], qualifications: dict[int, Qualification]
) -> list[int]:
    """The projects of ``projects`` whose real tasks (not gold copies) a trainer with
    ``qualifications`` (project id -> theirs) is given: those that require no qualification,
    and those whose qualification they passed."""
    passed = {
        project_id
        for project_id, qualification in qualifications.items()
        if qualification is not None and qualification.status == Qualification.Status.PASSED
    }
    return [each.pk for each in projects if not each.qualification_required or each.pk in passed]


def ranking_summary_for_trainer(*, trainer: AbstractBaseUser) -> dict[str, int]:
    """The Rank card's numbers for ``trainer``, counted as a claim gives tasks: ``ready``, the
    tasks a claim could give them now (``tasks_open_to``, in the active projects open to them
    whose qualification, where one is required, they passed; gold copies left out: one stands in
    for a task, it is not more work), and ``preparing``, the tasks being prepared for those
    projects' pools that are not from their own conversations."""
    regular_ids = project_ids_with_regular_tasks(
        projects=projects_for_trainer(trainer=trainer),
        qualifications=qualifications_of_trainer(trainer=trainer),
    )
    ready = (
        tasks_open_to(trainer=trainer)
        .filter(gold_ordering__isnull=True, project_id__in=regular_ids)
        .count()
    )
    preparing = (
        ranking_pool_open_tasks(projects=regular_ids)
        .filter(status=RankingTask.Status.PREPARING)
        .exclude(source_owner=trainer)
        .count()
    )
    return {"ready": ready, "preparing": preparing}


@dataclass(frozen=True)
class QualificationWait:
    """A project the trainer may not rank real tasks in yet, or at all."""

    project: Project
    # "pending": gold tasks to rank first; "failed": decided, below the threshold.
    status: str
    reason: str
    gold_ranked: int
    # Gold tasks of the project the trainer may take now (0: only an admin can help).
    gold_left: int


def qualification_waits(
    *, trainer: AbstractBaseUser, project: Project | None = None
) -> tuple[list[QualificationWait], bool]:
    """The projects in scope (``project``, or all the trainer's) whose qualification the
    trainer has not passed, and whether that is every one of them (no real task anywhere)."""
    projects = list(projects_for_trainer(trainer=trainer))
    if project is not None:
        projects = [each for each in projects if each.pk == project.pk]
    qualifications = qualifications_of_trainer(trainer=trainer)
    waits = []
    for each in projects:
        qualification = qualifications.get(each.pk)
        status = qualification.status if qualification else Qualification.Status.PENDING
        if not each.qualification_required or status == Qualification.Status.PASSED:
            continue
        gold_left = (
            tasks_open_to(trainer=trainer).filter(project=each, gold_ordering__isnull=False).count()
        )
        waits.append(
            QualificationWait(
                project=each,
                status=status,
                reason=qualification.reason if qualification else "",
                gold_ranked=gold_ranked_count(trainer=trainer, project=each),
                gold_left=gold_left,
            )
        )
    return waits, bool(projects) and len(waits) == len(projects)


# Why no task is prepared while the content filter cannot run (its reason follows), as the
# pool fill records it on each project (``Project.pool_error``, for admins).
FILTER_DOWN_HOLDS_FILL = (
    "The content filter cannot run, and CONTENT_FILTER_BLOCK_RANKING keeps replies it has not "
    "judged out of ranking tasks, so none is prepared until it runs again: "
)
# Why no new task comes, as a trainer is told it (the Rank page, the claim API's
# ``Tandem-Waiting-Detail``): plain words, none of an admin's details, one line of ASCII.
POOL_HELD_FOR_FILTER = (
    "The content filter that checks the model's replies is not running, and replies it has "
    "not checked are kept out of ranking: new tasks are prepared as soon as it runs again."
)
POOL_FILL_FAILED = (
    "The last try failed. Admins see why on the project's page; tell one if this lasts."
)

# Every reason ``ranking_waiting_state`` gives, in the order it checks them.
WAITING_REASONS = (
    "qualification",
    "workers_offline",
    "refilling",
    "pool_failed",
    "ranked_everything",
    "no_conversations",
)


@dataclass(frozen=True)
class WaitingState:
    """Why a trainer has no task right now, with the numbers to say so."""

    # "workers_offline": tasks wait for sampling but no worker consumes the generation queue;
    # "refilling": tasks are being prepared (or the pool is about to be refilled);
    # "ranked_everything": open tasks exist, but none this trainer may rank (their own
    # conversations, or ranked or skipped already); "no_conversations": no finished
    # conversation has a model-written reply left to build a task from; "qualification":
    # every project in scope requires a qualification the trainer has not passed
    # (``qualification`` lists those that do, whatever the reason); "pool_failed": nothing
    # is being prepared and the last pool fill of a project in scope failed (``pool_failed``
    # names them; why, ``Project.pool_error``, is for admins, on the project's page, and
    # ``detail`` says it in a trainer's words).
    reason: str
    ready: int
    preparing: int
    complete: int
    open_for_others: int
    pool_target: int
    qualification: tuple[QualificationWait, ...] = ()
    pool_failed: tuple[str, ...] = ()
    detail: str = ""

    @property
    def progress_percent(self) -> int:
        """Open tasks (ready or being prepared) against the pool size."""
        if not self.pool_target:
            return 0
        return min(100, round(100 * (self.ready + self.preparing) / self.pool_target))


def ranking_pool_wanted(*, project: Project, now=None) -> int:
    """How many open tasks the project's pool keeps: its pool size, or more when more trainers
    are ranking: ``RANKING_TASKS_PER_ACTIVE_TRAINER`` for each trainer who took a task of it in
    the last ``RANKING_DEMAND_WINDOW_SECONDS``, so a busy hour does not drain the pool between
    two fills."""
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.RANKING_DEMAND_WINDOW_SECONDS)
    active = (
        Assignment.objects.filter(task__project=project, leased_at__gte=since)
        .values("trainer_id")
        .distinct()
        .count()
    )
    return max(project_pool_size(project), active * settings.RANKING_TASKS_PER_ACTIVE_TRAINER)


def ranking_pool_open_wanted(*, project: Project, wanted: int) -> int:
    """Open tasks the pool fill makes for ``wanted`` to offer: ``candidate_factor`` times as
    many where the project selects by uncertainty (those not offered are held back)."""
    if project.selection == Project.Selection.UNCERTAINTY:
        return wanted * project.candidate_factor
    return wanted


def ranking_pool_target(*, project: Project | None = None) -> int:
    """Open tasks the pool fill keeps now (``ranking_pool_fill``): ``project``'s, or every
    active project's together, each with its own pool size and demand."""
    projects = [project] if project is not None else projects_active()
    return sum(
        ranking_pool_open_wanted(project=each, wanted=ranking_pool_wanted(project=each))
        for each in projects
    )


def ranking_pool_open_tasks(
    *, projects: Iterable[Project | int] | QuerySet[Project]
) -> QuerySet[RankingTask]:
    """The tasks the pool fill counts toward ``projects``' pools (projects, or their ids): being
    prepared, or ready with rankings still wanted; never gold copies (offered beside the pool,
    not in it), nor tasks of a conversation reopened or discarded (not offered meanwhile:
    ``source_finished``)."""
    return RankingTask.objects.filter(
        Q(status=RankingTask.Status.PREPARING)
        | Q(status=RankingTask.Status.READY, rankings_count__lt=F("overlap_required")),
        source_finished(),
        project__in=projects,
        gold_ordering__isnull=True,
    )


def ranking_pool_count() -> dict[str, int]:
    """The pools' tasks by status, ready and being prepared (sampling alternatives), counted as
    the fill counts them: every active project's (``ranking_pool_target`` is what it keeps)."""
    open_statuses = (RankingTask.Status.READY, RankingTask.Status.PREPARING)
    counts = {status.value: 0 for status in open_statuses}
    rows = (
        ranking_pool_open_tasks(projects=projects_active())
        .order_by()
        .values("status")
        .annotate(rows=Count("pk"))
    )
    for row in rows:
        counts[row["status"]] = row["rows"]
    return counts


def ranking_waiting_state(
    *, trainer: AbstractBaseUser, project: Project | None = None
) -> WaitingState:
    """Why nothing is offered to ``trainer`` in ``project`` (None: any of theirs), in a
    handful of counting queries."""
    # A paused project's tasks, or another group's, are no work on the way for the trainer.
    projects = [project] if project is not None else projects_for_trainer(trainer=trainer)
    scope = RankingTask.objects.filter(source_finished(), project__in=projects)
    summary = ranking_queue_summary(tasks=scope)
    waits, all_waiting = qualification_waits(trainer=trainer, project=project)
    open_for_others = (
        scope.filter(
            status=RankingTask.Status.READY,
            overlap_required__gt=F("rankings_count") + F("leased_count"),
        )
        .filter(Q(source_owner=trainer) | Q(assignments__trainer=trainer))
        .distinct()
        .count()
    )
    pool_failed: tuple[str, ...] = ()
    detail = ""
    if all_waiting:
        reason = "qualification"
    elif summary["preparing"]:
        offline = (
            not settings.CELERY_TASK_ALWAYS_EAGER
            and workers_live_by_queue().get(Queue.GENERATION.value, 0) == 0
        )
        reason = "workers_offline" if offline else "refilling"
    elif failing := list(
        (Project.objects.filter(pk=project.pk) if project is not None else projects)
        .exclude(pool_error="")
        .order_by("name")
        .values_list("name", "pool_error")
    ):
        # Nothing on the way, and the fills that would make it fail: no new task comes until
        # an admin sees to it (or the content filter runs again), whatever else the trainer
        # could be told.
        reason = "pool_failed"
        pool_failed = tuple(name for name, _ in failing)
        held = all(error.startswith(FILTER_DOWN_HOLDS_FILL) for _, error in failing)
        detail = POOL_HELD_FOR_FILTER if held else POOL_FILL_FAILED
    elif open_for_others:
        reason = "ranked_everything"
    elif (
        not ranking_source_candidates(origins=settings.RANKING_SOURCE_ORIGINS)
        .filter(conversation__project__in=projects)
        .exists()
    ):
        reason = "no_conversations"
    else:
        reason = "refilling"
    return WaitingState(
        reason=reason,
        ready=summary["ready"],
        preparing=summary["preparing"],
        complete=summary["complete"],
        open_for_others=open_for_others,
        pool_target=ranking_pool_target(project=project),
        qualification=tuple(waits),
        pool_failed=pool_failed,
        detail=detail,
    )


def ranking_queue_summary(*, tasks: QuerySet[RankingTask]) -> dict[str, int]:
    """How many of ``tasks`` are in each status (every status, 0 included), in one query."""
    counts = tasks.aggregate(
        **{status: Count("id", filter=Q(status=status)) for status in RankingTask.Status.values}
    )
    return {key: value or 0 for key, value in counts.items()}


# ---- assignments as a trainer sees them -------------------------------------------------------


def assignment_current(
    *, trainer: AbstractBaseUser, project: Project | None = None
) -> Assignment | None:
    """The trainer's lease still running, if any (``project``: in that project), in a project
    they may still rank in, on a task of a finished conversation (a paused project's lease, or
    one of a conversation reopened or discarded since, is given back at their next claim); read
    only: claiming is a POST."""
    leases = Assignment.objects.select_related("task__project").filter(
        source_finished("task__"),
        trainer=trainer,
        status=Assignment.Status.LEASED,
        expires_at__gte=timezone.now(),
        task__project__in=projects_for_trainer(trainer=trainer),
    )
    if project is not None:
        leases = leases.filter(task__project=project)
    return leases.order_by("leased_at").first()


# What a trainer is told of a row of theirs that taking a ranking back deleted.
GIVEN_BACK = (
    "This task is no longer yours: it was given back when you took back your previous "
    "ranking, and nothing was stored. Take the next task."
)
TAKEN_BACK = "You already took this ranking back; there is nothing left to undo."


class RemovedByUndo(Http404):
    """The id is of the trainer's own row that taking a ranking back deleted (``UndoRemoval``):
    its claim is gone (a 409 that says so where the Rank page and API submit, skip or undo), not
    an id that never was theirs. Anywhere else (the pages that went with the lease, such as a
    reply's feedback) it is the 404 it was before: a Http404 nobody there catches."""


def assignment_removed_by_undo(*, assignment_id: int, trainer: AbstractBaseUser) -> bool:
    """Whether ``assignment_id`` was the trainer's lease that an undo gave back."""
    return UndoRemoval.objects.filter(assignment_id=assignment_id, trainer=trainer).exists()


def ranking_removed_by_undo(*, ranking_id: int, trainer: AbstractBaseUser) -> bool:
    """Whether ``ranking_id`` was the trainer's ranking, taken back."""
    return UndoRemoval.objects.filter(ranking_id=ranking_id, trainer=trainer).exists()


def assignment_get_for_trainer(*, assignment_id: int, trainer: AbstractBaseUser) -> Assignment:
    """One of the trainer's own assignments; RemovedByUndo for one of theirs that an undo gave
    back, a 404 for any other id (anyone else's, or none)."""
    try:
        return get_object_or_404(
            Assignment.objects.select_related("task__project"), pk=assignment_id, trainer=trainer
        )
    except Http404:
        if assignment_removed_by_undo(assignment_id=assignment_id, trainer=trainer):
            raise RemovedByUndo(GIVEN_BACK) from None
        raise


def ranking_get_for_trainer(*, ranking_id: int, trainer: AbstractBaseUser) -> Ranking:
    """One of the trainer's own rankings; RemovedByUndo for one of theirs taken back already, a
    404 for any other id (anyone else's, or none)."""
    try:
        return get_object_or_404(Ranking, pk=ranking_id, ranker=trainer)
    except Http404:
        if ranking_removed_by_undo(ranking_id=ranking_id, trainer=trainer):
            raise RemovedByUndo(TAKEN_BACK) from None
        raise


def ranking_undo_closes_at(*, ranking: Ranking) -> datetime:
    """When taking ``ranking`` back stops being possible (``RANKING_UNDO_SECONDS`` after it was
    submitted)."""
    return ranking.submitted_at + timedelta(seconds=settings.RANKING_UNDO_SECONDS)


def ranking_undo_open_until(
    *, ranking_id: int, trainer: AbstractBaseUser, now: datetime | None = None
) -> datetime | None:
    """Until when the trainer may still take their ranking back; None when they may not (its
    window is over, or it is not theirs, or gone)."""
    ranking = Ranking.objects.filter(pk=ranking_id, ranker=trainer).only("submitted_at").first()
    if ranking is None:
        return None
    closes_at = ranking_undo_closes_at(ranking=ranking)
    return closes_at if (now or timezone.now()) <= closes_at else None


# ---- the replies as a trainer sees them ---------------------------------------------------------
#
# The Rank page and the API name a task's replies by the number they are shown under (1 = the
# first shown), never by a row id: the candidate of the reply the task was made from is made
# first, so its id (and its message's) is the smallest of the task's, and would say which reply
# is the original. The numbers follow the order shuffled for each trainer.


def shown_numbers(presentation_order: list[int]) -> dict[int, int]:
    """Candidate id -> the number the reply is shown under (1 = the first shown)."""
    return {candidate_id: number for number, candidate_id in enumerate(presentation_order, 1)}


def shown_candidates(presentation_order: list[int]) -> dict[int, int]:
    """The number a reply is shown under -> its candidate id."""
    return dict(enumerate(presentation_order, 1))


def ranking_as_shown(*, ranking: Ranking) -> dict[str, object]:
    """A stored ranking's ordering, flags and presentation order as its trainer gave them, by
    the numbers the replies were shown under."""
    numbers = shown_numbers(ranking.presentation_order)
    return {
        "ordering": [[numbers[cid] for cid in group] for group in ranking.ordering],
        "flags": {
            str(numbers[int(cid)]): entry
            for cid, entry in sorted(
                (ranking.flags or {}).items(), key=lambda item: numbers[int(item[0])]
            )
        },
        "presentation_order": list(numbers.values()),
    }


def ranking_as_form_data(*, ranking: Ranking, presentation_order: list[int]) -> dict[str, object]:
    """A stored ranking as the ranking form posts it (to show a ranking taken back): every
    reply by the number it is shown under."""
    numbers = shown_numbers(presentation_order)
    data: dict[str, object] = {
        "order": [str(number) for number in numbers.values()],
        "rationale": ranking.rationale,
        "verdict": "" if ranking.verdict == Ranking.Verdict.RANKED else ranking.verdict,
    }
    if ranking.verdict == Ranking.Verdict.RANKED:
        for rank, group in enumerate(ranking.ordering, start=1):
            for candidate_id in group:
                data[f"rank_{numbers[candidate_id]}"] = str(rank)
    for candidate_id, entry in (ranking.flags or {}).items():
        number = numbers[int(candidate_id)]
        data[f"flag_{number}"] = list(entry.get("flags", []))
        data[f"flag_note_{number}"] = entry.get("note", "")
    if ranking.first_placement_ms is not None:
        data["first_placement_ms"] = str(ranking.first_placement_ms)
    return data


@dataclass(frozen=True)
class AssignmentScreen:
    """What a trainer needs to rank: the conversation so far and the replies as shown."""

    assignment: Assignment
    prefix: list[dict[str, str]]
    # In presentation order: ``id``, the number the reply is shown under; ``text``;
    # ``moderation``, the content filter's verdict as the screen shows it
    # (``verdicts_as_shown``).
    candidates: list[dict[str, object]]
    # Whether a reply is a sample stored while the content filter could not run, not judged
    # yet (while a filter is configured to judge it): said once for the screen, never on the
    # reply, since the alternatives of a task wait together while the reply it was made from
    # may be judged, and a word on each would single that one out.
    replies_waiting_for_filter: bool = False


def verdicts_as_shown(verdicts: list[ModerationResult | None]) -> list[ModerationResult | None]:
    """The content filter's verdicts on a task's replies as the ranking screen gives them:
    every one when each reply has one by the same filter version, else only those that flag
    their reply. The reply a task was made from may have none where its alternatives (filtered
    as they were sampled) have one: one with no sample's text (brought in by an import, or
    edited from a suggestion) in a task prepared before such replies were filtered on their own
    text was never filtered; a verdict there for the others only would single it out."""
    versions = {
        (verdict.filter_name, verdict.filter_version) for verdict in verdicts if verdict is not None
    }
    if None not in verdicts and len(versions) <= 1:
        return list(verdicts)
    return [verdict if verdict is not None and verdict.flagged else None for verdict in verdicts]


def _replies_shown(assignment: Assignment) -> list[dict[str, object]]:
    """The assignment's replies in presentation order: ``number``, ``candidate_id``,
    ``message_id``, ``text``, ``moderation`` as shown and ``waiting`` (a sample's words that
    the content filter could not judge yet) (2 queries)."""
    rows = {
        row["id"]: row
        for row in Candidate.objects.filter(task_id=assignment.task_id).values(
            "id",
            "message_id",
            "message__content",
            "message__sample_id",
            "message__sample__text",
            "message__sample__moderation_pending",
        )
    }
    shown = [rows[cid] for cid in assignment.presentation_order if cid in rows]
    # Each verdict is on the words the reply shows: one its writer edited from a suggestion (the
    # original of a task may be) keeps the suggestion's sample, whose verdict is on other words;
    # one with no sample (an imported original) has a verdict on its own text only.
    stored = moderation_shown_of_texts(
        texts=[
            (
                row["message__content"],
                row["message__sample_id"]
                if row["message__content"] == row["message__sample__text"]
                else None,
            )
            for row in shown
        ]
    )
    verdicts = verdicts_as_shown(stored)
    return [
        {
            "number": number,
            "candidate_id": row["id"],
            "message_id": row["message_id"],
            "text": row["message__content"],
            "moderation": verdict,
            "waiting": bool(
                row["message__sample__moderation_pending"]
                and row["message__content"] == row["message__sample__text"]
                and judged is None
            ),
        }
        for number, (row, judged, verdict) in enumerate(
            zip(shown, stored, verdicts, strict=True), start=1
        )
    ]


def assignment_screen(*, assignment: Assignment) -> AssignmentScreen:
    """The prefix (root to the user turn) and the candidates in presentation order, each by
    the number it is shown under, with its text and the content filter's verdict as shown
    (4 queries: the prefix's last turn, its conversation, the replies, their verdicts)."""
    task = assignment.task
    prefix = [
        {"role": message.role, "content": message.content}
        for message in message_path(message=task.prefix_message)
    ]
    # The content filter's verdict is shown on each reply, so a trainer is warned before reading.
    replies = _replies_shown(assignment)
    candidates = [
        {"id": reply["number"], "text": reply["text"], "moderation": reply["moderation"]}
        for reply in replies
    ]
    return AssignmentScreen(
        assignment=assignment,
        prefix=prefix,
        candidates=candidates,
        replies_waiting_for_filter=content_filter_configured()
        and any(reply["waiting"] for reply in replies),
    )


@dataclass(frozen=True)
class ReplyShown:
    """One reply of a trainer's assignment, by the number it is shown under, with the message
    behind it (kept on the server) and the content filter's verdict as the screen shows it."""

    assignment_id: int
    number: int
    message_id: int
    moderation: ModerationResult | None


def assignment_reply(*, assignment_id: int, number: int, trainer: AbstractBaseUser) -> ReplyShown:
    """Reply ``number`` of one of the trainer's assignments (leased, ranked, skipped or run
    out); 404 for anyone else's assignment, as for a number no reply is shown under."""
    assignment = assignment_get_for_trainer(assignment_id=assignment_id, trainer=trainer)
    replies = _replies_shown(assignment)
    if not 1 <= number <= len(replies):
        raise Http404("No such reply.")
    reply = replies[number - 1]
    return ReplyShown(
        assignment_id=assignment.pk,
        number=number,
        message_id=reply["message_id"],
        moderation=reply["moderation"],
    )


def assignment_reply_of_message(
    *, message_id: int, trainer: AbstractBaseUser
) -> tuple[int, int] | None:
    """The trainer's latest assignment that showed the message as one of its replies and the
    number it was shown under; None when none did."""
    for assignment in Assignment.objects.filter(
        trainer=trainer, task__candidates__message_id=message_id
    ).order_by("-leased_at", "-id"):
        numbers = shown_numbers(assignment.presentation_order)
        candidate = Candidate.objects.filter(task_id=assignment.task_id, message_id=message_id)
        candidate_id = candidate.values_list("id", flat=True).first()
        if candidate_id in numbers:
            return assignment.pk, numbers[candidate_id]
    return None


# ---- quality (agreement between trainers) -----------------------------------------------------
