"""Where a training run puts what it writes: its model in a folder of its own right inside
MODEL_ROOT, its checkpoints under MODEL_ROOT/runs, and never one inside the other."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ranking.exports.pipeline import write_jsonl
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
    model_version_register(name=base_name, path=policy.path, source="registered")
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
