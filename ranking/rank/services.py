"""Writes of the ranking app: building tasks, leasing them to trainers, storing rankings."""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.text import text_problem
from labeling.conversations.models import Message
from labeling.conversations.selectors import ranking_source_pick
from labeling.conversations.services import (
    conversation_lock_of_message,
    message_add_alternatives,
)
from labeling.guidelines.services import guideline_version_ensure_current
from ranking.gold.models import Qualification
from ranking.gold.selectors import gold_ranked_count, qualifications_of_trainer
from ranking.gold.services import qualification_ranking_undone, qualification_update
from ranking.projects.models import Project
from ranking.projects.selectors import (
    project_alternatives,
    project_default,
    project_overlap,
    project_policy_pick,
    projects_active,
    projects_for_trainer,
)
from ranking.projects.services import project_lock
from ranking.rank.models import Assignment, Candidate, Ranking, RankingTask, UndoRemoval
from ranking.rank.selectors import (
    FILTER_DOWN_HOLDS_FILL,
    GIVEN_BACK,
    TAKEN_BACK,
    project_ids_with_regular_tasks,
    ranking_pool_open_tasks,
    ranking_pool_open_wanted,
    ranking_pool_wanted,
    ranking_removed_by_undo,
    ranking_undo_closes_at,
    shown_candidates,
    shown_numbers,
    source_finished,
    tasks_open_to,
)
from ranking.selection.services import ranking_tasks_select
from sampler.generation.models import GenerationJob, Sample
from sampler.generation.params import max_new_tokens_within
from sampler.generation.services import generation_job_create, generation_job_execute
from sampler.jobs.kinds import JobContext
from sampler.jobs.models import job_error_explained
from sampler.jobs.services import job_enqueue, job_run_inline
from sampler.moderation.services import (
    ContentFilterUnavailable,
    content_filter_ready,
    samples_flagged_ids,
    text_flagged,
)
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active

logger = logging.getLogger(__name__)

FLAGS = ("harmful", "untruthful", "unhelpful", "off_topic", "other")
MAX_FLAG_NOTE_CHARS = 500
MAX_RATIONALE_CHARS = 4000
MAX_SKIP_REASON_CHARS = 500
# What an over-long text is refused with, on the pages (by the services) and in the API (by its
# serializers, which check the same limits first). Each limit is on the text as stored, without
# the spaces around it (the API's fields trim them before they measure, the services after).
FLAG_NOTE_TOO_LONG = f"Flag notes are limited to {MAX_FLAG_NOTE_CHARS} characters."
RATIONALE_TOO_LONG = f"The rationale is limited to {MAX_RATIONALE_CHARS} characters."
SKIP_REASON_TOO_LONG = f"The reason is limited to {MAX_SKIP_REASON_CHARS} characters."
# The most milliseconds an integer column holds (24.8 days): a ranking sent later than that
# after its claim (a late submit on a lease that ran out) is stored as taking this long.
MAX_DURATION_MS = 2**31 - 1
FIRST_PLACEMENT_OUT_OF_RANGE = (
    f"The time to the first placement is out of range (0 to {MAX_DURATION_MS} milliseconds)."
)
# How many failed preparations a source message gets before it is given up: a failure the
# message had no part in (a model server down, a cancelled job) gives it back for another task,
# but one that comes back every time must not make a task of it at every pool fill.
SOURCE_PREPARATION_TRIES = 3


class RankingConflict(Exception):
    """The submission cannot be stored as things stand (already ranked, task full)."""


class LeaseGivenBack(RankingConflict):
    """The lease is gone: taking the trainer's previous ranking back gave it back after the
    request read it. No task is left to show the answer on."""


# ---- building tasks ---------------------------------------------------------------------------


def ranking_task_create(
    *,
    rng: random.Random | None = None,
    alternatives: int | None = None,
    overlap: int | None = None,
    project: Project | None = None,
    held_back: bool = False,
    queue: bool = True,
) -> RankingTask | None:
    """Pick a random model-written message of the project's conversations and queue sampling
    of its alternatives (a generation job of the ``ranking_preparation`` kind, on the
    ``generation`` queue) from the project's policy, with its K, overlap and sampling, under
    the token limit the message was sampled under (``_alternatives_params``).

    Returns None when no eligible message is left.
    """
    rng = rng or random.Random()
    project = project or project_default()
    alternatives = alternatives or project_alternatives(project)
    source = ranking_source_pick(
        rng=rng, origins=settings.RANKING_SOURCE_ORIGINS, project_id=project.pk
    )
    if source is None:
        return None
    version = project_policy_pick(project=project, rng=rng)
    with transaction.atomic():
        job = generation_job_create(
            prefix_message=source.parent,
            n=alternatives,
            params=_alternatives_params(source=source, project=project, version=version),
            purpose=GenerationJob.Purpose.RANKING,
            model_version=version,
            project_id=project.pk,
            queue=False,
        )
        task = RankingTask.objects.create(
            project=project,
            source_message=source,
            prefix_message=source.parent,
            generation_job=job,
            model_version=job.model_version,
            source_owner_id=source.conversation.owner_id,
            alternatives_requested=alternatives,
            overlap_required=overlap or project_overlap(project),
            held_back=held_back,
        )
        if queue:
            job_enqueue(job=job)
    return task


