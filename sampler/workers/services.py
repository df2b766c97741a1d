from datetime import datetime, timedelta

from django.utils import timezone

from sampler.workers.models import WorkerHeartbeat


def worker_heartbeat_record(
    *,
    name: str,
    queues: list[str],
    hostname: str,
    pid: int,
    started_at: datetime,
    now: datetime | None = None,
) -> WorkerHeartbeat:
    """Store that worker ``name`` is alive now and consumes ``queues``."""
    heartbeat, _ = WorkerHeartbeat.objects.update_or_create(
        name=name,
        defaults={
            "queues": sorted(queues),
            "hostname": hostname,
            "pid": pid,
            "started_at": started_at,
            "last_seen": now or timezone.now(),
        },
    )
    return heartbeat


def worker_heartbeat_remove(*, name: str) -> None:
    """A worker that shuts down cleanly says so at once rather than by going silent."""
    WorkerHeartbeat.objects.filter(name=name).delete()


def worker_heartbeats_prune(*, older_than: timedelta, now: datetime | None = None) -> int:
    """Forget workers silent for ``older_than`` (killed ones never remove their row; container
    hostnames change with every start). Returns how many rows went."""
    cutoff = (now or timezone.now()) - older_than
    deleted, _ = WorkerHeartbeat.objects.filter(last_seen__lt=cutoff).delete()
    return deleted
