from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from config.celery import Queue
from sampler.workers.services import worker_heartbeat_record
from tests.conftest import broker_at


@pytest.fixture
def memory_broker() -> Iterator[str]:
    """kombu's in-process broker: always up, nothing shared (unit tier)."""
    with broker_at("memory://"):
        yield "memory://"


def beat(name: str, queues: list[str], *, seconds_ago: float = 0.0):
    now = timezone.now()
    return worker_heartbeat_record(
        name=name,
        queues=queues,
        hostname="testhost",
        pid=4242,
        started_at=now - timedelta(hours=1),
        now=now - timedelta(seconds=seconds_ago),
    )


@pytest.fixture
def every_queue_served(db) -> None:
    for queue in Queue:
        beat(f"{queue.value}@testhost", [queue.value])