def _alternatives_params(
    *, source: Message, project: Project, version: ModelVersion | None
) -> dict:
    """The sampling parameters ``source``'s alternatives are asked for: the project's, with a
    token limit that does not set the original apart.

    A reply cut at its token limit reads cut, and a limit the original alone was sampled under
    (a suggestion's default 64 tokens, alternatives' 96) makes it the only reply cut there, or
    the only one not cut: the ranking would not be blind. So the alternatives take the limit
    the original's sample was drawn under, as its job recorded it (an edited suggestion too:
    the writer's edit has no limit, the model's text it started from had that one), lowered to
    ``GENERATION_MAX_NEW_TOKENS`` and to what the context of ``version`` (None: the active
    policy) leaves for a reply: the limit may have been the cap of its day, or fit another
    model, and the policy is asked for no more than it takes.
    An original with no sample (an import) or no recorded limit: ``RANKING_MAX_NEW_TOKENS``,
    lowered alike.

    A project's own ``max_new_tokens`` is kept as it is: it is the admin's choice for the
    campaign's samples, which the project's settings show; overriding it would sample the data
    under a limit no one set there. An admin who sets one accepts that originals sampled under
    another limit may stand out by their length (the README says so).
    """
    params = dict(project.sampling_params)
    if "max_new_tokens" in params:
        return params
    recorded = (
        Sample.objects.filter(pk=source.sample_id).values_list("job__params", flat=True).first()
        if source.sample_id is not None
        else None
    )
    limit = recorded.get("max_new_tokens") if isinstance(recorded, dict) else None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        limit = settings.RANKING_MAX_NEW_TOKENS
    policy = version or model_version_active()
    return {
        **params,
        "max_new_tokens": max_new_tokens_within(
            wanted=limit,
            context_length=policy.context_length if policy is not None else None,
            cap=settings.GENERATION_MAX_NEW_TOKENS,
        ),
    }


def _prepared_by(job: GenerationJob):
    """The task ``job`` prepares: its gold copies share the job (and its candidates) but were
    made once it had succeeded, and are never what a preparation's outcome acts on."""
    return RankingTask.objects.filter(generation_job=job, gold_of__isnull=True)


def ranking_task_prepare_execute(context: JobContext) -> None:
    """The preparation job: sample the alternatives and, in the same transaction that stores
    them, turn them into the task's candidates (ready for ranking)."""
    generation_job_execute(context, then=_candidates_from_samples)


# Why a task whose alternatives the content filter could not judge was not made.
UNJUDGED_KEPT_OUT = (
    "The content filter cannot run (staff see why on the feedback page), and "
    "CONTENT_FILTER_BLOCK_RANKING keeps replies it has not judged out of ranking tasks."
)


def _samples_for_ranking(
    *, task: RankingTask, source: Message, samples: list[Sample]
) -> list[Sample] | None:
    """The samples that become the task's alternatives, by the content filter's verdicts; None
    when the task is failed for them instead (with the reason). Samples stored while the filter
    could not run (``moderation_pending``) are ranked as they are, judged by the sweep once it
    runs again, unless flagged replies are kept out of ranking: then the task fails (the
    source had no part in it, so it is given back)."""
    if any(sample.moderation_pending for sample in samples):
        if settings.CONTENT_FILTER_BLOCK_RANKING:
            ranking_task_fail(task_id=task.pk, error=UNJUDGED_KEPT_OUT, spends_try=False)
            return None
        return samples
    # The reply the task is made from is filtered again as its alternatives were, by the filter
    # of the day: a verdict by another filter version would single it out on the Rank page. It
    # is judged on its own text where that is no sample's: one its writer edited from a
    # suggestion holds other words, and one brought in by an import has no sample here.
    source_flagged = text_flagged(text=source.content, sample=source.sample)
    if settings.CONTENT_FILTER_BLOCK_RANKING:
        if source_flagged:
            # The reply the task is made from is a candidate too: flagged, no task.
            task.status = RankingTask.Status.FAILED
            task.error = (
                "The content filter flagged the reply this task was made from, and "
                "CONTENT_FILTER_BLOCK_RANKING keeps flagged replies out of ranking tasks."
            )
            task.save(update_fields=["status", "error"])
            return None
        flagged = samples_flagged_ids(samples=samples)
        samples = [sample for sample in samples if sample.pk not in flagged]
        if not samples:
            task.status = RankingTask.Status.FAILED
            task.error = (
                f"The content filter flagged all {len(flagged)} sampled alternatives and "
                "CONTENT_FILTER_BLOCK_RANKING keeps flagged replies out of ranking tasks."
            )
            task.save(update_fields=["status", "error"])
            return None
    return samples


def _candidates_from_samples(job: GenerationJob, samples: list[Sample]) -> None:
    task = _prepared_by(job).select_for_update().first()
    if task is None or task.status != RankingTask.Status.PREPARING:
        return
    # Sampled: the project's policy prepares tasks (a reason a preparation failed is gone).
    _pool_error_record(project_id=task.project_id, reason="")
    source = Message.objects.select_related("sample").get(pk=task.source_message_id)
    samples = _samples_for_ranking(task=task, source=source, samples=samples)
    if samples is None:
        return
    alternatives = message_add_alternatives(source=source, samples=samples)
    messages = [source, *alternatives]
    Candidate.objects.bulk_create(
        [
            Candidate(task=task, message=message, is_source=position == 0, position=position)
            for position, message in enumerate(messages)
        ]
    )
    task.status = RankingTask.Status.READY
    task.ready_at = timezone.now()
    task.save(update_fields=["status", "ready_at"])


def ranking_task_preparation_given_up(job: GenerationJob) -> None:
    """A preparation that failed for good, or was cancelled, releases its task: the pool
    counts it no more and makes another. Its source can be picked again (within its tries):
    the backend's trouble or a cancelled job is no fault of the message. One that failed says
    why on its project, as a fill that fails does (``_pool_error_record``)."""
    task = _prepared_by(job).values("pk", "project_id").first()
    ranking_task_fail(
        task_id=task["pk"] if task is not None else None,
        error=job.error or f"Sampling {job.status}.",
    )
    if task is not None and job.status == GenerationJob.Status.FAILED:
        _pool_error_record(project_id=task["project_id"], reason=_preparation_failure(job))


def ranking_task_preparation_retried(job: GenerationJob) -> None:
    """A preparation queued again (a retry after it failed or was cancelled) prepares its task
    again: released when it gave up, the task waits for its candidates once more, unless its
    source has meanwhile been taken by another task (one task per source): then it stays
    failed, and the samples its job makes are kept but made into no candidates."""
    project_id = _prepared_by(job).values_list("project_id", flat=True).first()
    if project_id is None:
        return
    source_taken = RankingTask.objects.filter(
        source_message_id=OuterRef("source_message_id"), holds_source=True
    ).exclude(pk=OuterRef("pk"))
    with transaction.atomic():
        # The project's row lock, as a pool fill takes it to pick sources: the two take turns,
        # so a fill never picks the source this retry takes back, nor the retry one just picked.
        project_lock(project_id=project_id)
        _prepared_by(job).filter(status=RankingTask.Status.FAILED).exclude(
            Exists(source_taken)
        ).update(status=RankingTask.Status.PREPARING, error="", holds_source=True, spends_try=True)


