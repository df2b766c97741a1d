"""Uncertainty selection: the spread of an ensemble's pairwise preferences, the selection rule,
and a project that prepares more tasks than it offers."""

import math
import random

import pytest
import torch
from django.utils import timezone

from labeling.models import Conversation
from ranking.models import Assignment, RankingTask
from ranking.projects.models import Project
from ranking.projects.selectors import project_progress
from ranking.projects.services import project_create
from ranking.rank import services
from ranking.rank.selectors import ranking_pool_wanted
from ranking.selection.services import ranking_tasks_select
from sampler.models import ModelVersion
from sampler.training.uncertainty import RewardHeadEnsemble, pairwise_spread, select_uncertain
from tests.ranking.conftest import (
    finished_conversation,
    quick_trainer,
    reward_version_untrained,
    task_from_source,
)


def test_spread_is_the_mean_std_of_the_models_pairwise_preferences():
    # One pair: P(0 before 1) is 0.5 for one model and sigmoid(ln 3) = 0.75 for the other:
    # population sd 0.125.
    assert pairwise_spread([[0.0, 0.0], [math.log(3), 0.0]]) == pytest.approx(0.125)
    # Models that agree (whatever their offsets) do not disagree.
    assert pairwise_spread([[1.0, 0.0, 2.0], [3.0, 2.0, 4.0]]) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        pairwise_spread([[0.0, 1.0]])


def test_selection_takes_the_most_uncertain_and_a_random_exploration_share():
    uncertainties = [0.1, 0.9, 0.5, 0.3, 0.7]
    chosen = select_uncertain(uncertainties, 4, exploration_share=0.25, rng=random.Random(0))
    assert chosen[:3] == [1, 4, 2] and chosen[3] in {0, 3}
    assert select_uncertain(uncertainties, 2, exploration_share=0.0, rng=random.Random(0)) == [1, 4]
    explored = {
        tuple(
            sorted(select_uncertain(uncertainties, 2, exploration_share=1.0, rng=random.Random(s)))
        )
        for s in range(20)
    }
    assert len(explored) > 1  # all random: not always the top two
    assert sorted(
        select_uncertain(uncertainties, 9, exploration_share=0.5, rng=random.Random(0))
    ) == [
        0,
        1,
        2,
        3,
        4,
    ]


def test_reward_head_ensemble_learns_a_linear_rule_and_disagrees_off_its_data():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(200, 4, generator=generator)
    truth = features[:, 0]
    orderings = []
    for start in range(0, 100, 4):
        rows = list(range(start, start + 4))
        orderings.append([[row] for row in sorted(rows, key=lambda row: -truth[row].item())])
    ensemble = RewardHeadEnsemble(members=4).fit(features, orderings, seed=0)
    scores = ensemble.scores(features)
    assert scores.shape == (4, 200)
    held_out = range(100, 200)
    pairs = [(a, b) for a in held_out for b in held_out if a < b]
    right = sum(
        ((scores.mean(0)[a] - scores.mean(0)[b]) * (truth[a] - truth[b])).item() > 0
        for a, b in pairs
    )
    assert right / len(pairs) > 0.9


@pytest.fixture
def uncertain_project(db):
    return project_create(
        name="Uncertain",
        slug="uncertain",
        status=Project.Status.ACTIVE,
        selection=Project.Selection.UNCERTAINTY,
        pool_size=2,
        candidate_factor=3,
        exploration_share=0.0,
    )


@pytest.mark.django_db
def test_an_uncertainty_project_prepares_more_than_it_offers_and_offers_the_most_disputed(
    policy, other_trainer, uncertain_project, tmp_path, settings
):
    settings.RANKING_MAX_NEW_TOKENS = 8
    for index in range(8):
        conversation = finished_conversation(other_trainer, turns=(f"q {index}?", f"a {index}."))
        conversation.__class__.objects.filter(pk=conversation.pk).update(project=uncertain_project)
    # The pool is 2, the factor 3: six tasks are prepared, held back, never offered as such.
    assert services.ranking_pool_fill(rng=random.Random(0)) == 6
    assert RankingTask.objects.filter(held_back=True).count() == 6
    for task in RankingTask.objects.all():
        services.ranking_task_prepare(task_id=task.pk)
    trainer = quick_trainer("t")
    assert services.task_claim_next(trainer=trainer) is None
    reward_version_untrained(policy.path, tmp_path / "a", 0)
    reward_version_untrained(policy.path, tmp_path / "b", 1)
    assert ranking_tasks_select(project=uncertain_project, rng=random.Random(0)) == 2
    tasks = list(RankingTask.objects.order_by("-uncertainty"))
    assert all(task.uncertainty is not None and task.uncertainty > 0 for task in tasks)
    assert {t.pk for t in tasks if not t.held_back} == {tasks[0].pk, tasks[1].pk}
    assert services.task_claim_next(trainer=trainer).task in tasks[:2]
    # The extra generation shows in the project's progress: 4 prepared tasks wait.
    assert project_progress(project=uncertain_project).tasks_held == 4
    # Full pool: nothing more is released.
    assert ranking_tasks_select(project=uncertain_project) == 0


