from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.roles import is_admin
from sampler.generation.models import GenerationJob
from sampler.jobs.selectors import job_queue_position


def generation_job_get(*, job_id: int, user: AbstractBaseUser) -> GenerationJob:
    """A job with its samples; trainers see their own jobs only (404 otherwise), admins all."""
    jobs = GenerationJob.objects.select_related("model_version").prefetch_related(
        "samples__moderation_results"
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
