"""Writes of the sampler app: the model registry and generation jobs."""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from labeling.models import Message
from labeling.selectors import message_path
from sampler.generation import GenerationParams, model_cache, sample_completions
from sampler.models import GenerationJob, ModelVersion, Sample
from sampler.moderation import samples_moderate

logger = logging.getLogger(__name__)

MAX_SEED = 2**31 - 1
ROLES = {"assistant", "user"}
# A prefix given as a list of messages (API, command line) is bounded like trainer input.
MAX_PREFIX_MESSAGES = 200
MAX_MESSAGE_CHARS = 20000


# ---- model registry ---------------------------------------------------------------------------


def model_version_register(
    *,
    name: str,
    path: str,
    kind: str = ModelVersion.Kind.POLICY,
    source: str = ModelVersion.Source.REGISTERED,
    parent: ModelVersion | None = None,
    training_run_id: int | None = None,
    metrics: dict | None = None,
    description: str = "",
) -> ModelVersion:
    local = Path(path)
    if local.is_absolute() and not (local / "config.json").is_file():
        raise ValidationError({"path": f"{path} is not a model directory (no config.json)."})
    version = ModelVersion(
        name=name,
        path=path,
        kind=kind,
        source=source,
        parent=parent,
        training_run_id=training_run_id,
        metrics=metrics or {},
        description=description,
    )
    version.full_clean()
    version.save()
    return version


@transaction.atomic
def model_version_promote(*, version: ModelVersion) -> ModelVersion:
    """Make ``version`` the one active version of its kind, in one atomic switch."""
    locked = list(ModelVersion.objects.select_for_update().filter(kind=version.kind).order_by("pk"))
    del locked  # the lock is what matters: concurrent promotions serialise here
    ModelVersion.objects.filter(kind=version.kind, is_active=True).exclude(pk=version.pk).update(
        is_active=False
    )
    now = timezone.now()
    ModelVersion.objects.filter(pk=version.pk).update(is_active=True, activated_at=now)
    version.refresh_from_db()
    logger.info("Promoted %s to active %s", version.name, version.kind)
    return version


@transaction.atomic
def model_version_ensure_default() -> ModelVersion:
    """Register ``SAMPLER_MODEL`` and make it active when no policy is active yet."""
    from sampler.selectors import model_version_active

    active = model_version_active()
    if active is not None:
        return active
    path = str(settings.SAMPLER_MODEL)
    is_embedded = Path(path).resolve() == Path(settings.EMBEDDED_MODEL_DIR).resolve()
    version = ModelVersion.objects.filter(path=path, kind=ModelVersion.Kind.POLICY).first()
    if version is None:
        name = Path(path).name if Path(path).exists() else path
        if ModelVersion.objects.filter(name=name).exists():
            name = f"{name}-{ModelVersion.objects.count() + 1}"
        version = model_version_register(
            name=name,
            path=path,
            source=ModelVersion.Source.EMBEDDED if is_embedded else ModelVersion.Source.CONFIGURED,
            description="Registered from SAMPLER_MODEL.",
        )
    return model_version_promote(version=version)


# ---- generation jobs --------------------------------------------------------------------------


def _validated_params(params: dict | None) -> GenerationParams:
    raw = dict(params or {})
    known = set(GenerationParams.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValidationError({"params": f"Unknown sampling parameters: {', '.join(unknown)}."})
    try:
        typed = {
            key: (int(value) if key in {"top_k", "max_new_tokens"} else float(value))
            for key, value in raw.items()
        }
    except (TypeError, ValueError) as error:
        raise ValidationError(
            {"params": f"Sampling parameters must be numbers ({error})."}
        ) from error
    generation_params = GenerationParams(**typed)
    errors = generation_params.validate(max_new_tokens_cap=settings.GENERATION_MAX_NEW_TOKENS)
    if errors:
        raise ValidationError(errors)
    return generation_params


def _validated_messages(messages: list[dict], *, role: str) -> list[dict]:
    # Only a user turn can open a conversation, so only it may have an empty prefix.
    if not isinstance(messages, list) or (not messages and role != "user"):
        raise ValidationError({"messages": "Give at least one message."})
    if len(messages) > MAX_PREFIX_MESSAGES:
        raise ValidationError({"messages": f"At most {MAX_PREFIX_MESSAGES} messages."})
    cleaned = []
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValidationError({"messages": f"Message {position} must be an object."})
        role, content = message.get("role"), message.get("content")
        if role not in {"system", "user", "assistant"}:
            raise ValidationError(
                {"messages": f"Message {position}: role must be system, user or assistant."}
            )
        if not isinstance(content, str) or len(content) > MAX_MESSAGE_CHARS:
            problem = f"content must be text of at most {MAX_MESSAGE_CHARS} characters"
            raise ValidationError({"messages": f"Message {position}: {problem}."})
        cleaned.append({"role": role, "content": content})
    return cleaned


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
    queue: bool = True,
) -> GenerationJob:
    """Validate, record and queue a request for ``n`` completions of a conversation prefix.

    Invalid input raises ``ValidationError`` before anything is queued.
    """
    if not isinstance(n, int) or not 1 <= n <= settings.GENERATION_MAX_N:
        raise ValidationError({"n": f"n must be between 1 and {settings.GENERATION_MAX_N}."})
    if role not in ROLES:
        raise ValidationError({"role": "role must be 'assistant' or 'user'."})
    if (prefix_message is None) == (messages is None):
        raise ValidationError({"prefix": "Give either a prefix message or a list of messages."})
    if seed is not None and not (isinstance(seed, int) and 0 <= seed <= MAX_SEED):
        raise ValidationError({"seed": f"seed must be an integer between 0 and {MAX_SEED}."})
    generation_params = _validated_params(params)
    prompt_messages = (
        [{"role": m.role, "content": m.content} for m in message_path(message=prefix_message)]
        if prefix_message is not None
        else _validated_messages(messages, role=role)
    )
    version = model_version or model_version_ensure_default()
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
    )
    if queue:
        from config.celery import Queue
        from sampler.tasks import run_generation_job

        # A trainer waits for suggestions; everything else is bulk work.
        interactive = purpose == GenerationJob.Purpose.SUGGESTION
        queue_name = (Queue.INTERACTIVE if interactive else Queue.GENERATION).value
        transaction.on_commit(lambda: run_generation_job.apply_async((job.pk,), queue=queue_name))
    return job


