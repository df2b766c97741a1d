from datetime import timedelta

from django.utils import timezone

from sampler.workers import services
from sampler.workers.models import WorkerHeartbeat
from tests.config.conftest import beat


def test_a_heartbeat_updates_the_workers_one_row(db):
    first = beat("w@h", ["interactive"], seconds_ago=30)
    second = beat("w@h", ["interactive", "default"])

    assert WorkerHeartbeat.objects.count() == 1
    assert second.pk == first.pk
    assert second.last_seen > first.last_seen
    assert second.queues == ["default", "interactive"]


def test_a_worker_that_shuts_down_removes_its_row_and_only_its_own(db):
    beat("a@h", ["interactive"])
    beat("b@h", ["interactive"])

    services.worker_heartbeat_remove(name="a@h")

    assert list(WorkerHeartbeat.objects.values_list("name", flat=True)) == ["b@h"]


def test_pruning_forgets_workers_silent_for_longer_than_asked(db):
    beat("recent@h", ["default"], seconds_ago=60)
    beat("old@h", ["default"], seconds_ago=2 * 86400)

    deleted = services.worker_heartbeats_prune(older_than=timedelta(days=1), now=timezone.now())

    assert deleted == 1
    assert list(WorkerHeartbeat.objects.values_list("name", flat=True)) == ["recent@h"]