def ranking_task_prepare(*, task_id: int) -> RankingTask:
    """Run a task's preparation in this process (tests, the command line)."""
    task = RankingTask.objects.get(pk=task_id)
    if task.status == RankingTask.Status.PREPARING and task.generation_job_id:
        job_run_inline(job=GenerationJob.objects.get(pk=task.generation_job_id))
    return RankingTask.objects.get(pk=task_id)


def ranking_task_fail(*, task_id: int | None, error: str, spends_try: bool = True) -> None:
    """Fail a task still preparing, for a reason its source message had no part in: the
    source is given back for another task, unless this was its last try. ``spends_try``
    False: the failure is none of the source's tries (the content filter could not run), so
    the source is always given back."""
    with transaction.atomic():
        failed = RankingTask.objects.filter(pk=task_id, status=RankingTask.Status.PREPARING).update(
            status=RankingTask.Status.FAILED, error=error[:5000], spends_try=spends_try
        )
        if failed:
            _sources_give_back(task_ids=[task_id])


def _sources_give_back(*, task_ids: list[int]) -> None:
    """Let the failed tasks ``task_ids`` release their sources, each but on its source's
    ``SOURCE_PREPARATION_TRIES``-th failed task that spends a try (``spends_try``): a failure
    that comes back every time (a prompt the policy refuses) is not tried for ever. One
    update, however many tasks."""
    failed_tries = (
        RankingTask.objects.filter(
            source_message_id=OuterRef("source_message_id"),
            status=RankingTask.Status.FAILED,
            spends_try=True,
        )
        .order_by()
        .values("source_message_id")
        .annotate(tries=Count("pk"))
        .values("tries")
    )
    RankingTask.objects.filter(pk__in=task_ids).alias(
        tries=Coalesce(Subquery(failed_tries), 0)
    ).filter(tries__lt=SOURCE_PREPARATION_TRIES).update(holds_source=False)


def ranking_tasks_release_orphans() -> int:
    """Fail tasks still preparing whose job ended without them (or is gone): never left
    ``preparing`` forever, whatever happened to their job (their sources are given back, as
    for a preparation that failed)."""
    orphans = RankingTask.objects.filter(status=RankingTask.Status.PREPARING).filter(
        Q(generation_job__isnull=True)
        | Q(
            generation_job__status__in=[
                GenerationJob.Status.FAILED,
                GenerationJob.Status.CANCELLED,
                GenerationJob.Status.SUCCEEDED,
            ]
        )
    )
    with transaction.atomic():
        orphan_ids = list(orphans.select_for_update(of=("self",)).values_list("pk", flat=True))
        released = RankingTask.objects.filter(
            pk__in=orphan_ids, status=RankingTask.Status.PREPARING
        ).update(
            status=RankingTask.Status.FAILED, error="Its preparation ended without candidates."
        )
        _sources_give_back(task_ids=orphan_ids)
    return released


def ranking_pool_fill(
    *,
    target: int | None = None,
    rng: random.Random | None = None,
    project: Project | None = None,
) -> int:
    """Per project (``project``, or every active one): create tasks until ``target`` (else the
    pool the project needs now, ``ranking_pool_wanted``) are ready or being prepared; returns
    how many were made. A project that selects by uncertainty prepares ``candidate_factor``
    times as many, held back, and offers those its reward models disagree on most
    (``ranking.selection``). While the content filter cannot run and
    ``CONTENT_FILTER_BLOCK_RANKING`` is on, no task is prepared (the held-back tasks prepared
    before are still selected from and offered): every task prepared
    would fail for it (``UNJUDGED_KEPT_OUT``), its sampling wasted, so each project says why
    instead (``FILTER_DOWN_HOLDS_FILL``) until a fill finds the filter runs again (each fill
    asks it: ``_fill_held_for_filter``)."""
    ranking_tasks_release_orphans()
    projects = [project] if project is not None else list(projects_active())
    held = _fill_held_for_filter()
    created = 0
    for each in projects:
        # Not one transaction: the uncertainty scores and the tasks made before a failure are
        # kept (each is written on its own), and no model runs inside an open transaction.
        try:
            created += _pool_fill_project(each, target=target, rng=rng, prepare=not held)
        except Exception as error:
            reason = (
                "; ".join(error.messages)
                if isinstance(error, ValidationError)
                else _unexplained(type(error).__name__)
            )
            _pool_error_record(project_id=each.pk, reason=reason)
            if project is not None:
                raise
            # One project's trouble leaves the others' pools filled.
            logger.exception("Filling the pool of project %s failed", each.slug)
        else:
            # The tasks it queued are not prepared yet: the last preparation still tells.
            _pool_error_record(project_id=each.pk, reason=held or _last_preparation_failure(each))
    return created


MAX_POOL_ERROR_CHARS = 2000


def _fill_held_for_filter() -> str:
    """Why pools are not filled now, as a project's page says it; empty: they are. The fill
    asks the filter itself, once (``content_filter_ready``: built and loaded as the worker
    that filters loads it, once a process; one read of its record and no write while it
    runs), so the first fill after it stopped running holds off, recording why, and the first
    after it runs again resumes, deleting the record, without waiting for another worker to
    meet it."""
    if not settings.CONTENT_FILTER_BLOCK_RANKING:
        return ""
    try:
        content_filter_ready()
    except ContentFilterUnavailable as unavailable:
        return FILTER_DOWN_HOLDS_FILL + str(unavailable)
    return ""


def _pool_error_record(*, project_id: int, reason: str) -> None:
    """Keep why the project's pool is not filled (a fill or a task's preparation failed; empty:
    neither did) on the project, for its page. Written only when it changes: a fill runs every
    30 seconds."""
    reason = reason[:MAX_POOL_ERROR_CHARS]
    Project.objects.filter(pk=project_id).exclude(pool_error=reason).update(pool_error=reason)


