"""Generation jobs: validate and record a request, publish it, and run it on a worker.

A job runs through the one executor (``sampler.jobs``): suggestions and try-the-model on the
``interactive`` queue, everything else on ``generation``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.roles import is_admin
from config.celery import Queue
from config.text import storable_text, text_problem
from labeling.conversations.selectors import message_path
from labeling.models import Message
from sampler.generation.backends import (
    BackendError,
    BackendUnavailable,
    GenerationBackend,
    GenerationRequest,
    GenerationResult,
    RequestNotSent,
    RequestRefused,
    backend_get,
)
from sampler.generation.models import GenerationJob, Sample
from sampler.generation.params import (
    GenerationParams,
    context_room_error,
    max_new_tokens_within,
)
from sampler.jobs.kinds import JobRetryLater
from sampler.jobs.models import FINISHED, JobStatus
from sampler.jobs.services import (
    JobCancelled,
    JobContext,
    JobError,
    JobRefused,
    Publication,
    job_batch,
    job_cancel,
    job_enqueue,
    job_hand_back,
    job_partner_step,
    job_retry,
    job_run_inline,
)
from sampler.moderation.filters import ContentFilter
from sampler.moderation.services import (
    ContentFilterUnavailable,
    content_filter_ready,
    samples_moderate,
)
from sampler.registry.models import ModelVersion
from sampler.registry.services import model_version_ensure_default

logger = logging.getLogger(__name__)

MAX_SEED = 2**31 - 1
ROLES = {"assistant", "user"}
# A prefix given as a list of messages (API, command line) is bounded like trainer input.
MAX_PREFIX_MESSAGES = 200
MAX_MESSAGE_CHARS = 20000
NO_MESSAGES = (
    "The list of messages is empty: give at least one (a user turn, for the assistant's reply "
    "to answer)."
)
INTEGER_PARAMS = {"top_k", "max_new_tokens"}


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_integer(value) or isinstance(value, float)


def _validated_params(params: object) -> GenerationParams:
    """Sampling parameters exactly as given: no coercion (``true`` is not a number, ``1.9`` is
    not an integer, ``"3"`` is neither). A ``max_new_tokens`` not given is the default lowered
    to ``GENERATION_MAX_NEW_TOKENS``: nobody asked for more, so a lower cap refuses nothing."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValidationError({"params": "params must be an object of sampling parameters."})
    known = set(GenerationParams.__dataclass_fields__)
    unknown = sorted(str(key) for key in set(params) - known)
    if unknown:
        raise ValidationError({"params": f"Unknown sampling parameters: {', '.join(unknown)}."})
    errors = {}
    for key, value in params.items():
        if key in INTEGER_PARAMS and not _is_integer(value):
            errors[key] = f"{key} must be an integer."
        elif key not in INTEGER_PARAMS and not _is_number(value):
            errors[key] = f"{key} must be a number."
    if errors:
        raise ValidationError(errors)
    typed = {
        key: (value if key in INTEGER_PARAMS else float(value)) for key, value in params.items()
    }
    typed.setdefault(
        "max_new_tokens",
        min(GenerationParams.max_new_tokens, settings.GENERATION_MAX_NEW_TOKENS),
    )
    generation_params = GenerationParams(**typed)
    errors = generation_params.validate(max_new_tokens_cap=settings.GENERATION_MAX_NEW_TOKENS)
    if errors:
        raise ValidationError(errors)
    return generation_params


def generation_params_validate(*, params: object) -> dict:
    """Sampling parameters checked as a generation request checks them (for settings stored
    ahead of any request, such as a project's); returns them as given."""
    _validated_params(params)
    return dict(params or {})


