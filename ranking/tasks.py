"""Celery doors to the ranking services."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from ranking import services

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def prepare_ranking_task(task_id: int) -> None:
    try:
        services.ranking_task_prepare(task_id=task_id)
    except (OperationalError, InterfaceError):
        raise
    except Exception as error:
        services.ranking_task_fail(task_id=task_id, error=f"{type(error).__name__}: {error}")
        raise


@shared_task
def fill_ranking_pool() -> int:
    return services.ranking_pool_fill()


@shared_task
def expire_ranking_leases() -> int:
    return services.leases_expire()


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def run_dataset_export(export_id: int) -> None:
    try:
        services.dataset_export_run(export_id=export_id)
    except (OperationalError, InterfaceError):
        raise
    except Exception as error:
        services.dataset_export_fail(export_id=export_id, error=f"{type(error).__name__}: {error}")
        raise