def _unexplained(kind: str) -> str:
    """An error no refusal explains, as a project's page says it: by its kind."""
    return f"{kind} (the worker's log says more)."


def _preparation_failure(job: GenerationJob) -> str:
    """Why a preparation job failed, as its project's page says it: a refusal (a tokenizer with
    no chat template, a server's answer) in its own words, any other error by its kind."""
    if job_error_explained(error=job.error):
        return job.error or f"Sampling {job.status}."
    return _unexplained(job.error.split(":", 1)[0])


def _last_preparation_failure(project: Project) -> str:
    """Why the project's last finished preparation failed; empty: it did not (or none has
    finished, or it was cancelled)."""
    last = (
        RankingTask.objects.filter(
            project=project,
            gold_of__isnull=True,
            # Every preparation is a ranking job: said, so that the read walks the index of
            # finished ranking jobs newest first (``genjob_ranking_finished``) and stops at the
            # project's first, rather than sorting every task the project ever made.
            generation_job__purpose=GenerationJob.Purpose.RANKING,
            generation_job__status__in=[
                GenerationJob.Status.FAILED,
                GenerationJob.Status.SUCCEEDED,
            ],
        )
        .select_related("generation_job")
        .order_by("-generation_job__finished_at", "-generation_job_id")
        .first()
    )
    if last is None or last.generation_job.status != GenerationJob.Status.FAILED:
        return ""
    return _preparation_failure(last.generation_job)


def _pool_fill_project(
    each: Project, *, target: int | None, rng: random.Random | None, prepare: bool = True
) -> int:
    """Tasks made for one project toward its pool (see ``ranking_pool_fill``). ``prepare``
    False (the fill holds off for the content filter): none is made, but the tasks prepared
    before, held back where the project selects by uncertainty, are still offered as the
    pool wants them (their replies were judged when they were prepared)."""
    created = 0
    wanted = ranking_pool_wanted(project=each) if target is None else target
    uncertain = each.selection == Project.Selection.UNCERTAINTY
    if uncertain:
        # Offered: as many as the pool wants now (more while more trainers are ranking).
        ranking_tasks_select(project=each, rng=rng, wanted=wanted)
    if not prepare:
        return 0
    wanted = ranking_pool_open_wanted(project=each, wanted=wanted)
    open_tasks = ranking_pool_open_tasks(projects=[each]).count()
    for _ in range(max(0, wanted - open_tasks)):
        # Each task on its own, under the project's row lock with the count taken again: two
        # fills at once (a slow fill overlapping the next one on another worker) take turns,
        # so the pool is made once, not twice, and no source is picked by both.
        with transaction.atomic():
            project_lock(project_id=each.pk)
            if ranking_pool_open_tasks(projects=[each]).count() >= wanted:
                break
            if ranking_task_create(rng=rng, project=each, held_back=uncertain) is None:
                break
        created += 1
    return created


# ---- leases -----------------------------------------------------------------------------------


def leases_expire(*, now=None) -> int:
    """Give back the slots of leases that ran out (indexed on status, expires_at)."""
    now = now or timezone.now()
    stale = Assignment.objects.filter(status=Assignment.Status.LEASED, expires_at__lt=now)
    return _leases_give_back(stale, now=now)


def _leases_give_back(leases, *, now) -> int:
    """Expire ``leases`` (leased assignments; at most 1000 a call), each giving its task's slot
    back; a row is changed only while it still matches ``leases``."""
    expired = 0
    for assignment_id, task_id in leases.values_list("id", "task_id")[:1000]:
        with transaction.atomic():
            updated = leases.filter(pk=assignment_id).update(
                status=Assignment.Status.EXPIRED, closed_at=now
            )
            if updated:
                RankingTask.objects.filter(pk=task_id, leased_count__gt=0).update(
                    leased_count=F("leased_count") - 1
                )
                expired += 1
    return expired


