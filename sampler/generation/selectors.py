from collections.abc import Iterable
from typing import NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from accounts.roles import is_admin
from sampler.generation.models import GenerationJob
from sampler.jobs.kinds import job_kind_of
from sampler.jobs.models import JobStatus
from sampler.jobs.selectors import job_queue_position
from sampler.moderation.selectors import moderation_results_shown_first
from sampler.workers.selectors import workers_live_by_queue


def generation_job_get(*, job_id: int, user: AbstractBaseUser) -> GenerationJob:
    """A job with its samples, each with its verdicts, the one shown first (the configured
    filter's, else the newest); trainers see their own jobs only (404 otherwise), admins all."""
    jobs = GenerationJob.objects.select_related("model_version").prefetch_related(
        Prefetch("samples__moderation_results", queryset=moderation_results_shown_first())
    )
    if not is_admin(user):
        jobs = jobs.filter(requested_by=user)
    return get_object_or_404(jobs, pk=job_id)


def generation_job_list(*, user: AbstractBaseUser, limit: int = 20) -> QuerySet[GenerationJob]:
    jobs = GenerationJob.objects.select_related("model_version")
    if not is_admin(user):
        jobs = jobs.filter(requested_by=user)
    return jobs.order_by("-created_at")[:limit]


def generation_job_queue_position(*, job: GenerationJob) -> int:
    """Jobs waiting ahead of ``job`` in its queue (0 once it runs)."""
    return job_queue_position(job=job)


class JobsProgress(NamedTuple):
    # Whether one of the jobs may change by itself: running, or queued where a live worker
    # serves its queue.
    moving: bool
    # The queues in which some of them wait with no live worker serving them, by name: nothing
    # moves those jobs until one starts (a job waiting is never failed).
    queues_without_worker: list[str]


def generation_jobs_progress(*, jobs: Iterable[GenerationJob]) -> JobsProgress:
    """Whether any of ``jobs`` may change by itself, and where queued ones wait for no worker."""
    unfinished = [job for job in jobs if not job.is_finished]
    queued = {
        job.pk: job_kind_of(job).queue_for(job)
        for job in unfinished
        if job.status == JobStatus.QUEUED
    }
    live = workers_live_by_queue() if queued else {}
    without = sorted({queue for queue in queued.values() if not live.get(queue)})
    moving = any(job.pk not in queued or queued[job.pk] not in without for job in unfinished)
    return JobsProgress(moving=moving, queues_without_worker=without)
