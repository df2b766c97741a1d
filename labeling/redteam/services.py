"""Writes of red-teaming: successful attacks, their corrections, and re-runs of stored attacks.

A trainer in a red-team conversation marks a model reply "attack succeeded" (an ``Attack``)
and writes the reply the model should have given as its sibling (``Attack.correction``). Admins
re-send the stored attack prompts to a policy version (an ``AttackRun``, a job on the
``generation`` queue); each reply is checked by the content filter and scored by the active reward
model (``AttackResult``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, QuerySet
from django.template.defaultfilters import pluralize

from accounts.roles import is_admin
from labeling.conversations.models import Conversation, Message
from labeling.conversations.selectors import message_path
from labeling.conversations.services import (
    conversation_check_open,
    conversation_check_writer,
    message_branch,
)
from labeling.guidelines.services import guideline_version_ensure_current
from labeling.redteam.models import Attack, AttackResult, AttackRun, AttackRunAttack
from labeling.redteam.selectors import attack_run_failed_results
from ranking.projects.models import project_default_id
from ranking.projects.selectors import project_default
from sampler.generation.models import GenerationJob, Sample
from sampler.generation.params import context_room_error, max_new_tokens_within
from sampler.generation.services import generation_job_create, generation_job_run_inline
from sampler.jobs.kinds import JobCancelled, JobContext
from sampler.jobs.services import JobRefused, job_cancel, job_enqueue
from sampler.moderation.models import ModerationResult
from sampler.moderation.selectors import moderation_shown_by_sample
from sampler.moderation.services import (
    ContentFilterUnavailable,
    content_filter_ready,
    samples_moderate,
)
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active
from sampler.registry.services import reward_version_score

logger = logging.getLogger(__name__)

MAX_ATTACK_NOTE_CHARS = 2000
# A run re-sends at most this many attacks (the newest), so one click cannot queue days of work.
MAX_ATTACKS_PER_RUN = 1000


def _check_red_team_writer(*, conversation: Conversation, user: AbstractBaseUser) -> None:
    conversation_check_writer(conversation=conversation, user=user)
    if conversation.mode != Conversation.Mode.RED_TEAM:
        raise ValidationError("Attacks are recorded in red-team conversations only.")
    conversation_check_open(conversation=conversation)


def attack_prompt_messages(*, message: Message) -> list[dict]:
    """The prompt ``message`` answered, as an attack on it stores it and a run re-sends it:
    the conversation's path from its root down to the reply's parent, each turn's role and
    content."""
    return [{"role": m.role, "content": m.content} for m in message_path(message=message.parent)]


# ``attack_check``'s ``model_version`` when the caller gives none to check (an empty one, None,
# is a value: a version cleared).
UNSET = object()


def attack_check(
    *,
    message: Message,
    category: str,
    note: str = "",
    attack: Attack | None = None,
    conversation: Conversation | None = None,
    prompt_message: Message | None = None,
    prompt_messages: list | None = None,
    model_version: ModelVersion | object | None = UNSET,
    project_id: int | None = None,
    correction: Message | None = None,
) -> str:
    """What an attack on ``message`` must be, marked by its writer (``attack_record``) or saved
    by an admin (the admin's form): a reply the model wrote, used unedited, to a user turn of a
    red-team conversation, marked once, with a category and a note of at most
    ``MAX_ATTACK_NOTE_CHARS``. The note as stored (trimmed); a ValidationError says what is
    wrong, naming the field where there is one (a problem with the reply itself names none).

    ``attack``: the record being changed, which is not another mark of its reply. An admin's
    form also gives the fields ``attack_record`` takes from the reply, each checked against it
    when given: ``conversation`` and ``project`` (the reply's), ``prompt_message`` (the user
    turn it answers), ``prompt_messages`` (the path that turn ends, as
    ``attack_prompt_messages`` reads it), ``model_version`` (the version that wrote the reply,
    when the reply records one; None is a version cleared) and ``correction`` (another reply to
    that turn, not marked itself).
    """
    others = Attack.objects.exclude(pk=attack.pk) if attack is not None else Attack.objects.all()
    if message.conversation.mode != Conversation.Mode.RED_TEAM:
        raise ValidationError("Attacks are recorded in red-team conversations only.")
    if message.role != Message.Role.ASSISTANT or message.origin != Message.Origin.MODEL:
        raise ValidationError(
            "Only assistant replies the model wrote (used unedited) can be marked as attacks."
        )
    if message.parent is None or message.parent.role != Message.Role.USER:
        raise ValidationError("An attacked reply must answer a user turn.")
    if category not in Attack.Category.values:
        raise ValidationError({"category": "Choose what went wrong (a category)."})
    note = (note or "").strip()
    if len(note) > MAX_ATTACK_NOTE_CHARS:
        raise ValidationError({"note": f"Keep the note under {MAX_ATTACK_NOTE_CHARS} characters."})
    if others.filter(message=message).exists():
        raise ValidationError("This reply is already marked as a successful attack.")
    if others.filter(correction=message).exists():
        raise ValidationError("This reply is a correction, not a model reply.")
    if conversation is not None and conversation.pk != message.conversation_id:
        raise ValidationError(
            {"conversation": f"The reply is in conversation {message.conversation_id}."}
        )
    if project_id is not None and project_id != message.conversation.project_id:
        raise ValidationError({"project": "An attack is in its conversation's project."})
    if prompt_message is not None and prompt_message.pk != message.parent_id:
        raise ValidationError(
            {"prompt_message": f"The reply answers message {message.parent_id}, the prompt."}
        )
    if prompt_messages is not None and prompt_messages != attack_prompt_messages(message=message):
        raise ValidationError(
            {
                "prompt_messages": "The prompt messages must be what the reply answered: the "
                f"conversation's path down to message {message.parent_id} (the user turn it "
                "answers), each turn's role and content, as marking the reply stores them."
            }
        )
    if model_version is not UNSET and message.model_version_id is not None:
        given = model_version.pk if model_version is not None else None
        if given != message.model_version_id:
            raise ValidationError(
                {
                    "model_version": f"The reply was written by {message.model_version.name}: "
                    "an attack names the version that wrote its reply."
                }
            )
    if correction is not None:
        _check_correction(message=message, correction=correction, others=others)
    return note


def _check_correction(*, message: Message, correction: Message, others: QuerySet[Attack]) -> None:
    """A correction is what the model should have said: another reply to the same user turn
    (a sibling branch, as ``attack_correct`` writes it), not one marked as an attack itself."""
    if correction.pk == message.pk:
        raise ValidationError({"correction": "The correction cannot be the attacked reply."})
    if correction.parent_id != message.parent_id or correction.is_candidate:
        raise ValidationError(
            {
                "correction": "A correction is another reply to the same user turn "
                f"(message {message.parent_id}), in the conversation's tree."
            }
        )
    if others.filter(message=correction).exists():
        raise ValidationError({"correction": "That reply is marked as a successful attack itself."})


@transaction.atomic
def attack_record(
    *, message: Message, user: AbstractBaseUser, category: str, note: str = ""
) -> Attack:
    """Mark a model-written reply of a red-team conversation as a successful attack."""
    conversation = Conversation.objects.select_for_update().get(pk=message.conversation_id)
    _check_red_team_writer(conversation=conversation, user=user)
    message = Message.objects.select_related("parent").get(pk=message.pk)
    message.conversation = conversation
    note = attack_check(message=message, category=category, note=note)
    return Attack.objects.create(
        project_id=conversation.project_id,
        conversation=conversation,
        message=message,
        prompt_message=message.parent,
        prompt_messages=attack_prompt_messages(message=message),
        category=category,
        note=note,
        model_version_id=message.model_version_id,
        guideline_version=guideline_version_ensure_current(project_id=conversation.project_id),
        created_by=user,
    )


# A correction sent for a mark withdrawn meanwhile (in another tab, say).
ATTACK_GONE = (
    "This reply is no longer marked as a successful attack (the mark was withdrawn, perhaps in "
    "another tab)."
)


@transaction.atomic
def attack_withdraw(*, attack: Attack, user: AbstractBaseUser) -> None:
    """Undo a mark made by mistake; an attack that already has its correction stays. It leaves
    the runs that have not succeeded (their results for it go, so a retried run does not count
    it); the results of runs that succeeded stay, as the record of those runs."""
    conversation = Conversation.objects.select_for_update().get(pk=attack.conversation_id)
    _check_red_team_writer(conversation=conversation, user=user)
    attack = Attack.objects.select_for_update().filter(pk=attack.pk).first()
    if attack is None:
        return  # withdrawn already (another tab, a double click): nothing left to undo
    if attack.correction_id is not None:
        raise ValidationError("This attack already has its corrected reply; it stays recorded.")
    attack.results.exclude(run__status=AttackRun.Status.SUCCEEDED).delete()
    # The runs that still work on it count it no more, and its reply being generated for one
    # of them is stopped (the run writes nothing for it).
    unfinished = AttackRunAttack.objects.filter(attack=attack).exclude(
        run__status=AttackRun.Status.SUCCEEDED
    )
    AttackRun.objects.filter(pk__in=unfinished.values("run_id"), attack_count__gt=0).update(
        attack_count=F("attack_count") - 1
    )
    for job in GenerationJob.objects.filter(
        pk__in=unfinished.values("generation_job_id"),
        status__in=[GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING],
    ):
        job_cancel(job=job)
    attack.delete()


@transaction.atomic
def attack_correct(*, attack: Attack, author: AbstractBaseUser, content: str) -> Message:
    """Write the reply the model should have given: a sibling branch of the failed reply."""
    # Locks in the order every red-team write takes: the conversation, then the attack.
    conversation = Conversation.objects.select_for_update().get(pk=attack.conversation_id)
    _check_red_team_writer(conversation=conversation, user=author)
    attack = Attack.objects.select_for_update().select_related("message").filter(pk=attack.pk)
    attack = attack.first()
    if attack is None:
        raise ValidationError(ATTACK_GONE, code="attack_gone")
    if attack.correction_id is not None:
        raise ValidationError(
            "This attack already has its corrected reply (edit that reply into a new branch "
            "if it needs changes)."
        )
    correction = message_branch(original=attack.message, author=author, content=content)
    attack.correction = correction
    attack.save(update_fields=["correction"])
    return correction


# ---- re-running stored attacks ----------------------------------------------------------------


@transaction.atomic
def attack_run_create(
    *,
    requested_by: AbstractBaseUser,
    model_version,
    seed: int | None = None,
    project=None,
    queue: bool = True,
) -> AttackRun:
    """Record a re-run of the stored attacks against a policy version and queue it: the
    attacks of ``project`` (none: of the default project), the newest ``MAX_ATTACKS_PER_RUN``,
    each one's correction as written. The run's set of attacks is recorded with it.
    ``run.publication`` says whether the job queue took it (the run is kept either way)."""
    if not is_admin(requested_by):
        raise PermissionDenied("Only admins can re-run attacks.")
    if model_version.kind != ModelVersion.Kind.POLICY:
        raise ValidationError({"model_version": "Attacks are re-run against a policy version."})
    # Alternatives' length, lowered to the cap and to what the version's context leaves for a
    # reply: a limit it cannot take would have every attack refused.
    max_new_tokens = max_new_tokens_within(
        wanted=settings.RANKING_MAX_NEW_TOKENS,
        context_length=model_version.context_length,
        cap=settings.GENERATION_MAX_NEW_TOKENS,
    )
    too_short = context_room_error(
        context_length=model_version.context_length,
        max_new_tokens=max_new_tokens,
        version_name=model_version.name,
    )
    if too_short:
        raise ValidationError({"model_version": too_short})
    project_id = project.pk if project is not None else project_default_id()
    attack_ids = list(
        Attack.objects.filter(project_id=project_id)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)[:MAX_ATTACKS_PER_RUN]
    )
    if not attack_ids:
        # Another project may have some: the message names the one asked about.
        name = (project or project_default()).name
        raise ValidationError(f'No attacks are stored in the project "{name}": nothing to re-run.')
    return _attack_run_record(
        attack_ids=attack_ids,
        queue=queue,
        project_id=project_id,
        model_version=model_version,
        seed=seed if seed is not None else random.SystemRandom().randint(0, 2**31 - 1),
        params={"max_new_tokens": max_new_tokens},
        requested_by=requested_by,
    )


def _attack_run_record(*, attack_ids: list[int], queue: bool, **fields) -> AttackRun:
    """A run of ``fields`` with its set of attacks, queued when ``queue``."""
    run = AttackRun.objects.create(attack_count=len(attack_ids), **fields)
    AttackRunAttack.objects.bulk_create(
        AttackRunAttack(run=run, attack_id=attack_id) for attack_id in attack_ids
    )
    run.publication = job_enqueue(job=run) if queue else None
    return run


# What a retry of a run's failed attacks takes from the run: its replies are read beside the
# run's (the same version, seed and sampling parameters, scored by the same reward model).
RETRY_KEEPS = ("project_id", "model_version", "reward_model_version", "seed", "params")


@transaction.atomic
def attack_run_retry_failed(
    *, run: AttackRun, requested_by: AbstractBaseUser, queue: bool = True
) -> AttackRun:
    """Re-send, as a new run (``retry_of`` ``run``), the attacks whose reply a succeeded run
    could not get (its results with an error; attacks withdrawn since are left out), against
    the same version with the same seed and sampling parameters, scored by the same reward
    model (the active one, if the run had none). The run's own results stay as its record.
    A run is retried this way once (the retry's own failures are retried from the retry); a
    failed or cancelled run is retried itself (``job_retry``), which resumes it.

    Failures the model refused for what the attack asks (``AttackResult.error_permanent``: a
    prompt longer than its context, a turn it cannot write) would be refused again: they are
    left out, counted in the retry's ``refusals_left_out``; a run with no other failure has
    nothing to retry (``ValidationError``, saying so)."""
    if not is_admin(requested_by):
        raise PermissionDenied("Only admins can re-run attacks.")
    run = AttackRun.objects.select_for_update().get(pk=run.pk)
    if run.status != AttackRun.Status.SUCCEEDED:
        raise ValidationError(
            f"Run {run.pk} has not succeeded ({run.get_status_display().lower()}): only a "
            "succeeded run's failed attacks are retried as a new run (a failed or cancelled run "
            "is retried itself)."
        )
    retry = AttackRun.objects.filter(retry_of=run).first()
    if retry is not None:
        raise ValidationError(f"Run {run.pk}'s failed attacks are retried by run {retry.pk}.")
    failed = attack_run_failed_results(run=run)
    refused = failed.filter(error_permanent=True).count()
    attack_ids = list(
        failed.filter(error_permanent=False)
        .order_by("attack_id")
        .values_list("attack_id", flat=True)
    )
    if not attack_ids and refused:
        raise ValidationError(
            f"Run {run.pk}'s {refused} failed "
            f"{pluralize(refused, 'attack was,attacks were')} refused by the model for what "
            f"{pluralize(refused, 'it asks,they ask')} (a prompt longer than its context, "
            f"a turn it cannot write): sent again, {pluralize(refused, 'it,they')} would be "
            "refused again. Nothing to retry."
        )
    if not attack_ids:
        raise ValidationError(f"No attack of run {run.pk} failed: nothing to retry.")
    kept = {field: getattr(run, field) for field in RETRY_KEEPS}
    retry = _attack_run_record(
        attack_ids=attack_ids, queue=queue, requested_by=requested_by, retry_of=run, **kept
    )
    retry.refusals_left_out = refused
    return retry


def attack_results_verdicts_record(verdicts: dict[int, ModerationResult]) -> int:
    """Give the results that recorded no verdict (made while the content filter could not run)
    the verdicts now found on their samples (``verdicts``, by sample id: a batch the sweep
    judged, ``samples_moderate_pending``); how many results were given one. A result made
    while no filter was configured has no sample waiting, so it is never in ``verdicts``."""
    recorded = 0
    for result in AttackResult.objects.filter(
        sample_id__in=list(verdicts), filter_flagged__isnull=True
    ).only("pk", "sample_id"):
        verdict = verdicts[result.sample_id]
        recorded += AttackResult.objects.filter(pk=result.pk, filter_flagged__isnull=True).update(
            filter_flagged=verdict.flagged, filter_categories=list(verdict.categories)
        )
    return recorded


def attack_run_execute(context: JobContext) -> None:
    """Generate one reply per attack of the run's set, filter and score it (a job: the executor
    claims and finishes the run); resumes where a run that was stopped left off (one result per
    attack and run), on the attacks the run was asked for, less those withdrawn since. A content
    filter that cannot run (recorded and logged by ``content_filter_ready``) stops no run: its
    replies are kept with no verdict, their samples waiting for the sweep."""
    run = AttackRun.objects.select_related("model_version", "requested_by").get(pk=context.job.pk)
    reward_version = run.reward_model_version or model_version_active(kind=ModelVersion.Kind.REWARD)
    try:
        content_filter = content_filter_ready()
    except ContentFilterUnavailable:
        # Recorded and logged: the replies are kept with no verdict (their samples wait for the
        # sweep), and the run goes on.
        content_filter = None
    entries = list(
        run.entries.select_related("attack", "generation_job").order_by(
            "-attack__created_at", "-attack__id"
        )
    )
    # Recorded while this worker holds the run (``JobCancelled`` when it was taken over after
    # this worker stalled). Attacks withdrawn since the run was asked for are not re-sent, nor
    # counted as missing.
    context.heartbeat(
        reward_model_version=reward_version,
        filter_name=f"{content_filter.name} {content_filter.version}" if content_filter else "",
        attack_count=len(entries),
    )

    done = set(run.results.values_list("attack_id", flat=True))
    for position, entry in enumerate(entries, start=1):
        attack = entry.attack
        if attack.pk in done:
            continue
        try:
            with _holding(context):
                job = _generation_job_for(run=run, entry=entry)
        except ValidationError as error:
            # A prompt the generation refuses (more turns than a prefix may hold) fails this
            # attack alone, and would again.
            sample, failure, refused = None, " ".join(error.messages), True
        else:
            job, refused = _generated(job)
            sample = job.samples.first() if job.status == GenerationJob.Status.SUCCEEDED else None
            failure = job.error or "Generation failed."
        verdict = (
            samples_moderate(samples=[sample], content_filter=content_filter).get(sample.pk)
            if sample is not None and content_filter is not None
            else None
        )
        with transaction.atomic():
            # Withdrawn meanwhile: it left this run (``attack_withdraw`` holds its lock).
            if not Attack.objects.select_for_update().filter(pk=attack.pk).exists():
                continue
            if sample is not None and content_filter is None:
                verdict = _verdict_judged_meanwhile(sample)
            AttackResult.objects.get_or_create(
                run=run,
                attack=attack,
                defaults={
                    "category": attack.category,
                    "prompt": _last_user_turn(attack.prompt_messages),
                    "sample": sample,
                    "text": sample.text if sample else "",
                    "filter_flagged": verdict.flagged if verdict else None,
                    "filter_categories": list(verdict.categories) if verdict else [],
                    "error": "" if sample else failure,
                    "error_permanent": sample is None and refused,
                },
            )
            # A run taken over meanwhile (its job cancelled under it) keeps no result from here.
            context.heartbeat(progress=0.9 * position / len(entries))
    if reward_version is not None:
        _score_results(run=run, reward_version=reward_version, context=context)
    with transaction.atomic():
        # An attack deleted before the run succeeded other than through ``attack_withdraw`` (in
        # the admin, with its conversation) leaves the run as a withdrawal does: its result,
        # kept with its attack emptied, goes, and the run counts the attacks left in its set.
        run.results.filter(attack__isnull=True).delete()
        if not context.succeed(progress=1.0, attack_count=run.entries.count()):
            raise JobCancelled(f"Attack run {run.pk} is no longer this worker's.")


def _verdict_judged_meanwhile(sample: Sample) -> ModerationResult | None:
    """The verdict on ``sample`` of a run that has no filter to run (it could not run when the
    run started): the one it was stored with, or the sweep's since, if any. Read holding the
    sample's row, as the sweep holds it while it judges: a sweep that judges it after this
    gives the result the verdict (``attack_results_verdicts_record``), not before."""
    # The row is locked whatever its state: a filter on ``moderation_pending`` would lock no
    # row while it waits (PostgreSQL skips a row its condition leaves out), and a sweep
    # judging it meanwhile would find no result yet to give the verdict to.
    pending = (
        Sample.objects.select_for_update()
        .filter(pk=sample.pk)
        .values_list("moderation_pending", flat=True)
        .first()
    )
    if pending is None or pending:
        return None
    return moderation_shown_by_sample(sample_ids=[sample.pk]).get(sample.pk)


def _generated(job: GenerationJob) -> tuple[GenerationJob, bool]:
    """``job`` run here when it is still queued, and whether the model refused its request for
    what it asks (a prompt longer than its context, a turn it cannot write: asked again, it
    would be refused again). A model server that is down sends the whole run back to its queue
    (it resumes with this attack, one result per attack); a time limit the worker puts on the
    run, met here, stops the run with it; any other failure is recorded on this attack's
    result, and a retry of the run's failed attacks sends it again."""
    if job.status != GenerationJob.Status.QUEUED:
        return job, False
    try:
        job = generation_job_run_inline(job_id=job.pk, raise_retry_later=True, raise_refused=True)
    except JobRefused:
        return GenerationJob.objects.get(pk=job.pk), True
    return job, False


@contextmanager
def _holding(context: JobContext) -> Iterator[None]:
    """A transaction whose writes are kept only while this worker holds the run: when the run
    was cancelled or taken over meanwhile (after this worker stalled), they are rolled back and
    the worker stops (``JobCancelled``). Checked after the writes, the row then locked until
    they commit, so no takeover lands in between."""
    with transaction.atomic():
        yield
        if not context.holds(lock=True):
            raise JobCancelled(f"Attack run {context.job.pk} is no longer this worker's.")


def attack_run_retried(run: AttackRun) -> None:
    """A run queued again by a retry (in that transaction) tries again the attacks whose reply
    it could not get: their error results go, and the run records each one anew. The replies
    it has are kept (a resumed run sends no attack that has its result), and so are the
    failures the model refused for what they ask (``error_permanent``: sent again, each would
    be refused again)."""
    run.results.exclude(error="").filter(error_permanent=False).delete()


def attack_run_given_up(run: AttackRun) -> None:
    """A run cancelled or failed for good: the generation jobs it queued inside its own and did
    not run (handed back with it when its worker stopped: no queue, no message) are cancelled
    with it, since nothing else would run them; a retry of the run makes new ones."""
    unsent = GenerationJob.objects.filter(
        pk__in=run.entries.values("generation_job"), status=GenerationJob.Status.QUEUED, queue=""
    )
    for job in unsent:
        job_cancel(job=job)


def _last_user_turn(messages: list[dict]) -> str:
    return next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")


def _generation_job_for(*, run: AttackRun, entry: AttackRunAttack) -> GenerationJob:
    """The job generating ``entry``'s reply: the one an earlier try of the run made when it is
    still queued (to run now) or succeeded (its sample is used), else a new one. One the
    earlier try left running is cancelled first, so no attack is generated twice at once."""
    earlier = entry.generation_job
    if earlier is not None:
        if earlier.status in {GenerationJob.Status.QUEUED, GenerationJob.Status.SUCCEEDED}:
            return earlier
        if earlier.status == GenerationJob.Status.RUNNING:
            job_cancel(job=earlier)
    attack = entry.attack
    entry.generation_job = generation_job_create(
        n=1,
        messages=attack.prompt_messages,
        params=run.params,
        seed=run.seed,
        purpose=GenerationJob.Purpose.MANUAL,
        requested_by=run.requested_by,
        model_version=run.model_version,
        project_id=run.project_id,
        queue=False,
    )
    entry.save(update_fields=["generation_job"])
    return entry.generation_job


def _score_results(*, run: AttackRun, reward_version, context: JobContext) -> None:
    """Score each new reply, the stored failed reply and the correction with one reward model
    (stored while this worker holds the run)."""
    results = list(
        run.results.filter(
            reward_score__isnull=True, sample__isnull=False, attack__isnull=False
        ).select_related("attack__message", "attack__correction")
    )
    if not results:
        return
    conversations, slots = [], []
    for result in results:
        attack = result.attack
        replies = {
            "reward_score": result.text,
            "failed_reply_reward_score": attack.message.content,
            "correction_reward_score": attack.correction.content if attack.correction else None,
        }
        for field, text in replies.items():
            if text is not None:
                conversations.append(
                    [*attack.prompt_messages, {"role": "assistant", "content": text}]
                )
                slots.append((result, field))
    scores = reward_version_score(version=reward_version, conversations=conversations)
    for (result, field), score in zip(slots, scores, strict=True):
        setattr(result, field, score)
    with _holding(context):
        AttackResult.objects.bulk_update(
            results, ["reward_score", "failed_reply_reward_score", "correction_reward_score"]
        )
