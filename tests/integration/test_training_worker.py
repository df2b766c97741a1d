"""A training run through a real Celery worker, a Redis broker and PostgreSQL."""

import json
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification

from ranking.exports.filters import ExportFilters
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active
from sampler.runs import services as training_services
from sampler.runs.models import TrainingRun
from sampler.training.synthetic import synthetic_rankings
from tests.conftest import wait_until
from tests.ranking.conftest import finished_conversation

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _finished(run_id: int) -> TrainingRun | None:
    run = TrainingRun.objects.get(pk=run_id)
    return run if run.is_finished else None


def test_a_reward_run_queued_on_the_training_queue_is_trained_by_a_worker(
    celery_worker, policy, admin_user, tmp_path
):
    data = tmp_path / "rankings.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rankings(40, k=3, seed=4)))
    run = training_services.training_run_create(
        kind="reward",
        config={
            "max_steps": 4,
            "batch_size": 4,
            "max_length": 48,
            "eval_every": 2,
            "normalize_to_demonstrations": False,
        },
        data_path=str(data),
        started_by=admin_user,
    )
    done = wait_until(lambda: _finished(run.pk))
    assert done.status == TrainingRun.Status.SUCCEEDED, done.error + done.log
    assert done.worker and done.progress == 1.0
    assert [point[0] for point in done.metrics["accuracy/eval"]] == [2, 4]
    version = done.output_versions.get()
    assert version.kind == ModelVersion.Kind.REWARD and not version.is_active
    assert model_version_active() == policy
    model = AutoModelForSequenceClassification.from_pretrained(version.path)
    assert model.config.num_labels == 1 and Path(version.path).is_dir()


def test_a_run_that_breaks_on_the_worker_is_failed_and_changes_nothing(
    celery_worker, policy, tmp_path, trainer
):
    finished_conversation(trainer)  # something to train on: a run with nothing is refused
    # A folder with a config.json (a missing folder is refused when the run is made) and no
    # model in it.
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    broken = ModelVersion.objects.create(name="broken", path=str(tmp_path / "broken"))
    run = training_services.training_run_create(
        kind="sft",
        base_version=broken,
        config={"max_steps": 1},
        filters=ExportFilters(test_fraction=0.0),
    )
    done = wait_until(lambda: _finished(run.pk))
    assert done.status == TrainingRun.Status.FAILED and done.error
    assert not done.output_versions.exists() and model_version_active() == policy