def undo_removals_delete_expired(*, now=None) -> int:
    """Forget what undos removed more than ``UNDO_REMOVAL_TTL_SECONDS`` ago (``UndoRemoval``):
    a request on such an id is a 404 from then on, as an unknown one is. How many were."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.UNDO_REMOVAL_TTL_SECONDS)
    deleted, _ = UndoRemoval.objects.filter(removed_at__lt=cutoff).delete()
    return deleted


def _presentation_order(task: RankingTask) -> list[int]:
    ids = list(task.candidates.values_list("id", flat=True))
    random.SystemRandom().shuffle(ids)
    return ids


def _pick(tasks, *, wait: bool = True):
    # Skip rows other claims hold right now; if that skipped everything, wait for the first
    # one instead of answering "nothing to rank" while work is left (the database re-checks
    # the condition once the lock is released). ``wait`` False: never wait, for a claim that
    # already holds a task (waiting then could close a circle with an undo, which locks its
    # tasks by id).
    task = tasks.select_for_update(skip_locked=True).first()
    if task is not None or not wait:
        return task
    return tasks.select_for_update().first()


def task_claim_next(
    *,
    trainer: AbstractBaseUser,
    project: Project | None = None,
    rng: random.Random | None = None,
) -> Assignment | None:
    """The trainer's current lease, or a new lease on the oldest task that still needs them,
    in ``project`` or else in any active project the trainer may rank in.

    A task is never leased to more trainers than it still needs (rankings + leases < overlap),
    never to the writer of its conversation, and never twice to the same trainer. In a project
    that requires qualification, a trainer not yet decided gets only its gold tasks, and one
    who failed gets nothing; otherwise a gold task of the task's project replaces it at the
    project's gold rate (one free at that instant: the claim holds the task it picked, and
    waits for no other), and is offered when nothing else is left in a project that mixes
    gold in. A gold task never goes to a trainer who ranked its original. The trainer's
    leases in projects they may no longer rank in (paused, or not open to their groups) are
    given back first.
    """
    rng = rng or random.SystemRandom()
    open_ids = []
    projects = {}
    for each in projects_for_trainer(trainer=trainer):
        open_ids.append(each.pk)
        if project is None or each.pk == project.pk:
            projects[each.pk] = each
    allowed_ids = list(projects)
    qualifications = qualifications_of_trainer(trainer=trainer)
    for each in projects.values():
        pending = qualifications.get(each.pk)
        if (
            each.qualification_required
            and (pending is None or pending.status == Qualification.Status.PENDING)
            and gold_ranked_count(trainer=trainer, project=each) >= each.qualification_tasks
        ):
            # Enough gold ranked already (some perhaps before the project required
            # qualification): decide now. One read per such project, a write only to decide.
            qualifications[each.pk] = qualification_update(project=each, trainer=trainer)
    decided = {
        project_id: qualification.status
        for project_id, qualification in qualifications.items()
        if qualification.status != Qualification.Status.PENDING
    }
    regular_ids = project_ids_with_regular_tasks(
        projects=projects.values(), qualifications=qualifications
    )
    qualifying_ids = [
        each.pk
        for each in projects.values()
        if each.qualification_required and each.pk not in decided
    ]
    now = timezone.now()
    leases_expire(now=now)
    # A lease in a project paused since (or no longer open to the trainer), or on a task whose
    # conversation was reopened or discarded since, is given back, as if it ran out: it
    # neither holds a slot nor stands for the trainer's claim. Before the claim's transaction,
    # as ``leases_expire``: the claim then waits for a task only while it holds none (a gold
    # copy to give instead of the task it picked is taken only if free), so it never holds a
    # task while waiting for another (see ``ranking_undo``).
    _leases_give_back(
        Assignment.objects.filter(trainer=trainer, status=Assignment.Status.LEASED).exclude(
            Q(task__project_id__in=open_ids) & source_finished("task__")
        ),
        now=now,
    )
    with transaction.atomic():
        # One claim at a time per trainer (two tabs must not get two leases). "No key": the
        # row stays free for the rows that refer to it (a ranking, a task, an assignment
        # written meanwhile), which a plain FOR UPDATE would make wait.
        get_user_model().objects.select_for_update(no_key=True).filter(pk=trainer.pk).first()
        current = (
            Assignment.objects.select_related("task")
            .filter(
                source_finished("task__"),
                trainer=trainer,
                status=Assignment.Status.LEASED,
                expires_at__gte=now,
                task__project_id__in=allowed_ids,
            )
            .order_by("leased_at")
            .first()
        )
        if current is not None:
            return current
        open_tasks = tasks_open_to(trainer=trainer)
        gold = open_tasks.filter(gold_ordering__isnull=False)
        task = _pick(gold.filter(project_id__in=qualifying_ids)) if qualifying_ids else None
        if task is None:
            # (A trainer who ranked a gold copy is not given its original: ``tasks_open_to``.)
            regular = open_tasks.filter(gold_ordering__isnull=True, project_id__in=regular_ids)
            task = _pick(regular)
            if task is not None and rng.random() < projects[task.project_id].gold_rate:
                # Holding the task picked: a gold copy another claim holds is passed over.
                task = _pick(gold.filter(project_id=task.project_id), wait=False) or task
            elif task is None:
                # Nothing new to rank: the gold of projects that mix gold in at all.
                mixing = [pk for pk in regular_ids if projects[pk].gold_rate > 0]
                task = _pick(gold.filter(project_id__in=mixing)) if mixing else None
        if task is None:
            return None
        RankingTask.objects.filter(pk=task.pk).update(leased_count=F("leased_count") + 1)
        return Assignment.objects.create(
            task=task,
            trainer=trainer,
            presentation_order=_presentation_order(task),
            expires_at=now + timedelta(seconds=settings.RANKING_LEASE_SECONDS),
        )


def _trainer_assignment_locked(*, assignment: Assignment, trainer: AbstractBaseUser) -> Assignment:
    """``assignment`` as stored, locked until the transaction ends; a ValidationError when it
    is not ``trainer``'s."""
    locked = Assignment.objects.select_for_update().filter(pk=assignment.pk).first()
    if locked is None:
        # Given back meanwhile: taking back the ranking before it hands back the next lease.
        raise LeaseGivenBack(GIVEN_BACK)
    assignment = locked
    if assignment.trainer_id != trainer.pk:
        raise ValidationError("This task was not assigned to you.")
    return assignment


@transaction.atomic
def assignment_skip(*, assignment: Assignment, trainer: AbstractBaseUser, reason: str = "") -> None:
    """Give the task back; it is not offered to this trainer again. ``reason`` is stored, and
    measured against its limit, without the spaces around it. RankingConflict, as a submit
    would answer, when the task is ranked already, or no longer open to the trainer (its
    project closed to them, its conversation reopened or discarded): a skip is an answer too,
    counted in the trainer's habits, and no claim offers such a task (the next claim gives its
    lease back)."""
    if problem := text_problem(reason):
        raise ValidationError({"reason": problem})
    reason = reason.strip()
    if len(reason) > MAX_SKIP_REASON_CHARS:
        raise ValidationError({"reason": SKIP_REASON_TOO_LONG})
    assignment = _trainer_assignment_locked(assignment=assignment, trainer=trainer)
    if assignment.status == Assignment.Status.SUBMITTED:
        raise RankingConflict("You already ranked this task; a ranked task cannot be skipped.")
    if assignment.status == Assignment.Status.SKIPPED:
        return  # Skipping twice (a double click) changes nothing.
    # Locked before the conversation, in the order a submit takes them.
    task = RankingTask.objects.select_for_update().get(pk=assignment.task_id)
    _task_open_or_conflict(trainer=trainer, task=task, kept="there is nothing to skip.")
    if assignment.status == Assignment.Status.LEASED:
        RankingTask.objects.filter(pk=assignment.task_id, leased_count__gt=0).update(
            leased_count=F("leased_count") - 1
        )
    assignment.status = Assignment.Status.SKIPPED
    assignment.skip_reason = reason
    assignment.closed_at = timezone.now()
    assignment.save(update_fields=["status", "skip_reason", "closed_at"])


