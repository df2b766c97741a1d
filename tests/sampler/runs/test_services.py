"""Creating training runs: where the trained model's folder will be, and what queuing one says."""

from io import StringIO
from pathlib import Path
from unittest import mock

import pytest
from django.core.management import call_command
from kombu.exceptions import OperationalError as BrokerDown

from config.celery import app
from ranking.exports.pipeline import write_jsonl
from sampler.registry.models import ModelVersion
from sampler.registry.services import model_version_register
from sampler.runs import services as training_services
from sampler.runs.models import TrainingRun
from sampler.training.synthetic import synthetic_rankings

pytestmark = pytest.mark.django_db


def _reward_run_of(base: ModelVersion, tmp_path: Path) -> TrainingRun:
    """A reward run on ``base`` from a small rankings file, recorded and not queued."""
    data = tmp_path / "rankings.jsonl"
    write_jsonl(iter(synthetic_rankings(4)), data)
    return training_services.training_run_create(
        kind="reward",
        config={"normalize_to_demonstrations": False},
        base_version=base,
        data_path=str(data),
        queue=False,
    )


@pytest.mark.parametrize("base_name", ["HuggingFaceTB/SmolLM2-135M", "../../outside", ".hidden"])
def test_the_automatic_output_name_is_one_folder_inside_model_root_whatever_the_base_name(
    settings, tmp_path, micro_model_dir, base_name
):
    settings.MODEL_ROOT = tmp_path / "models"
    base = model_version_register(name="base", path=str(micro_model_dir))
    # Named as registration took any name before it checked them ("../../outside" and ".hidden"
    # are refused now; versions stored with them are kept).
    ModelVersion.objects.filter(pk=base.pk).update(name=base_name)
    base.refresh_from_db()
    run = _reward_run_of(base, tmp_path)
    # The name becomes the folder the run writes (MODEL_ROOT / output_name) and the version's
    # name: one plain folder name, as a given --name must be.
    assert Path(run.output_name).name == run.output_name
    assert not run.output_name.startswith(".")
    assert (Path(settings.MODEL_ROOT) / run.output_name).parent == Path(settings.MODEL_ROOT)


@pytest.mark.parametrize("letter", ["a", "\u6f22"])
def test_the_automatic_output_name_of_a_long_base_fits_a_version_name_and_stays_unique(
    settings, tmp_path, micro_model_dir, letter
):
    """A base named at the length a version's name may have (200) gave its runs an automatic
    name past it: the run's output name could not be stored on PostgreSQL, and the trained
    model could not be registered under it. Trimmed, it fits a version's name (and, in bytes,
    a folder's), and is still numbered past a version that has it in another letter case."""
    settings.MODEL_ROOT = tmp_path / "models"
    limit = ModelVersion._meta.get_field("name").max_length
    base = model_version_register(name=letter * limit, path=str(micro_model_dir))
    run = _reward_run_of(base, tmp_path)
    run.refresh_from_db()
    assert len(run.output_name) <= limit and len(run.output_name.encode()) <= 255
    assert run.output_name.endswith(f"-reward-run{run.pk}")
    assert run.output_name.startswith(letter * 80)
    registered = model_version_register(name=run.output_name, path=str(micro_model_dir))
    # A version already named as the next run's automatic name would be, in upper case.
    ModelVersion.objects.filter(pk=registered.pk).update(name=run.output_name.upper())

    again = training_services._automatic_output_name(base=base, kind="reward", run_id=run.pk)

    assert again.lower() != run.output_name.lower()
    assert again.endswith(f"-reward-run{run.pk}-2") and len(again) <= limit
    assert model_version_register(name=again, path=str(micro_model_dir)).name == again


@pytest.mark.django_db(transaction=True)
def test_a_run_queued_from_the_command_line_while_the_job_queue_is_down_says_so(
    settings, tmp_path, policy, monkeypatch
):
    settings.MODEL_ROOT = tmp_path / "models"
    monkeypatch.setattr(app, "send_task", mock.Mock(side_effect=BrokerDown("Connection refused")))
    data = tmp_path / "rankings.jsonl"
    write_jsonl(iter(synthetic_rankings(4)), data)
    out = StringIO()
    call_command(
        "train_reward",
        "--data",
        str(data),
        "--normalize-to-demonstrations",
        "no",
        "--queue",
        stdout=out,
    )
    run = TrainingRun.objects.get()
    # Kept, and started by the outbox once the queue is back; the command says as much, as the
    # Training page does, instead of reading as if a worker had it.
    assert run.status == TrainingRun.Status.QUEUED and run.published_at is None
    assert f"Training run {run.pk} is saved, but the job queue is unreachable" in out.getvalue()


def test_a_training_run_runs_inline_through_the_one_executor_as_every_job_kind(
    settings, tmp_path, micro_model_dir
):
    """``job_run_inline`` runs any job kind in this process, a training run included (the
    executor's own options, such as ``raise_retry_later``, are not the run's). Before, the
    training kind took every option as its own and failed the run with a TypeError."""
    from sampler.jobs.services import job_run_inline
    from sampler.registry.models import ModelVersion

    settings.MODEL_ROOT = tmp_path / "models"
    base = model_version_register(name="base", path=str(micro_model_dir))
    data = tmp_path / "rankings.jsonl"
    write_jsonl(iter(synthetic_rankings(4)), data)
    run = training_services.training_run_create(
        kind="reward",
        config={
            "max_steps": 1,
            "batch_size": 2,
            "max_length": 48,
            "test_fraction": 0.0,
            "normalize_to_demonstrations": False,
        },
        base_version=base,
        data_path=str(data),
        queue=False,
    )

    run = job_run_inline(job=run, raise_retry_later=True, raise_refused=True)

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert ModelVersion.objects.filter(training_run=run).exists()
