"""Reads across every kind of job: queue depths, positions, counts by state."""

from __future__ import annotations

from collections import Counter

from django.db.models import Count

from config.celery import Queue
from sampler.jobs.kinds import job_models
from sampler.jobs.models import Job, JobStatus


def job_queue_position(*, job: Job) -> int:
    """How many jobs wait in the same queue ahead of ``job`` (0: it is next, or running)."""
    if job.status != JobStatus.QUEUED or not job.queue or job.queued_at is None:
        return 0
    return sum(
        model.objects.filter(
            status=JobStatus.QUEUED, queue=job.queue, queued_at__lt=job.queued_at
        ).count()
        for model in job_models()
    )


def queue_depths() -> dict[str, int]:
    """Queued jobs per queue, every kind together (jobs run in line are not counted): every
    queue of ``config.celery.Queue`` (0 when nothing waits), plus any other queue a job names."""
    depths: Counter[str] = Counter({queue.value: 0 for queue in Queue})
    for model in job_models():
        rows = (
            model.objects.filter(status=JobStatus.QUEUED)
            .exclude(queue="")
            .values_list("queue", flat=True)
        )
        depths.update(rows)
    return dict(depths)


def jobs_by_state() -> dict[str, dict[str, int]]:
    """Job counts by table (``app_label.model``) and status."""
    return {
        model._meta.label_lower: {
            row["status"]: row["total"]
            for row in model.objects.values("status").annotate(total=Count("id")).order_by()
        }
        for model in job_models()
    }