def turn_order_problem(messages: list, *, role: str) -> str:
    """Why ``messages`` (``{"role", ...}`` dicts) cannot be continued by a ``role`` turn (""
    when they can): after an optional system message, turns alternate from a user turn, and
    the turn asked for is the next one (chat templates refuse anything else, and a model would
    be asked to answer itself). Messages are named by their number in the list, from 1, the
    system message counted, as ``_validated_messages`` names them."""
    if not messages and role != "user":
        # Only a user turn can open a conversation, so only it may have an empty prefix.
        return NO_MESSAGES
    first_turn = 1 if messages[0]["role"] == "system" else 0
    for position, message in enumerate(messages[first_turn:], start=first_turn):
        expected = "user" if (position - first_turn) % 2 == 0 else "assistant"
        if message["role"] != expected:
            return (
                f"Message {position + 1} should be the {expected}'s turn, not the "
                f"{message['role']}'s: turns alternate from a user turn, after an optional first "
                "system message."
            )
    expected = "user" if (len(messages) - first_turn) % 2 == 0 else "assistant"
    if role != expected:
        return f"The next turn after these messages is the {expected}'s, not the {role}'s."
    return ""


def _validated_messages(messages: object, *, role: str) -> list[dict]:
    if not isinstance(messages, list):
        raise ValidationError({"messages": "Give at least one message."})
    if not messages and role != "user":
        raise ValidationError({"messages": NO_MESSAGES})
    if len(messages) > MAX_PREFIX_MESSAGES:
        raise ValidationError({"messages": f"At most {MAX_PREFIX_MESSAGES} messages."})
    cleaned = []
    # Numbered from 1, as a person counts them (and as ``turn_order_problem`` names them).
    for position, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            raise ValidationError({"messages": f"Message {position} must be an object."})
        message_role, content = message.get("role"), message.get("content")
        if not isinstance(message_role, str) or message_role not in {"system", "user", "assistant"}:
            raise ValidationError(
                {"messages": f"Message {position}: role must be system, user or assistant."}
            )
        if not isinstance(content, str) or len(content) > MAX_MESSAGE_CHARS:
            problem = f"content must be text of at most {MAX_MESSAGE_CHARS} characters"
            raise ValidationError({"messages": f"Message {position}: {problem}."})
        if not content.strip():
            # Every turn, a system turn's too, as a conversation's turn and an import have it.
            raise ValidationError({"messages": f"Message {position}: content may not be blank."})
        if problem := text_problem(content):
            raise ValidationError({"messages": f"Message {position}: content: {problem}"})
        cleaned.append({"role": message_role, "content": content})
    return cleaned


def generation_job_queue(job: GenerationJob) -> str:
    """A trainer waits for suggestions and the playground; everything else is bulk work."""
    if job.purpose in {GenerationJob.Purpose.SUGGESTION, GenerationJob.Purpose.PLAYGROUND}:
        return Queue.INTERACTIVE.value
    return Queue.GENERATION.value


class TooManyUnfinishedJobs(ValidationError):
    """A trainer asked for more generation jobs while ``GENERATION_MAX_UNFINISHED_PER_USER``
    of theirs wait or run: one person must not fill the queues the others' suggestions and
    ranking tasks need (the API answers it 429)."""

    http_status = 429


@contextlib.contextmanager
def _within_unfinished_cap(requested_by: AbstractBaseUser | None) -> Iterator[None]:
    """A transaction in which ``requested_by`` may add one unfinished generation job, or
    ``TooManyUnfinishedJobs``. The trainer's row stays locked until it commits, so requests
    made at once are counted one after another: none passes the cap on a count that misses
    another's job."""
    limit = settings.GENERATION_MAX_UNFINISHED_PER_USER
    with transaction.atomic():
        if requested_by is None or not limit or requested_by.is_staff:
            yield
            return
        # FOR NO KEY UPDATE: rows that merely point at the trainer are not held up.
        get_user_model().objects.select_for_update(no_key=True).filter(pk=requested_by.pk).exists()
        unfinished = (
            GenerationJob.objects.filter(requested_by=requested_by)
            .exclude(status__in=FINISHED)
            .count()
        )
        if unfinished >= limit:
            raise TooManyUnfinishedJobs(
                f"You have {unfinished} generation jobs waiting or running, the most one person "
                "may have: wait for them to finish, or cancel some."
            )
        yield


