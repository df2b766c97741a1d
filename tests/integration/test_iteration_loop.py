"""One full iteration through the services and a real worker: rankings in the database ->
train_reward -> promote it -> train_ppo -> compare -> promote the new policy -> the next
ranking task is sampled from it."""

import random

import pytest
from django.core.exceptions import ValidationError

from accounts.services import user_create_trainer
from ranking.exports.filters import ExportFilters, split_of
from ranking.rank import services as ranking_services
from ranking.rank.services import RankingInput
from sampler.comparisons.models import ModelComparison
from sampler.comparisons.services import model_comparison_create
from sampler.generation.models import GenerationJob
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active
from sampler.registry.services import model_version_promote
from sampler.runs import services as training_services
from sampler.runs.models import TrainingRun
from tests.conftest import PASSWORD, wait_until
from tests.ranking.conftest import finished_conversation

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TEST_FRACTION = 0.3


def _finished(model, pk: int):
    row = model.objects.get(pk=pk)
    return row if row.is_finished else None


def _rank_everything(tasks, rankers) -> None:
    """Each ranker ranks every task: the longest reply first (a rule the RM can pick up)."""
    for ranker in rankers:
        for _ in tasks:
            assignment = ranking_services.task_claim_next(trainer=ranker)
            candidates = assignment.task.candidates.select_related("message")
            ordered = sorted(candidates, key=lambda c: (-len(c.message.content), c.pk))
            ranking_services.ranking_submit(
                assignment=assignment,
                trainer=ranker,
                ranking=RankingInput([[c.pk] for c in ordered]),
            )


def _filters_holding_out_a_ranking(tasks) -> ExportFilters:
    """A held-out fraction whose seed holds out some of the ranked conversations and trains on
    the others: a reward run that holds out none of its rankings is refused, and the
    conversations' ids (which the split hashes) are the database's."""
    ranked = {task.source_message.conversation_id for task in tasks}
    seed = next(
        seed
        for seed in range(1000)
        if len({split_of(pk, seed=seed, test_fraction=TEST_FRACTION) for pk in ranked}) == 2
    )
    return ExportFilters(test_fraction=TEST_FRACTION, split_seed=seed)


def test_one_iteration_collect_train_serve_collect(
    celery_worker, policy, other_trainer, admin_user, settings
):
    settings.RANKING_MAX_NEW_TOKENS = 12
    for index in range(8):
        finished_conversation(
            other_trainer, turns=(f"what did you do on day {index}?", f"i went out {index}.")
        )
    rng = random.Random(0)
    tasks = [
        ranking_services.ranking_task_create(rng=rng, alternatives=3, overlap=2, queue=False)
        for _ in range(6)
    ]
    for task in tasks:
        ranking_services.ranking_task_prepare(task_id=task.pk)
    assert {task.model_version_id for task in tasks} == {policy.pk}
    rankers = [user_create_trainer(username=f"ranker{i}", password=PASSWORD) for i in range(2)]
    _rank_everything(tasks, rankers)
    filters = _filters_holding_out_a_ranking(tasks)

    # Collect -> train: a reward model from the database's rankings, on the training queue.
    reward_run = training_services.training_run_create(
        kind="reward",
        config={"max_steps": 4, "batch_size": 2, "max_length": 64, "eval_every": 0},
        filters=filters,
        started_by=admin_user,
    )
    reward_run = wait_until(lambda: _finished(TrainingRun, reward_run.pk))
    assert reward_run.status == TrainingRun.Status.SUCCEEDED, reward_run.error + reward_run.log
    reward = reward_run.output_versions.get()
    model_version_promote(version=reward)

    # PPO against it (the active reward model), from the active policy.
    ppo_run = training_services.training_run_create(
        kind="ppo",
        config={"max_steps": 3, "batch_size": 4, "max_new_tokens": 12, "eval_prompts": 4},
        filters=filters,
        started_by=admin_user,
    )
    ppo_run = wait_until(lambda: _finished(TrainingRun, ppo_run.pk))
    assert ppo_run.status == TrainingRun.Status.SUCCEEDED, ppo_run.error + ppo_run.log
    assert ppo_run.worker and ppo_run.dataset["reward_version"]["id"] == reward.pk
    assert len(ppo_run.metrics["objective/kl"]) == 3
    new_policy = ppo_run.output_versions.get()
    assert new_policy.kind == ModelVersion.Kind.POLICY and new_policy.parent == policy
    assert model_version_active() == policy  # registered, not promoted

    # Compare (on the worker), then serve the new version. The reward model PPO optimised
    # against may not judge it: a second one (another seed) does.
    with pytest.raises(ValidationError, match="No reward model is independent"):
        model_comparison_create(version_a=new_policy, version_b=policy, filters=filters)
    judge_run = training_services.training_run_create(
        kind="reward",
        config={"max_steps": 4, "batch_size": 2, "max_length": 64, "eval_every": 0, "seed": 1},
        filters=filters,
        started_by=admin_user,
    )
    judge_run = wait_until(lambda: _finished(TrainingRun, judge_run.pk))
    assert judge_run.status == TrainingRun.Status.SUCCEEDED, judge_run.error + judge_run.log
    judge = judge_run.output_versions.get()
    comparison = model_comparison_create(
        version_a=new_policy, version_b=policy, prompts=8, max_new_tokens=12, filters=filters
    )
    assert comparison.reward_version == judge
    assert comparison.config["judge_data_overlaps"] == [reward.name]  # same rankings
    comparison = wait_until(lambda: _finished(ModelComparison, comparison.pk))
    assert comparison.status == ModelComparison.Status.SUCCEEDED, comparison.error
    assert 0.0 <= comparison.results["win_rate_a"] <= 1.0
    # Every prompt's two replies wait for trainers' side-by-side votes.
    assert comparison.items.count() == comparison.results["prompts"]
    model_version_promote(version=new_policy)
    assert model_version_active() == new_policy

    # Collect again: the next ranking task is sampled from the new version.
    finished_conversation(other_trainer, turns=("and what about today?", "nothing much."))
    task = ranking_services.ranking_task_create(
        rng=random.Random(1), alternatives=3, overlap=2, queue=False
    )
    assert task.model_version == new_policy
    task = ranking_services.ranking_task_prepare(task_id=task.pk)
    assert task.status == "ready" and task.model_version == new_policy
    job = GenerationJob.objects.get(pk=task.generation_job_id)
    assert job.model_version == new_policy and job.samples.count() == 3
    sampled = task.candidates.filter(is_source=False).select_related("message")
    assert {candidate.message.model_version_id for candidate in sampled} == {new_policy.pk}
