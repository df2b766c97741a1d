"""Ranking tasks are prepared by a real worker: the pool fills, alternatives are sampled."""

import random

import pytest

from ranking.models import RankingTask
from ranking.rank import services
from ranking.rank.tasks import fill_ranking_pool
from tests.conftest import wait_until
from tests.ranking.conftest import finished_conversation

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_pool_filler_creates_tasks_that_the_worker_prepares(
    celery_worker, policy, other_trainer, settings
):
    # The worker runs with the default settings: pool of 20, K = 4 alternatives.
    for _ in range(3):
        finished_conversation(other_trainer)

    # The periodic task, run through the broker like beat would; fewer sources than the pool.
    fill_ranking_pool.delay()
    ready = wait_until(
        lambda: (
            RankingTask.objects.filter(status=RankingTask.Status.READY).count() == 3
            and list(RankingTask.objects.select_related("generation_job"))
        ),
    )
    for task in ready:
        assert task.candidates.count() == settings.RANKING_ALTERNATIVES + 1
        assert task.generation_job.status == "succeeded" and task.generation_job.worker

    # The pool is full: filling again makes nothing.
    assert services.ranking_pool_fill(rng=random.Random(0)) == 0