NO_DEFAULT_POLICY = (
    "No policy is active, and the configured default model cannot be registered or made active: "
    "an admin must promote a policy (the server's log says what is wrong with the default)."
)


def _default_policy() -> ModelVersion:
    """The active policy, registering SAMPLER_MODEL when there is none; a SAMPLER_MODEL that
    cannot be registered or made active is logged whole and refused without its path (trainers
    ask here, and never see where models are on the server)."""
    try:
        return model_version_ensure_default()
    except ValidationError as error:
        logger.error(
            "SAMPLER_MODEL cannot be registered or made active: %s", "; ".join(error.messages)
        )
        raise ValidationError({"model_version": NO_DEFAULT_POLICY}) from error


def generation_job_create(
    *,
    n: int,
    prefix_message: Message | None = None,
    messages: list[dict] | None = None,
    params: dict | None = None,
    seed: int | None = None,
    role: str = "assistant",
    purpose: str = GenerationJob.Purpose.MANUAL,
    requested_by: AbstractBaseUser | None = None,
    model_version: ModelVersion | None = None,
    project_id: int | None = None,
    queue: bool = True,
) -> GenerationJob:
    """Validate, record and (``queue``) publish a request for ``n`` completions of a prefix.

    Invalid input raises ``ValidationError`` before anything is stored, and so does a queued
    job asked for by a trainer who has too many unfinished (``TooManyUnfinishedJobs``).
    ``job.publication`` says what became of publishing it once the transaction committed: when
    the broker is down the job is kept, queued, and published by the outbox later.
    """
    if not _is_integer(n) or not 1 <= n <= settings.GENERATION_MAX_N:
        raise ValidationError(
            {"n": f"n must be an integer between 1 and {settings.GENERATION_MAX_N}."}
        )
    if role not in ROLES:
        raise ValidationError({"role": "role must be 'assistant' or 'user'."})
    if (prefix_message is None) == (messages is None):
        raise ValidationError({"prefix": "Give either a prefix message or a list of messages."})
    if seed is not None and not (_is_integer(seed) and 0 <= seed <= MAX_SEED):
        raise ValidationError({"seed": f"seed must be an integer between 0 and {MAX_SEED}."})
    generation_params = _validated_params(params)
    if prefix_message is not None:
        path = message_path(message=prefix_message)
        prompt_messages = [{"role": m.role, "content": m.content} for m in path]
        # A list of messages is checked as it is read; a stored path is checked here, after
        # its system messages (an import may open a conversation with several).
        turns = [message for message in prompt_messages if message["role"] != "system"]
        problem = turn_order_problem(turns, role=role)
        if problem:
            raise ValidationError({"role": problem})
    else:
        prompt_messages = _validated_messages(messages, role=role)
    version = model_version or _default_policy()
    if version.kind != ModelVersion.Kind.POLICY:
        raise ValidationError({"model_version": f"{version.name} is not a policy."})
    if role == "user" and version.backend == ModelVersion.Backend.OPENAI:
        raise ValidationError(
            {
                "role": (
                    f"{version.name} is served by a chat-completions server, which writes "
                    "assistant turns only."
                )
            }
        )
    if not (isinstance(params, dict) and "max_new_tokens" in params):
        # The default is no one's request: it is lowered to what this model's context leaves
        # for a reply, so that a policy with a short context still answers suggestions.
        generation_params = dataclasses.replace(
            generation_params,
            max_new_tokens=max_new_tokens_within(
                wanted=generation_params.max_new_tokens,
                context_length=version.context_length,
                cap=settings.GENERATION_MAX_NEW_TOKENS,
            ),
        )
    too_long = context_room_error(
        context_length=version.context_length, max_new_tokens=generation_params.max_new_tokens
    )
    if too_long:
        raise ValidationError({"max_new_tokens": too_long})
    with _within_unfinished_cap(requested_by if queue else None):
        job = GenerationJob.objects.create(
            model_version=version,
            prefix_message=prefix_message,
            prompt_messages=prompt_messages,
            role=role,
            n=n,
            params=generation_params.as_dict(),
            seed=seed if seed is not None else random.SystemRandom().randint(0, MAX_SEED),
            purpose=purpose,
            requested_by=requested_by,
            **({"project_id": project_id} if project_id is not None else {}),
        )
        job.publication = job_enqueue(job=job) if queue else None
    return job


