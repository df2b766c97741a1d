"""The Celery doors to the executor: one task runs every kind of job, one keeps them moving."""

from celery import shared_task

from sampler.jobs import services


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job(kind: str, job_id: int, token: str) -> None:
    """Run one job; the row records every outcome, so this task never retries by itself (a
    job whose run hit transient trouble is queued again by the executor with a new token)."""
    services.job_execute(kind_name=kind, job_id=job_id, token=token)


@shared_task(ignore_result=True)
def jobs_tick() -> dict:
    """The outbox and the sweeper (every few seconds, from beat)."""
    return vars(services.jobs_tick())
