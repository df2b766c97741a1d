from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from config.celery import Queue
from sampler.workers.models import WorkerHeartbeat


def worker_heartbeat_list() -> list[WorkerHeartbeat]:
    """Every worker that has written a heartbeat (live or not), by name."""
    return list(WorkerHeartbeat.objects.order_by("name"))


def workers_live(*, now: datetime | None = None) -> list[WorkerHeartbeat]:
    """Workers whose last heartbeat is younger than ``WORKER_LIVE_SECONDS``."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.WORKER_LIVE_SECONDS)
    return list(WorkerHeartbeat.objects.filter(last_seen__gte=cutoff).order_by("name"))


def workers_live_by_queue(*, now: datetime | None = None) -> dict[str, int]:
    """Live workers per queue: every queue of ``config.celery.Queue`` (0 when none consumes
    it), plus any other queue a live worker reports."""
    counts = {queue.value: 0 for queue in Queue}
    for worker in workers_live(now=now):
        for queue in worker.queues:
            counts[queue] = counts.get(queue, 0) + 1
    return counts
