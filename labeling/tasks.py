"""Celery doors to the labeling services: ids in, one service call, retry policy here."""

import logging
import socket

from celery import shared_task
from django.db import InterfaceError, OperationalError

from labeling.redteam import services as redteam_services

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    # A redelivered run resumes: results are stored once per attack and run.
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def run_attack_run(run_id: int) -> None:
    """Re-send the stored attacks of one AttackRun to its policy version (no time limit: a run
    lasts as long as its attacks take to generate)."""
    try:
        redteam_services.attack_run_execute(run_id=run_id, worker=socket.gethostname())
    except (OperationalError, InterfaceError):
        raise  # transient database trouble: autoretry
    except Exception as error:
        redteam_services.attack_run_fail(run_id=run_id, error=f"{type(error).__name__}: {error}")
        raise
