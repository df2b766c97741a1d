"""Comparisons as a kind of job for the executor."""

from django.conf import settings

from config.celery import Queue
from sampler.comparisons.models import ModelComparison
from sampler.comparisons.services import model_comparison_execute
from sampler.jobs.kinds import JobKind, job_kind_register

COMPARISON = job_kind_register(
    JobKind(
        "comparison",
        ModelComparison,
        model_comparison_execute,
        queue=Queue.GENERATION.value,
        time_limit=settings.COMPARISON_TIME_LIMIT,
    )
)
