"""Creating training runs: where the trained model's folder will be."""

from pathlib import Path

import pytest

from ranking.exports.pipeline import write_jsonl
from sampler.registry.services import model_version_register
from sampler.runs import services as training_services
from sampler.training.synthetic import synthetic_rankings

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("base_name", ["HuggingFaceTB/SmolLM2-135M", "../../outside", ".hidden"])
def test_the_automatic_output_name_is_one_folder_inside_model_root_whatever_the_base_name(
    settings, tmp_path, micro_model_dir, base_name
):
    settings.MODEL_ROOT = tmp_path / "models"
    base = model_version_register(name=base_name, path=str(micro_model_dir))
    data = tmp_path / "rankings.jsonl"
    write_jsonl(iter(synthetic_rankings(4)), data)
    run = training_services.training_run_create(
        kind="reward",
        config={"normalize_to_demonstrations": False},
        base_version=base,
        data_path=str(data),
        queue=False,
    )
    # The name becomes the folder the run writes (MODEL_ROOT / output_name) and the version's
    # name: one plain folder name, as a given --name must be.
    assert Path(run.output_name).name == run.output_name
    assert not run.output_name.startswith(".")
    assert (Path(settings.MODEL_ROOT) / run.output_name).parent == Path(settings.MODEL_ROOT)