@pytest.mark.django_db
def test_without_two_reward_models_selection_falls_back_to_random(other_trainer, uncertain_project):
    version = ModelVersion.objects.create(name="v", path="v")
    for index in range(4):
        conversation = finished_conversation(other_trainer, turns=(f"q{index}?", f"a{index}."))
        task = task_from_source(conversation.messages.get(role="assistant"), model_version=version)
        RankingTask.objects.filter(pk=task.pk).update(project=uncertain_project, held_back=True)
    assert ranking_tasks_select(project=uncertain_project, rng=random.Random(0)) == 2
    assert RankingTask.objects.filter(held_back=False).count() == 2
    assert not RankingTask.objects.filter(uncertainty__isnull=False).exists()


@pytest.mark.django_db
def test_selection_neither_counts_nor_releases_the_tasks_of_a_discarded_conversation(
    other_trainer, uncertain_project
):
    version = ModelVersion.objects.create(name="v", path="v")
    tasks = []
    for index in range(5):
        conversation = finished_conversation(other_trainer, turns=(f"q{index}?", f"a{index}."))
        task = task_from_source(conversation.messages.get(role="assistant"), model_version=version)
        RankingTask.objects.filter(pk=task.pk).update(project=uncertain_project, held_back=True)
        tasks.append(task)
    # The first was offered, the second still held back; their writer discarded both since.
    RankingTask.objects.filter(pk=tasks[0].pk).update(held_back=False)
    Conversation.objects.filter(
        pk__in=[task.source_message.conversation_id for task in tasks[:2]]
    ).update(status=Conversation.Status.DISCARDED)

    # The pool (2) offers none of them: two of the finished conversations' tasks are released.
    assert ranking_tasks_select(project=uncertain_project, rng=random.Random(0)) == 2
    released = set(RankingTask.objects.filter(held_back=False).values_list("pk", flat=True))
    assert released - {tasks[0].pk} <= {task.pk for task in tasks[2:]}
    assert RankingTask.objects.get(pk=tasks[1].pk).held_back


@pytest.mark.django_db
def test_an_uncertainty_project_offers_as_many_tasks_as_its_trainers_want(
    other_trainer, uncertain_project, settings
):
    """The pool grows with the trainers ranking (``ranking_pool_wanted``), and the tasks an
    uncertainty project offers with it: prepared ``candidate_factor`` times that many, it
    offered only its pool size, and its trainers drained it between two fills."""
    settings.RANKING_TASKS_PER_ACTIVE_TRAINER = 3
    version = ModelVersion.objects.create(name="v", path="v")
    tasks = []
    for index in range(9):
        conversation = finished_conversation(other_trainer, turns=(f"q{index}?", f"a{index}."))
        task = task_from_source(conversation.messages.get(role="assistant"), model_version=version)
        RankingTask.objects.filter(pk=task.pk).update(project=uncertain_project, held_back=True)
        tasks.append(task)
    # Two trainers took a task of the project just now: it wants 3 open tasks for each.
    RankingTask.objects.filter(pk=tasks[0].pk).update(
        held_back=False, status=RankingTask.Status.COMPLETE
    )
    for name in ("one", "two"):
        Assignment.objects.create(
            task=tasks[0],
            trainer=quick_trainer(name),
            status=Assignment.Status.SUBMITTED,
            expires_at=timezone.now(),
        )
    assert ranking_pool_wanted(project=uncertain_project) == 6

    services.ranking_pool_fill(project=uncertain_project, rng=random.Random(0))

    offered = RankingTask.objects.filter(
        project=uncertain_project, held_back=False, status=RankingTask.Status.READY
    )
    assert offered.count() == 6
