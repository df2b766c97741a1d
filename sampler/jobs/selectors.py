"""Reads across every kind of job: queue depths, positions, counts by state."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from django.db.models import Count

from config.celery import Queue
from sampler.jobs.kinds import job_kind_of, job_kinds, job_models
from sampler.jobs.models import Job, JobStatus
from sampler.workers.selectors import workers_live_by_queue


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


def jobs_count_by_kind() -> dict[str, dict[str, int]]:
    """Jobs of each kind (as the API and retry_job name it) by status, every status 0 included;
    kinds that share a table each count their own rows."""
    kinds = job_kinds()
    counts = {}
    for kind in kinds:
        rows = kind.model.objects.order_by()
        if kind.rows is not None:
            rows = rows.filter(kind.rows)
        for other in kinds:  # the kind a shared table falls back to counts what is left
            if kind.rows is None and other.model is kind.model and other.rows is not None:
                rows = rows.exclude(other.rows)
        by_status = dict.fromkeys(JobStatus.values, 0)
        for row in rows.values("status").annotate(total=Count("pk")):
            by_status[row["status"]] = row["total"]
        counts[kind.name] = by_status
    return counts


class JobsProgress(NamedTuple):
    # Whether one of the jobs may change by itself: running, or queued where a live worker
    # serves its queue. A page polls while it does.
    moving: bool
    # The queues in which some of them wait with no live worker serving them, by name: nothing
    # moves those jobs until one starts (a job waiting is never failed), so a page stops
    # polling for them and says so.
    queues_without_worker: list[str]
    # The queued ones a live worker's queue holds (published: an unpublished one waits for
    # the broker), which it takes in turn. A page says so in the part it polls: a message at
    # its top would stay once they ran.
    queued_for_worker: list[Job]
    # The queued ones whose message the broker has not taken yet (it was unreachable): the
    # outbox publishes them once it is back. A page says so in the part it polls, where the
    # note goes once they are published, as the queued ones' notes do.
    unpublished: list[Job]


def jobs_progress(*, jobs: Iterable[Job]) -> JobsProgress:
    """Whether any of ``jobs`` (of any kind, together) may change by itself, the queues
    where queued ones wait for no live worker (each job's queue is its kind's), the queued
    ones a live worker's queue holds, and the queued ones not published yet."""
    unfinished = [job for job in jobs if not job.is_finished]
    # A running job's queue is None: it moves whichever queue it came from.
    queues = [
        job_kind_of(job).queue_for(job) if job.status == JobStatus.QUEUED else None
        for job in unfinished
    ]
    live = workers_live_by_queue() if any(queues) else {}
    without = sorted({queue for queue in queues if queue is not None and not live.get(queue)})
    moving = any(queue not in without for queue in queues)
    queued_for_worker = [
        job
        for job, queue in zip(unfinished, queues, strict=True)
        if queue is not None and queue not in without and job.published_at is not None
    ]
    return JobsProgress(
        moving=moving,
        queues_without_worker=without,
        queued_for_worker=queued_for_worker,
        # A job run in the calling process (no queue) is never published, and not counted.
        unpublished=[
            job
            for job in unfinished
            if job.status == JobStatus.QUEUED and job.queue and job.published_at is None
        ],
    )