# The sampling choices a one-turn prompt comes with, as the playground form and
# ``manage.py generate`` name them.
PROMPT_PARAMS = ("temperature", "top_p", "max_new_tokens")


def prompt_job_create(*, prompt: str, choices: Mapping[str, object], **options) -> GenerationJob:
    """A job sampling replies to one user turn: ``choices`` holds ``n``, ``seed`` and the
    ``PROMPT_PARAMS`` (the playground form's cleaned data, the command's options); ``options``
    go to ``generation_job_create`` as they are."""
    if not prompt.strip():
        raise ValidationError({"prompt": "Give the user turn to answer (it is empty)."})
    return generation_job_create(
        messages=[{"role": "user", "content": prompt}],
        n=choices["n"],
        params={name: choices[name] for name in PROMPT_PARAMS},
        seed=choices["seed"],
        **options,
    )


def _check_may_change(*, job: GenerationJob, user: AbstractBaseUser) -> None:
    if job.requested_by_id != user.pk and not is_admin(user):
        raise PermissionDenied(
            "Only the trainer who asked for this job (or an admin) can change it."
        )


def generation_job_cancel(*, job: GenerationJob, user: AbstractBaseUser) -> GenerationJob:
    _check_may_change(job=job, user=user)
    return job_cancel(job=job)


def generation_job_retry(*, job: GenerationJob, user: AbstractBaseUser) -> Publication:
    """Queue a failed or cancelled job again (same prefix, parameters and seed); it counts
    against its requester's unfinished jobs as a new one would."""
    _check_may_change(job=job, user=user)
    # A job that cannot be retried (queued, running, succeeded) is refused as such, not as one
    # past the cap; ``job_retry`` checks its state again under the row's lock.
    retryable = job.status in {JobStatus.FAILED, JobStatus.CANCELLED}
    with _within_unfinished_cap(job.requested_by if retryable else None):
        return job_retry(job=job)


# A model server that is down: the job is published again after this many seconds, doubling
# with each attempt (the openai client has already retried within the attempt).
BACKEND_RETRY_DELAY = 5.0
# Jobs due within this of now are batched together (a batch re-queued at once is due at once).
BATCH_DUE_SLACK = timedelta(seconds=1)


def _request(job: GenerationJob) -> GenerationRequest:
    return GenerationRequest(
        messages=job.prompt_messages,
        n=job.n,
        params=GenerationParams(**job.params),
        seed=job.seed,
        role=job.role,
    )


def _backend(version: ModelVersion) -> GenerationBackend:
    return backend_get(
        backend=version.backend,
        path=version.path,
        options=version.backend_options or {},
        device=settings.SAMPLER_DEVICE,
    )


def _generate(jobs: list[GenerationJob]) -> list[GenerationResult | Exception]:
    """Sample every job's completions in one backend call (the jobs share a model version):
    each job's result, or the refusal of its request alone (a server down or failing on it
    included; the requests after that one are not sent: ``RequestNotSent``). A call that fails
    as a whole (a backend that cannot be built, an engine that crashed) is the same failure for
    every job: each gets that error as its outcome. The time limit is the worker message's own,
    raised on."""
    try:
        return _backend(jobs[0].model_version).generate_many([_request(job) for job in jobs])
    except SoftTimeLimitExceeded:
        raise
    except Exception as error:
        return [error] * len(jobs)


def _job_error(error: BackendError, *, attempts: int) -> Exception:
    """What a backend's error means for the job: a server that is down puts it back in its
    queue (``JobRetryLater``, after a delay doubling with each attempt); a refusal fails it
    (``JobRefused`` when the request itself was refused: asked again, it would be again)."""
    if isinstance(error, BackendUnavailable):
        return JobRetryLater(str(error), delay=BACKEND_RETRY_DELAY * 2 ** max(0, attempts - 1))
    if isinstance(error, RequestRefused):
        return JobRefused(str(error))
    return JobError(str(error))


