import pytest

from config.celery import Queue
from sampler.workers.selectors import worker_heartbeat_list, workers_live, workers_live_by_queue
from tests.config.conftest import beat


@pytest.mark.parametrize("seconds_ago, live", [(0, 1), (59, 1), (61, 0)])
def test_a_worker_is_live_while_its_last_heartbeat_is_younger_than_the_setting(
    db, settings, seconds_ago, live
):
    settings.WORKER_LIVE_SECONDS = 60
    beat("w@a", ["interactive"], seconds_ago=seconds_ago)

    assert workers_live_by_queue()["interactive"] == live


def test_live_workers_are_counted_per_queue_they_consume_with_every_queue_listed(db):
    beat("a@h", ["interactive", "generation"])
    beat("b@h", ["generation"])
    beat("gone@h", ["training"], seconds_ago=86400)
    beat("other@h", ["experiments"])

    assert workers_live_by_queue() == {
        Queue.INTERACTIVE: 1,
        Queue.GENERATION: 2,
        Queue.TRAINING: 0,
        Queue.DEFAULT: 0,
        "experiments": 1,
    }
    assert [worker.name for worker in workers_live()] == ["a@h", "b@h", "other@h"]
    assert [worker.name for worker in worker_heartbeat_list()] == [
        "a@h",
        "b@h",
        "gone@h",
        "other@h",
    ]
