"""Ranking tasks are prepared by a real worker: the pool fills, alternatives are sampled."""

import random

import pytest

from labeling.models import Conversation
from ranking.models import RankingTask
from ranking.projects.models import Project
from ranking.projects.services import project_create
from ranking.quality.selectors import (
    trainer_trust,
    trust_estimate_is_current,
    trust_estimate_latest,
    trust_stored,
)
from ranking.quality.tasks import refresh_trust
from ranking.rank import services
from ranking.rank.tasks import fill_ranking_pool
from tests.conftest import wait_until
from tests.ranking.conftest import (
    finished_conversation,
    model_version_create,
    quick_trainer,
    rank,
    reward_version_untrained,
    task_from_source,
)

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


def test_an_uncertainty_project_is_filled_and_scored_by_the_worker(
    celery_worker, policy, other_trainer, tmp_path
):
    """The periodic fill, through the broker: an uncertainty project's tasks are prepared held
    back (candidate_factor x its pool); the next fill scores them with the reward ensemble on
    the worker and offers the most disputed."""
    project = project_create(
        name="Uncertain",
        slug="uncertain",
        status=Project.Status.ACTIVE,
        selection=Project.Selection.UNCERTAINTY,
        pool_size=1,
        candidate_factor=3,
        exploration_share=0.0,
    )
    for index in range(4):
        conversation = finished_conversation(other_trainer, turns=(f"q {index}?", f"a {index}."))
        Conversation.objects.filter(pk=conversation.pk).update(project=project)
    reward_version_untrained(policy.path, tmp_path / "a", 0)
    reward_version_untrained(policy.path, tmp_path / "b", 1)

    fill_ranking_pool.delay()
    wait_until(
        lambda: (
            RankingTask.objects.filter(
                project=project, held_back=True, status=RankingTask.Status.READY
            ).count()
            == 3
        ),
        what="three held-back tasks prepared",
    )
    fill_ranking_pool.delay()
    wait_until(
        lambda: RankingTask.objects.filter(project=project, held_back=False).count() == 1,
        what="the most disputed task offered",
    )
    tasks = list(RankingTask.objects.filter(project=project).order_by("-uncertainty", "pk"))
    assert len(tasks) == 3
    assert all(task.uncertainty is not None and task.uncertainty > 0 for task in tasks)
    assert [task.held_back for task in tasks] == [False, True, True]


def test_the_periodic_trust_refresh_runs_on_the_worker(celery_worker, other_trainer):
    task = task_from_source(
        finished_conversation(other_trainer).messages.get(role="assistant"),
        model_version=model_version_create("v"),
    )
    rank(task, quick_trainer("r1"), [[0], [1], [2], [3]])
    rank(task, quick_trainer("r2"), [[0], [2], [1], [3]])
    refresh_trust.delay()
    estimate = wait_until(
        lambda: trust_estimate_latest(project_id=task.project_id), what="a stored estimate"
    )
    assert estimate.rankings == 2 and trust_estimate_is_current(estimate)
    assert trust_stored(estimate) == trainer_trust(project_ids=[task.project_id])