def _job_claim(*, job_id: int, worker: str) -> GenerationJob | None:
    """Mark the job running; None when it already finished (a re-delivered task)."""
    with transaction.atomic():
        job = (
            GenerationJob.objects.select_for_update().select_related("model_version").get(pk=job_id)
        )
        if job.is_finished:
            return None
        job.status = GenerationJob.Status.RUNNING
        job.started_at = job.started_at or timezone.now()
        job.attempts += 1
        job.worker = worker[:200]
        job.save(update_fields=["status", "started_at", "attempts", "worker"])
    return job


def generation_job_run(*, job_id: int, worker: str = "") -> GenerationJob:
    """Sample the job's completions and store them once, however often this runs."""
    job = _job_claim(job_id=job_id, worker=worker)
    if job is None:
        return GenerationJob.objects.get(pk=job_id)
    started = time.monotonic()
    loaded = model_cache.get(job.model_version.path, device=settings.SAMPLER_DEVICE)
    completions, prepared = sample_completions(
        loaded,
        job.prompt_messages,
        n=job.n,
        params=GenerationParams(**job.params),
        seed=job.seed,
        role=job.role,
    )
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().get(pk=job_id)
        if job.status == GenerationJob.Status.SUCCEEDED:
            return job
        try:
            with transaction.atomic():
                Sample.objects.bulk_create(
                    [
                        Sample(
                            job=job,
                            index=index,
                            text=completion.text,
                            token_count=completion.token_count,
                            finish_reason=Sample.FinishReason.END_OF_TURN
                            if completion.finished
                            else Sample.FinishReason.LENGTH,
                            logprob_sum=completion.logprob_sum,
                        )
                        for index, completion in enumerate(completions)
                    ]
                )
        except IntegrityError:
            # Another run of the same job stored its samples first; same seed, same texts.
            logger.warning("Samples of job %s were already stored; keeping the first copy", job_id)
        # Filtered in the same transaction that shows them: no trainer sees an unfiltered sample.
        samples_moderate(samples=list(job.samples.all()))
        job.status = GenerationJob.Status.SUCCEEDED
        job.notes = "\n".join(prepared.notes)
        job.error = ""
        job.finished_at = timezone.now()
        job.duration_ms = int((time.monotonic() - started) * 1000)
        job.save(update_fields=["status", "notes", "error", "finished_at", "duration_ms"])
    return job


def generation_job_fail(*, job_id: int, error: str) -> None:
    GenerationJob.objects.filter(pk=job_id).exclude(status=GenerationJob.Status.SUCCEEDED).update(
        status=GenerationJob.Status.FAILED, error=error[:5000], finished_at=timezone.now()
    )


def generation_jobs_sweep_stale(*, older_than_seconds: int | None = None) -> int:
    """Fail jobs that stayed queued or running past the limit (lost worker, killed process)."""
    limit = (
        older_than_seconds if older_than_seconds is not None else settings.GENERATION_STALE_AFTER
    )
    cutoff = timezone.now() - timedelta(seconds=limit)
    return GenerationJob.objects.filter(
        status__in=[GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING],
        created_at__lt=cutoff,
    ).update(
        status=GenerationJob.Status.FAILED,
        error=f"No worker finished this job within {limit} seconds; it was marked failed.",
        finished_at=timezone.now(),
    )