# ---- rankings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankingInput:
    """What a trainer submits. ``ordering``: best to worst, a list of tie groups of ids."""

    ordering: list[list[int]]
    cannot_rank: bool = False
    flags: dict[int, list[str]] | None = None
    flag_notes: dict[int, str] | None = None
    rationale: str = ""
    # "" means "ranked", or "cannot_rank" when ``cannot_rank`` is set. "all_equal", "all_bad"
    # and "cannot_rank" need a reason (the rationale) and no ordering.
    verdict: str = ""
    # Milliseconds from the task being shown to the first reply being placed (browser-measured).
    first_placement_ms: int | None = None

    @property
    def resolved_verdict(self) -> str:
        if self.verdict:
            return self.verdict
        return Ranking.Verdict.CANNOT_RANK if self.cannot_rank else Ranking.Verdict.RANKED


# What a ranking naming a reply that is not the task's is told, per field.
NOT_IN_TASK = {
    "ordering": "The ranking names replies that are not part of this task.",
    "flags": "Flags name replies that are not part of this task.",
    "flag_notes": "Flag notes name replies that are not part of this task.",
}


def _unflagged_notes_error(unflagged: list[int]) -> str:
    """What a ranking with flag notes on the replies shown under ``unflagged`` (sorted), which
    have no flag, is told: a note says what its reply's flag is about."""
    if len(unflagged) == 1:
        return (
            f"Reply {unflagged[0]} has a flag note but no flag: "
            "choose a flag for it, or clear the note."
        )
    which = f"{', '.join(map(str, unflagged[:-1]))} and {unflagged[-1]}"
    return (
        f"Replies {which} have flag notes but no flag: choose a flag for each, or clear the notes."
    )


def _validate(
    ranking: RankingInput, candidate_ids: set[int], numbers: dict[int, int]
) -> dict[str, dict]:
    """``ranking`` (by candidate ids) checked against its task's ``candidate_ids``; its flags
    as stored. ``numbers``: candidate id -> the number its reply is shown under, which is how
    a message names a reply (the ranking is blind: ids are never told)."""
    errors: dict[str, str] = {}
    verdict = ranking.verdict
    if verdict and verdict not in Ranking.Verdict.values:
        errors["verdict"] = f"Unknown verdict: {verdict}."
    elif ranking.resolved_verdict != Ranking.Verdict.RANKED and not ranking.rationale.strip():
        # The verdict, or the older "cannot_rank": true alone, which means "cannot rank".
        label = Ranking.Verdict(ranking.resolved_verdict).label.lower()
        errors["rationale"] = f'Say why when you choose "{label}".'
    elif verdict in {Ranking.Verdict.RANKED, Ranking.Verdict.ALL_EQUAL} and ranking.cannot_rank:
        errors["verdict"] = (
            f'A "{Ranking.Verdict(verdict).label.lower()}" answer cannot also be "cannot rank".'
        )
    if ranking.resolved_verdict != Ranking.Verdict.RANKED and ranking.ordering:
        errors["ordering"] = (
            "Give no ordering with an answer about all replies (all equal, all bad, cannot rank)."
        )
    if ranking.first_placement_ms is not None and not (
        0 <= ranking.first_placement_ms <= MAX_DURATION_MS
    ):
        errors["first_placement_ms"] = FIRST_PLACEMENT_OUT_OF_RANGE
    if ranking.resolved_verdict == Ranking.Verdict.RANKED:
        seen = [candidate for group in ranking.ordering for candidate in group]
        if any(not group for group in ranking.ordering):
            errors["ordering"] = "Every rank must hold at least one reply."
        elif len(seen) != len(set(seen)):
            errors["ordering"] = "A reply appears twice in the ranking."
        elif set(seen) != candidate_ids:
            missing = len(candidate_ids - set(seen))
            errors["ordering"] = (
                f"Rank every reply of this task ({missing} missing)."
                if missing
                else NOT_IN_TASK["ordering"]
            )
        elif len(ranking.ordering) < 2:
            errors["ordering"] = 'All replies are tied: rank them, or choose "all equally good".'
    flags = {int(key): list(value) for key, value in (ranking.flags or {}).items() if value}
    notes = {int(key): value.strip() for key, value in (ranking.flag_notes or {}).items() if value}
    if set(flags) - candidate_ids:
        errors["flags"] = NOT_IN_TASK["flags"]
    if set(notes) - candidate_ids:
        errors["flag_notes"] = NOT_IN_TASK["flag_notes"]
    elif unflagged := sorted(numbers[c] for c, note in notes.items() if note and c not in flags):
        errors["flag_notes"] = _unflagged_notes_error(unflagged)
    for candidate, names in flags.items():
        unknown = set(names) - set(FLAGS)
        if unknown:
            errors["flags"] = f"Unknown flag: {', '.join(sorted(unknown))}."
        if "other" in names and not notes.get(candidate):
            errors["flags"] = 'Say what the problem is when you flag a reply as "other".'
    if any(len(note) > MAX_FLAG_NOTE_CHARS for note in notes.values()):
        errors["flag_notes"] = FLAG_NOTE_TOO_LONG
    if len(ranking.rationale.strip()) > MAX_RATIONALE_CHARS:
        errors["rationale"] = RATIONALE_TOO_LONG
    # What a database cannot store (the API's fields and the page's boxes refuse it first).
    if problem := text_problem(ranking.rationale):
        errors["rationale"] = problem
    # Named by the number the reply is shown under, never its candidate id (the ranking is
    # blind); the first such reply when several are (one not in the task is told above).
    unstorable = sorted(
        (numbers[candidate], problem)
        for candidate, note in notes.items()
        if candidate in numbers and (problem := text_problem(note))
    )
    if unstorable:
        number, problem = unstorable[0]
        errors["flag_notes"] = f"The flag note of reply {number}: {problem}"
    if errors:
        raise ValidationError(errors)
    return {
        str(candidate): {
            "flags": sorted(set(flags.get(candidate, []))),
            "note": notes.get(candidate, ""),
        }
        for candidate in sorted(set(flags) | set(notes))
    }