def _sample(
    version: ModelVersion, requests: list[GenerationRequest], *, attempts: int
) -> list[GenerationResult | BackendError]:
    try:
        return _backend(version).generate_many(requests)
    except BackendError as error:
        # The backend could not be built: every request alike.
        raise _job_error(error, attempts=attempts) from error


def _result(outcome: GenerationResult | Exception, *, attempts: int) -> GenerationResult:
    """A request's result, or the job error its refusal means, raised (any other error as
    it is: the executor records it on the job as on any job)."""
    if isinstance(outcome, BackendError):
        raise _job_error(outcome, attempts=attempts) from outcome
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def generation_replies(
    *,
    version: ModelVersion,
    prompts: list[list[dict]],
    params: GenerationParams,
    seed: int,
    attempts: int = 1,
) -> list[GenerationResult]:
    """One reply to each prompt from ``version``'s backend, in one call (prompt ``i`` sampled
    with seed ``seed + i``): what comparisons sample. Inside a job: a server that is down raises
    ``JobRetryLater``, any other refusal ``JobError``."""
    requests = [
        GenerationRequest(messages=messages, n=1, params=params, seed=seed + index)
        for index, messages in enumerate(prompts)
    ]
    return [
        _result(outcome, attempts=attempts)
        for outcome in _sample(version, requests, attempts=attempts)
    ]


def _waiting_with(job: GenerationJob) -> list[GenerationJob]:
    """Jobs for the same version waiting in the same queue behind ``job``, oldest first: a worker
    that batches (GENERATION_BATCH_JOBS > 1) runs them in the same backend call."""
    limit = settings.GENERATION_BATCH_JOBS - 1
    if limit < 1 or not job.queue:
        return []
    return list(
        GenerationJob.objects.filter(
            status=GenerationJob.Status.QUEUED,
            queue=job.queue,
            model_version_id=job.model_version_id,
            published_at__isnull=False,
            # Not one still waiting out its retry delay (its backoff kept), give or take the
            # moment that separates jobs queued together.
            queued_at__lte=timezone.now() + BATCH_DUE_SLACK,
        )
        .exclude(pk=job.pk)
        .select_related("model_version")
        .order_by("queued_at", "pk")[:limit]
    )


def _storable(result: GenerationResult) -> tuple[list[str], str]:
    """The completions' texts and the job's notes as a database can store them: a character
    it cannot (NUL, an unpaired surrogate) is replaced by U+FFFD, and the notes say where."""
    texts = [storable_text(completion.text) for completion in result.completions]
    notes = [storable_text(note) for note in result.notes]
    changed = [
        str(index)
        for index, (text, completion) in enumerate(zip(texts, result.completions, strict=True))
        if text != completion.text
    ]
    if changed:
        notes.append(
            f"The model wrote characters a database cannot store (NUL, unpaired surrogates) in "
            f"sample {', '.join(changed)}: they were replaced by U+FFFD."
        )
    return texts, "\n".join(notes)


def _store(
    context: JobContext,
    job: GenerationJob,
    result: GenerationResult,
    *,
    duration_ms: int,
    then: Callable[[GenerationJob, list[Sample]], None] | None,
    content_filter: ContentFilter | None,
    unjudged: bool,
) -> None:
    """Store one job's samples, filtered with ``content_filter`` (ready to run; None: filtering
    is off), with its success in one transaction; ``unjudged``: the filter cannot run, so they
    are stored waiting for it (``Sample.moderation_pending``), for the sweep to judge."""
    texts, notes = _storable(result)
    with transaction.atomic():
        if not context.succeed(notes=notes, duration_ms=duration_ms):
            raise JobCancelled(f"Generation job {job.pk} was cancelled while it ran.")
        samples = Sample.objects.bulk_create(
            [
                Sample(
                    job=job,
                    index=index,
                    text=text,
                    token_count=completion.token_count,
                    finish_reason=completion.finish_reason,
                    logprob_sum=completion.logprob_sum,
                    logprob_kind=result.logprob_kind,
                    moderation_pending=unjudged,
                )
                for index, (text, completion) in enumerate(
                    zip(texts, result.completions, strict=True)
                )
            ]
        )
        if content_filter is not None:
            # Filtered in the same transaction that shows them: no trainer sees an unfiltered
            # sample while the filter can run.
            samples_moderate(samples=samples, content_filter=content_filter)
        if then is not None:
            then(job, samples)


