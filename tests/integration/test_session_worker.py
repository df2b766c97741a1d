"""The run's Celery worker takes tasks only in the tests that ask for it: elsewhere it would
claim the jobs a test queued for itself, or hold row locks while the database is emptied."""

import pytest

from config.broker import queue_depths
from config.celery import Queue
from tests.conftest import WAIT_SECONDS
from tests.sampler.jobs.test_executor import _job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_the_runs_worker_takes_tasks_only_while_a_test_asks_for_it(
    request, session_celery_worker, policy, trainer
):
    assert session_celery_worker.queues_consumed() == set()
    _job(trainer)  # published to this run's Redis on commit: it stays there
    assert queue_depths(timeout=WAIT_SECONDS)[Queue.INTERACTIVE.value] == 1

    request.getfixturevalue("celery_worker")
    assert session_celery_worker.queues_consumed() == {queue.value for queue in Queue}
    # What earlier tests left in the queues is dropped, not run in this one.
    assert queue_depths(timeout=WAIT_SECONDS)[Queue.INTERACTIVE.value] == 0