def _task_open_or_conflict(*, trainer: AbstractBaseUser, task: RankingTask, kept: str) -> None:
    """RankingConflict when the trainer may no longer rank in the task's project (paused,
    done, or not open to their groups), or when its conversation is no longer finished
    (reopened or discarded by its writer: ``source_finished``, read under the conversation's
    row lock until the transaction ends); ``kept`` says what became of their answer."""
    if not projects_for_trainer(trainer=trainer).filter(pk=task.project_id).exists():
        raise RankingConflict(
            f"This task's project is paused or no longer open to you, so {kept} "
            "Choose another project to go on ranking."
        )
    # Read under the conversation's lock: a discard or reopen committed before it is seen, and
    # one not yet made waits until this transaction ends (it cannot slip in between).
    conversation_lock_of_message(message_id=task.source_message_id)
    if not RankingTask.objects.filter(source_finished(), pk=task.pk).exists():
        raise RankingConflict(
            "The conversation this task was made from was reopened or discarded by its "
            f"writer, so {kept} Take the next task."
        )


def _as_candidates(ranking: RankingInput, presentation_order: list[int]) -> RankingInput:
    """``ranking``, which names the replies by the numbers they were shown under, naming them
    by their candidate ids; ValidationError for a number no reply was shown under."""
    candidates = shown_candidates(presentation_order)
    flags = ranking.flags or {}
    notes = ranking.flag_notes or {}
    named = {
        "ordering": {number for group in ranking.ordering for number in group},
        "flags": set(flags),
        "flag_notes": set(notes),
    }
    unknown = {field for field, numbers in named.items() if numbers - set(candidates)}
    if unknown:
        raise ValidationError({field: NOT_IN_TASK[field] for field in sorted(unknown)})
    return dataclasses.replace(
        ranking,
        ordering=[[candidates[number] for number in group] for group in ranking.ordering],
        flags={candidates[number]: names for number, names in flags.items()},
        flag_notes={candidates[number]: note for number, note in notes.items()},
    )


@dataclass(frozen=True)
class _OpenClaim:
    """A trainer's assignment that can take their ranking, and its task, both locked."""

    assignment: Assignment
    task: RankingTask
    holds_slot: bool  # a lease still running (else one that ran out, on a task with room)


def _claim_open_locked(*, assignment: Assignment, trainer: AbstractBaseUser) -> _OpenClaim:
    """``assignment`` and its task, locked until the transaction ends, when they can take the
    trainer's ranking; RankingConflict when they cannot as things stand: given back, already
    ranked, skipped, its project closed to the trainer, its conversation reopened or discarded,
    or a lease that ran out on a task others completed meanwhile. Nothing here reads the
    ranking: a submission is answered on its claim before its content, so a stale tab hears
    that its claim is gone, not what to fix in an answer that could not be stored anyway."""
    assignment = _trainer_assignment_locked(assignment=assignment, trainer=trainer)
    if assignment.status == Assignment.Status.SUBMITTED:
        raise RankingConflict("You already ranked this task; your first ranking is kept.")
    if assignment.status == Assignment.Status.SKIPPED:
        raise RankingConflict("You skipped this task, so it no longer takes your ranking.")
    task = RankingTask.objects.select_for_update().get(pk=assignment.task_id)
    _task_open_or_conflict(
        trainer=trainer,
        task=task,
        kept="your answer was not stored (it is still on your screen).",
    )
    holds_slot = assignment.status == Assignment.Status.LEASED
    room = task.overlap_required - task.rankings_count - (0 if holds_slot else task.leased_count)
    if room <= 0:
        raise RankingConflict(
            "Your lease on this task ran out and other trainers completed it meanwhile; "
            "your answer was not stored (it is still on your screen). Take the next task."
        )
    return _OpenClaim(assignment=assignment, task=task, holds_slot=holds_slot)


@transaction.atomic
def ranking_submit_check(*, assignment: Assignment, trainer: AbstractBaseUser) -> None:
    """RankingConflict when ``assignment`` can no longer take ``trainer``'s ranking, as
    ``ranking_submit`` would answer before reading it: for an answer a form refused on its own
    (the Rank page's), which is then told that its claim is gone before what to fix."""
    _claim_open_locked(assignment=assignment, trainer=trainer)


@transaction.atomic
def ranking_submit_shown(
    *, assignment: Assignment, trainer: AbstractBaseUser, ranking: RankingInput
) -> Ranking:
    """``ranking_submit`` for a ranking that names the replies by the numbers they were shown
    under (1 = the first shown), as the Rank page and the API name them: a candidate id would
    tell which reply the task was made from (its candidate is made first). A number no reply
    was shown under is a ValidationError, told after the claim's conflicts, as every other."""
    claim = _claim_open_locked(assignment=assignment, trainer=trainer)
    return _ranking_store(
        claim=claim,
        trainer=trainer,
        ranking=_as_candidates(ranking, claim.assignment.presentation_order),
    )


@transaction.atomic
def ranking_submit(
    *, assignment: Assignment, trainer: AbstractBaseUser, ranking: RankingInput
) -> Ranking:
    """Validate and store one trainer's ranking; never more than N per task, never twice.

    Raises RankingConflict when the task cannot take it (its project paused or no longer open
    to the trainer, or its conversation reopened or discarded, included), checked first, and
    ValidationError for bad input.
    """
    claim = _claim_open_locked(assignment=assignment, trainer=trainer)
    return _ranking_store(claim=claim, trainer=trainer, ranking=ranking)


