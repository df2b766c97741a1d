from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from accounts.roles import is_admin
from sampler.generation.models import GenerationJob
from sampler.jobs.selectors import job_queue_position
from sampler.moderation.selectors import moderation_results_shown_first


def generation_job_get(*, job_id: int, user: AbstractBaseUser) -> GenerationJob:
    """A job with its samples, each with its verdicts, the one shown first (the configured
    filter's, else the newest); trainers see their own jobs only (404 otherwise), admins all."""
    jobs = GenerationJob.objects.select_related("model_version").prefetch_related(
        Prefetch("samples__moderation_results", queryset=moderation_results_shown_first())
    )
    if not is_admin(user):
        jobs = jobs.filter(requested_by=user)
    return get_object_or_404(jobs, pk=job_id)


def generation_job_list(
    *, user: AbstractBaseUser, purpose: str, limit: int = 20
) -> QuerySet[GenerationJob]:
    """``user``'s own newest jobs made for ``purpose`` (a ``GenerationJob.Purpose``): the
    "Try the model" page lists what its user asked for there, not the suggestions written
    while editing, ranking alternatives, or anyone else's jobs (an admin opens those by
    number, ``generation_job_get``)."""
    jobs = GenerationJob.objects.select_related("model_version").filter(
        requested_by=user, purpose=purpose
    )
    return jobs.order_by("-created_at")[:limit]


def generation_job_queue_position(*, job: GenerationJob) -> int:
    """Jobs waiting ahead of ``job`` in its queue (0 once it runs)."""
    return job_queue_position(job=job)
