"""Celery doors to the sampler services: ids in, one service call, retry policy here."""

import logging
import socket

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError

from sampler import services

logger = logging.getLogger(__name__)

# Give up on a job that keeps getting redelivered (e.g. it kills its worker every time).
MAX_ATTEMPTS = 3


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=settings.GENERATION_TIME_LIMIT,
    time_limit=settings.GENERATION_TIME_LIMIT + 30,
)
def run_generation_job(job_id: int) -> None:
    from sampler.models import GenerationJob

    attempts = GenerationJob.objects.filter(pk=job_id).values_list("attempts", flat=True).first()
    if attempts is None:
        logger.warning("Generation job %s no longer exists", job_id)
        return
    if attempts >= MAX_ATTEMPTS:
        services.generation_job_fail(
            job_id=job_id, error=f"Gave up after {attempts} attempts (the worker died each time)."
        )
        return
    try:
        services.generation_job_run(job_id=job_id, worker=socket.gethostname())
    except SoftTimeLimitExceeded:
        services.generation_job_fail(
            job_id=job_id,
            error=f"Generation exceeded its {settings.GENERATION_TIME_LIMIT} s limit.",
        )
        raise
    except (OperationalError, InterfaceError):
        raise  # transient database trouble: autoretry
    except Exception as error:
        services.generation_job_fail(job_id=job_id, error=f"{type(error).__name__}: {error}")
        raise


@shared_task
def sweep_stale_generation_jobs() -> int:
    return services.generation_jobs_sweep_stale()


@shared_task(
    bind=True,
    acks_late=True,
    # A worker that dies mid-run gets the run redelivered: it resumes from its last checkpoint.
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def run_training(self, run_id: int) -> None:
    """Train one TrainingRun (no time limit: runs last as long as their data and steps)."""
    from sampler import ppo_services, training_services

    execute = (
        ppo_services.ppo_run_execute
        if ppo_services.is_ppo_run(run_id=run_id)
        else training_services.training_run_execute
    )
    try:
        execute(run_id=run_id, worker=socket.gethostname())
    except training_services.RunBusy:
        # Redelivered while the first worker may still be alive: look again once its heartbeat
        # would have gone stale, then take the run over from its checkpoint if it did.
        raise self.retry(countdown=training_services.HEARTBEAT_STALE_SECONDS) from None
    except training_services.RunCancelled:
        logger.info("Training run %s was cancelled", run_id)
    except (OperationalError, InterfaceError):
        raise  # transient database trouble: autoretry
    except Exception as error:
        # The service marked the run failed already; this covers errors before it started.
        training_services.training_run_fail(run_id=run_id, error=f"{type(error).__name__}: {error}")
        raise


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def run_model_comparison(comparison_id: int) -> None:
    """Head-to-head of two policy versions (queued on the gpu queue by the service)."""
    from sampler import ppo_services

    try:
        ppo_services.model_comparison_run(comparison_id=comparison_id)
    except (OperationalError, InterfaceError):
        raise  # transient database trouble: autoretry
    except Exception as error:
        ppo_services.model_comparison_fail(
            comparison_id=comparison_id, error=f"{type(error).__name__}: {error}"
        )
        raise