def _ranking_store(
    *, claim: _OpenClaim, trainer: AbstractBaseUser, ranking: RankingInput
) -> Ranking:
    """Validate ``ranking`` (by candidate ids) against the claim's task and store it."""
    assignment, task, holds_slot = claim.assignment, claim.task, claim.holds_slot
    candidate_ids = set(task.candidates.values_list("id", flat=True))
    flags = _validate(ranking, candidate_ids, shown_numbers(assignment.presentation_order))
    verdict = ranking.resolved_verdict
    if verdict == Ranking.Verdict.RANKED:
        ordering = [list(group) for group in ranking.ordering]
    elif verdict == Ranking.Verdict.ALL_EQUAL:
        ordering = [[cid for cid in assignment.presentation_order if cid in candidate_ids]]
    else:
        ordering = []
    now = timezone.now()
    # Integer division (int(seconds * 1000) loses a millisecond to float rounding);
    # never negative when the claiming and submitting servers' clocks disagree.
    duration_ms = min(
        MAX_DURATION_MS, max(0, (now - assignment.leased_at) // timedelta(milliseconds=1))
    )
    stored = Ranking.objects.create(
        project_id=task.project_id,
        task=task,
        assignment=assignment,
        ranker=trainer,
        ordering=ordering,
        cannot_rank=verdict in {Ranking.Verdict.ALL_BAD, Ranking.Verdict.CANNOT_RANK},
        verdict=verdict,
        # The order shown, taken as it is: strict, in that order (a tie is a choice made).
        order_unchanged=(
            ordering == [[cid] for cid in assignment.presentation_order]
            if verdict == Ranking.Verdict.RANKED
            else None
        ),
        flags=flags,
        rationale=ranking.rationale.strip(),
        presentation_order=assignment.presentation_order,
        guideline_version=guideline_version_ensure_current(project_id=task.project_id),
        started_at=assignment.leased_at,
        duration_ms=duration_ms,
        first_placement_ms=(
            None
            if ranking.first_placement_ms is None
            else min(ranking.first_placement_ms, duration_ms)
        ),
    )
    assignment.status = Assignment.Status.SUBMITTED
    assignment.closed_at = now
    assignment.save(update_fields=["status", "closed_at"])
    task.rankings_count += 1
    if holds_slot:
        task.leased_count = max(0, task.leased_count - 1)
    if task.rankings_count >= task.overlap_required:
        task.status = RankingTask.Status.COMPLETE
    task.save(update_fields=["rankings_count", "leased_count", "status"])
    if task.gold_ordering is not None:
        qualification_update(project=task.project, trainer=trainer)
    return stored


# ---- dataset exports --------------------------------------------------------------------------


# ---- taking a ranking back --------------------------------------------------------------------


@transaction.atomic
def ranking_undo(*, ranking_id: int, trainer: AbstractBaseUser, now=None) -> Assignment:
    """Take back a ranking submitted less than ``RANKING_UNDO_SECONDS`` ago: the ranking is
    deleted, the task counts it no more (its agreement is computed from the rankings left, and
    a qualification that a gold ranking decided is pending again, counted anew), and the
    trainer's assignment is leased to them again (from when it was first claimed, so the time
    spent counts whole), so the task is on their screen to answer anew. A lease on a next task
    taken meanwhile (untouched: nothing was submitted on it) is given back. Raises
    RankingConflict when the window has passed or the task no longer accepts the trainer (its
    project paused or no longer open to them, or its conversation reopened or discarded,
    included).
    """
    now = now or timezone.now()
    # Locks in the order every path takes them, so that no two wait for each other: the
    # trainer (as a claim does: one claim or undo at a time per trainer), the assignments
    # (a submit, a skip, a lease running out each take theirs before its task), then the
    # tasks, by id. Taking the task first, an undo racing a submit on the next task (and the
    # other trainer's undo and submit on the same two tasks) made a circle of waits, and
    # PostgreSQL aborted one of them.
    get_user_model().objects.select_for_update(no_key=True).filter(pk=trainer.pk).first()
    ranking = Ranking.objects.select_for_update().filter(pk=ranking_id, ranker=trainer).first()
    if ranking is None:
        # Taken back meanwhile: an undo of it that went first (a double click).
        if ranking_removed_by_undo(ranking_id=ranking_id, trainer=trainer):
            raise RankingConflict(TAKEN_BACK)
        raise RankingConflict("There is no ranking of yours to take back.")
    if now > ranking_undo_closes_at(ranking=ranking):
        raise RankingConflict(
            "Too late to take this ranking back: it is kept as submitted "
            f"(undo is possible for {settings.RANKING_UNDO_SECONDS} s)."
        )
    assignment = Assignment.objects.select_for_update().get(pk=ranking.assignment_id)
    # Leases taken since (the next task, shown after the submit) are handed back; one held
    # from before (a task of another project, waiting there) stays the trainer's.
    newer = list(
        Assignment.objects.select_for_update()
        .filter(
            trainer=trainer,
            status=Assignment.Status.LEASED,
            leased_at__gte=ranking.submitted_at,
        )
        .exclude(pk=assignment.pk)
        .order_by("pk")
        .values_list("pk", "task_id")
    )
    tasks = {
        each.pk: each
        for each in RankingTask.objects.select_for_update()
        .filter(pk__in=[ranking.task_id, *(task_id for _, task_id in newer)])
        .order_by("pk")
    }
    task = tasks[ranking.task_id]
    if task.status not in {RankingTask.Status.READY, RankingTask.Status.COMPLETE}:
        raise RankingConflict("This task no longer takes rankings; yours is kept.")
    _task_open_or_conflict(trainer=trainer, task=task, kept="your ranking is kept as submitted.")
    for lease_id, lease_task_id in newer:
        RankingTask.objects.filter(pk=lease_task_id, leased_count__gt=0).update(
            leased_count=F("leased_count") - 1
        )
        Assignment.objects.filter(pk=lease_id).delete()
    # What was deleted is remembered for its trainer: a later request on it hears it is gone.
    UndoRemoval.objects.bulk_create(
        [
            UndoRemoval(trainer=trainer, ranking_id=ranking.pk, removed_at=now),
            *(
                UndoRemoval(trainer=trainer, assignment_id=lease_id, removed_at=now)
                for lease_id, _ in newer
            ),
        ]
    )
    submitted_at = ranking.submitted_at
    ranking.delete()
    if task.gold_ordering is not None:
        # A qualification this ranking decided (or counted toward) is counted anew.
        qualification_ranking_undone(
            project=task.project, trainer=trainer, ranking_id=ranking_id, submitted_at=submitted_at
        )
    assignment.status = Assignment.Status.LEASED
    assignment.closed_at = None
    # The lease keeps its start: the ranking submitted again counts all the time spent on the
    # task since it was claimed (not a near-zero "very fast" one from the undo on).
    assignment.expires_at = now + timedelta(seconds=settings.RANKING_LEASE_SECONDS)
    assignment.save(update_fields=["status", "closed_at", "expires_at"])
    task.rankings_count = max(0, task.rankings_count - 1)
    task.leased_count += 1
    task.status = RankingTask.Status.READY
    task.save(update_fields=["rankings_count", "leased_count", "status"])
    return assignment
