"""Where a training run puts what it writes: its model in a folder of its own right inside
MODEL_ROOT, its checkpoints under MODEL_ROOT/runs, and never one inside the other."""

import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ranking.exports.pipeline import write_jsonl
from sampler.registry.models import ModelVersion
from sampler.registry.services import model_version_register
from sampler.runs.models import TrainingRun
from sampler.training.synthetic import synthetic_demonstrations

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def model_root(settings, tmp_path) -> Path:
    settings.MODEL_ROOT = tmp_path / "root" / "models"
    return settings.MODEL_ROOT


@pytest.fixture
def demonstrations(tmp_path) -> Path:
    path = tmp_path / "demonstrations.jsonl"
    write_jsonl(iter(synthetic_demonstrations(6, seed=1)), path)
    return path


@pytest.mark.parametrize(
    ("base_name", "default_name"),
    [("Qwen/Qwen2.5-0.5B", "Qwen-Qwen2.5-0.5B"), ("../up", "up"), (".hidden", "hidden")],
)
def test_the_default_name_from_a_base_named_like_a_path_is_a_folder_inside_model_root(
    policy, demonstrations, model_root, base_name, default_name
):
    """Versions are often registered under their hub name (``org/model``); the new version's
    default name comes from it and becomes its folder in MODEL_ROOT."""
    # Stored as it is: the registry refuses ``../up`` and ``.hidden`` now, but a version named
    # so before it did is still in the table.
    ModelVersion.objects.create(name=base_name, path=policy.path, source="registered")
    call_command(
        "train_sft", "--data", str(demonstrations), "--base", base_name, "--queue",
        stdout=StringIO(), verbosity=0,
    )  # fmt: skip
    run = TrainingRun.objects.get()
    assert run.output_name == f"{default_name}-sft-run{run.pk}"
    folder = (Path(model_root) / run.output_name).resolve()
    assert folder.parent == Path(model_root).resolve()


def test_a_model_cannot_be_named_after_the_checkpoints_folder(policy, demonstrations, model_root):
    """MODEL_ROOT/runs holds every run's checkpoints: a model there would take in the next runs'
    checkpoints, and while its own run keeps checkpoints there it cannot be moved in place."""
    with pytest.raises(CommandError) as refused:
        call_command(
            "train_sft", "--data", str(demonstrations), "--name", "runs", "--queue",
            stdout=StringIO(), verbosity=0,
        )  # fmt: skip
    assert str(refused.value) == (
        "--name: runs is the folder of MODEL_ROOT that keeps the runs' checkpoints: choose "
        "another name."
    )
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("name", ["two\nlines", "tab\there", "nul\x00"])
def test_a_name_that_cannot_be_a_versions_is_refused_before_the_run_trains(
    policy, demonstrations, model_root, name
):
    """The output name becomes the model version's name, which is one line: a run given
    another trained to its end and then failed registering its version."""
    with pytest.raises(CommandError) as refused:
        call_command(
            "train_sft", "--data", str(demonstrations), "--name", name, "--queue",
            stdout=StringIO(), verbosity=0,
        )  # fmt: skip
    assert str(refused.value).startswith("--name: ")
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("command", ["train_sft", "train_ppo"])
def test_a_base_version_whose_folder_is_gone_is_refused_by_name(
    policy, demonstrations, tmp_path, command
):
    """A version's folder moved or deleted after it was registered: said as such, before any
    run exists, not as the hub's "Repo id must be in the form ..." from a failed run."""
    folder = tmp_path / "gone"
    shutil.copytree(policy.path, folder)
    model_version_register(name="gone", path=str(folder), source="registered")
    shutil.rmtree(folder)
    with pytest.raises(CommandError) as refused:
        call_command(
            command, "--data", str(demonstrations), "--base", "gone", "--queue",
            stdout=StringIO(), verbosity=0,
        )  # fmt: skip
    assert str(refused.value) == (
        f"--base: gone's folder {folder} holds no model (no config.json): was it moved or deleted?"
    )
    assert not TrainingRun.objects.exists()


def test_a_run_whose_base_folder_went_away_since_it_was_queued_fails_saying_so(
    policy, demonstrations, tmp_path
):
    folder = tmp_path / "gone"
    shutil.copytree(policy.path, folder)
    model_version_register(name="gone", path=str(folder), source="registered")
    call_command(
        "train_sft", "--data", str(demonstrations), "--base", "gone", "--queue",
        stdout=StringIO(), verbosity=0,
    )  # fmt: skip
    run = TrainingRun.objects.get()
    shutil.rmtree(folder)
    with pytest.raises(CommandError) as failed:
        call_command("train_sft", "--resume", str(run.pk), stdout=StringIO(), verbosity=0)
    message = f"gone's folder {folder} holds no model (no config.json): was it moved or deleted?"
    assert str(failed.value) == f"--base: {message}"
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and message in run.error
