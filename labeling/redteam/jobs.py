"""Red-team re-runs as a kind of job for the executor."""

from django.conf import settings

from config.celery import Queue
from labeling.redteam.models import AttackRun
from labeling.redteam.services import attack_run_execute, attack_run_given_up, attack_run_retried
from sampler.jobs.kinds import JobKind, job_kind_register

ATTACK_RUN = job_kind_register(
    JobKind(
        "attack_run",
        AttackRun,
        attack_run_execute,
        queue=Queue.GENERATION.value,
        time_limit=settings.ATTACK_RUN_TIME_LIMIT,
        on_given_up=attack_run_given_up,
        on_retry=attack_run_retried,
    )
)