def generation_job_execute(
    context: JobContext,
    *,
    then: Callable[[GenerationJob, list[Sample]], None] | None = None,
) -> None:
    """Sample the claimed job's completions through its version's backend and store them,
    filtered, with the job's success in one transaction; ``then`` runs inside it too (e.g. a
    ranking task's candidates). Jobs of the same kind and version waiting in the same queue
    are claimed and sampled in the same backend call; each has its own outcome, stored in its
    own transaction: a request the backend refuses, or samples that cannot be stored, fail that
    job alone. A call that fails as a whole is every job's failure, recorded on each as on the
    job that claimed them (its attempt counted).

    A model server that is down or failing on a job's request puts that job back in its queue
    (``JobRetryLater``, after a delay doubling with its own attempts) until its attempts are
    spent; any other backend refusal fails it with the reason. The jobs batched after it were
    not sent: each goes back to its queue at once, its attempt not counted, and is first in the
    batch its own message runs (so a request the server fails every time costs its own job
    alone, and replies had before it are kept). A character a database cannot store in a
    sample (NUL, an unpaired surrogate) is replaced, with a note. A content filter that cannot
    run (``content_filter_ready``: the reason recorded and logged) loses no job: the samples
    are stored waiting for it (``Sample.moderation_pending``), and the sweep judges them once
    it runs again.
    """
    job = GenerationJob.objects.select_related("model_version").get(pk=context.job.pk)
    try:
        content_filter, unjudged = content_filter_ready(), False
    except ContentFilterUnavailable:
        # Recorded and logged: the jobs are not lost for it, their samples wait for the sweep.
        content_filter, unjudged = None, True
    filtering = {"then": then, "content_filter": content_filter, "unjudged": unjudged}
    with job_batch(context=context, candidates=_waiting_with(job)) as partners:
        jobs = [job] + [partner.job for partner in partners]
        started = time.monotonic()
        outcomes = _generate(jobs)
        duration_ms = int((time.monotonic() - started) * 1000)
        for partner, partner_job, outcome in zip(partners, jobs[1:], outcomes[1:], strict=True):
            if isinstance(outcome, RequestNotSent):
                # Never sent, so it costs no attempt: the server failed a job before it in
                # this call, which may be that job's own doing.
                job_hand_back(partner)
                continue
            with job_partner_step(context=partner):
                result = _result(outcome, attempts=partner_job.attempts)
                _store(partner, partner_job, result, duration_ms=duration_ms, **filtering)
    result = _result(outcomes[0], attempts=job.attempts)
    _store(context, job, result, duration_ms=duration_ms, **filtering)


def generation_job_run_inline(
    *, job_id: int, raise_retry_later: bool = False, raise_refused: bool = False
) -> GenerationJob:
    """Run the job in this process (the command line, tests, another job); recorded as on a
    worker. ``raise_retry_later``: a model server that is down raises ``JobRetryLater`` (after
    the job is failed with the reason), for a calling job to go back to its queue.
    ``raise_refused``: a request the backend refused for what it asks raises ``JobRefused``
    (after the job is failed with the reason), for a calling job to record it as such."""
    job_run_inline(
        job=GenerationJob.objects.get(pk=job_id),
        raise_retry_later=raise_retry_later,
        raise_refused=raise_refused,
    )
    return GenerationJob.objects.get(pk=job_id)
