"""Training runs as a kind of job for the executor (every training kind shares it)."""

from django.conf import settings

from config.celery import Queue
from sampler.jobs.kinds import JobKind, job_kind_register
from sampler.runs.models import TrainingRun
from sampler.runs.services import JOB_KIND, training_run_execute

TRAINING = job_kind_register(
    JobKind(
        name=JOB_KIND,
        model=TrainingRun,
        execute=training_run_execute,
        queue=Queue.TRAINING.value,
        time_limit=settings.TRAINING_TIME_LIMIT,
    )
)
