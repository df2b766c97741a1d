"""Preparing a ranking task (sampling its alternatives) as a kind of job for the executor: a
generation job of purpose ``ranking`` that also makes the task's candidates."""

from django.conf import settings
from django.db.models import Q

from config.celery import Queue
from ranking.rank.services import (
    ranking_task_preparation_given_up,
    ranking_task_preparation_retried,
    ranking_task_prepare_execute,
)
from sampler.generation.models import GenerationJob
from sampler.jobs.kinds import JobKind, job_kind_register

RANKING_PREPARATION = job_kind_register(
    JobKind(
        "ranking_preparation",
        GenerationJob,
        ranking_task_prepare_execute,
        queue=Queue.GENERATION.value,
        time_limit=settings.GENERATION_TIME_LIMIT,
        matches=lambda job: job.purpose == GenerationJob.Purpose.RANKING,
        rows=Q(purpose=GenerationJob.Purpose.RANKING),
        on_given_up=ranking_task_preparation_given_up,
        on_retry=ranking_task_preparation_retried,
    )
)
