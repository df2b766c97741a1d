"""A comparison's held-out split against what the compared policies' training held out: the
largest fraction every run of their lineages held out, with their seed; larger, or another seed,
is refused naming the run; policies with no recorded run are not checked."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from ranking.exports.filters import ExportFilters
from ranking.exports.models import DatasetExport
from sampler.comparisons.forms import ComparisonForm
from sampler.comparisons.models import ModelComparison
from sampler.comparisons.selectors import lineage_held_out
from sampler.comparisons.services import model_comparison_create
from sampler.registry.models import ModelVersion
from sampler.runs.models import TrainingRun
from tests.ranking.conftest import conversation_in_split

pytestmark = pytest.mark.django_db


@pytest.fixture
def folder(tmp_path):
    """A model folder per name (a config.json is all the checks look for)."""

    def make(name: str) -> str:
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text("{}")
        return str(path)

    return make


@pytest.fixture
def judge(folder):
    return ModelVersion.objects.create(name="rm-judge", kind="reward", path=folder("rm-judge"))


@pytest.fixture
def held_out_prompt(trainer):
    """A conversation held out at the smallest fraction these tests train with (so at every
    larger one too: the same hash under a higher threshold)."""
    return conversation_in_split(trainer, filters=ExportFilters(test_fraction=0.05))


@pytest.fixture
def trained(folder):
    """A policy made by a training run that split this database's conversations (or, with
    ``dataset``, read what the run's dataset says)."""

    def make(name, *, test_fraction=0.1, split_seed=0, parent=None, kind="ppo", dataset=None):
        filters = ExportFilters(test_fraction=test_fraction, split_seed=split_seed)
        run = TrainingRun.objects.create(
            kind=kind,
            dataset=dataset or {"source": "database", "filters": filters.as_dict()},
            status=TrainingRun.Status.SUCCEEDED,
        )
        return ModelVersion.objects.create(
            name=name,
            path=folder(name),
            parent=parent,
            training_run=run,
            source=ModelVersion.Source.TRAINED,
        )

    return make


@pytest.fixture
def policies(trained):
    """sft (held out 0.1) -> ppo (held out 0.05); other (held out 0.1)."""
    sft = trained("sft", kind="sft", test_fraction=0.1)
    ppo = trained("ppo", test_fraction=0.05, parent=sft)
    return sft, ppo, trained("other", test_fraction=0.1)


def _compare(version_a, version_b, judge, **arguments) -> ModelComparison:
    return model_comparison_create(
        version_a=version_a, version_b=version_b, reward_version=judge, queue=False, **arguments
    )


def test_two_policies_trained_at_0_1_and_0_05_are_compared_at_0_05(trained, judge, held_out_prompt):
    sft = trained("sft", kind="sft", test_fraction=0.1)
    ppo = trained("ppo", test_fraction=0.05, parent=sft)
    other = trained("other", test_fraction=0.1)
    assert lineage_held_out(versions=[ppo, other]).test_fraction == 0.05

    comparison = _compare(ppo, other, judge)

    assert comparison.config["filters"]["test_fraction"] == 0.05
    held_out = comparison.config["held_out"]
    assert (held_out["test_fraction"], held_out["split_seed"]) == (0.05, 0)
    assert held_out["chosen_by"] == "lineage" and held_out["checked"]
    runs = {(run["policy"], run["version"], run["test_fraction"]) for run in held_out["runs"]}
    assert runs == {("ppo", "ppo", 0.05), ("ppo", "sft", 0.1), ("other", "other", 0.1)}


def test_a_fraction_larger_than_a_run_held_out_is_refused_naming_the_policy_and_run(
    policies, judge, held_out_prompt
):
    sft, ppo, other = policies

    with pytest.raises(ValidationError) as refused:
        _compare(ppo, other, judge, test_fraction=0.1)

    message = " ".join(refused.value.message_dict["test_fraction"])
    assert f"ppo was trained by PPO run {ppo.training_run_id} (which made ppo)" in message
    assert "held out 0.05" in message and "choose at most 0.05" in message
    # The runs that held out 0.1 did not train on what 0.1 holds out.
    assert f"run {sft.training_run_id}" not in message
    assert not ModelComparison.objects.exists()
    # Within it, a smaller fraction is fine.
    assert _compare(ppo, other, judge, test_fraction=0.05).config["held_out"]["checked"]


def test_a_split_seed_other_than_the_training_runs_is_refused(trained, judge, trainer):
    conversation_in_split(trainer, filters=ExportFilters(test_fraction=0.1, split_seed=3))
    seeded = trained("seeded", split_seed=3)
    also = trained("also", split_seed=3)

    with pytest.raises(ValidationError) as refused:
        _compare(seeded, also, judge, split_seed=0)
    message = " ".join(refused.value.message_dict["split_seed"])
    assert f"seeded was trained by PPO run {seeded.training_run_id}" in message
    assert "split seed 3" in message and "use split seed 3" in message

    # Left out, the seed is the runs' own.
    comparison = _compare(seeded, also, judge)
    assert comparison.config["filters"]["split_seed"] == 3


def test_policies_trained_with_different_seeds_cannot_be_compared_honestly(
    trained, judge, held_out_prompt
):
    zero = trained("zero", split_seed=0)
    three = trained("three", split_seed=3)

    with pytest.raises(ValidationError) as refused:
        _compare(zero, three, judge)

    message = " ".join(refused.value.message_dict["split_seed"])
    assert f"three was trained by PPO run {three.training_run_id}" in message
    assert "no seed holds out the same conversations for all of them" in message


def test_imported_policies_keep_the_default_and_any_fraction(folder, judge, held_out_prompt):
    """No recorded run: nothing to check against, as before."""
    imported = ModelVersion.objects.create(name="imported", path=folder("imported"))
    other = ModelVersion.objects.create(name="imported-2", path=folder("imported-2"))
    assert lineage_held_out(versions=[imported, other]).test_fraction is None

    default = _compare(imported, other, judge)
    larger = _compare(imported, other, judge, test_fraction=0.5)

    assert default.config["filters"]["test_fraction"] == ExportFilters().test_fraction
    assert default.config["held_out"]["chosen_by"] == "default"
    assert not default.config["held_out"]["checked"]
    assert larger.config["filters"]["test_fraction"] == 0.5


def test_a_run_trained_on_an_export_is_checked_against_the_exports_split(
    trained, judge, held_out_prompt, admin_user, tmp_path
):
    exported = tmp_path / "export-1-demonstrations.jsonl"
    exported.write_text("")
    DatasetExport.objects.create(
        format="demonstrations",
        filters=ExportFilters(test_fraction=0.05).as_dict(),
        file_path=str(exported),
        created_by=admin_user,
        status=DatasetExport.Status.SUCCEEDED,
    )
    from_export = trained(
        "from-export", kind="sft", dataset={"source": "file", "path": str(exported.resolve())}
    )
    other = trained("other", test_fraction=0.1)

    with pytest.raises(ValidationError, match="from-export was trained by Supervised"):
        _compare(from_export, other, judge, test_fraction=0.1)
    assert _compare(from_export, other, judge).config["filters"]["test_fraction"] == 0.05


def test_a_run_trained_on_an_uploaded_file_is_recorded_as_not_checked(
    trained, judge, held_out_prompt, tmp_path
):
    """An upload's records carry whatever split their writer gave them: this database cannot
    know what it held out, so the comparison says so instead of refusing or pretending."""
    uploaded = tmp_path / "upload.jsonl"
    uploaded.write_text("")
    from_upload = trained("from-upload", dataset={"source": "file", "path": str(uploaded)})
    other = trained("other", test_fraction=0.1)

    comparison = _compare(from_upload, other, judge, test_fraction=0.1)

    held_out = comparison.config["held_out"]
    assert [run["policy"] for run in held_out["runs"]] == ["other"]
    assert held_out["unchecked"] == [
        f"from-upload: PPO run {from_upload.training_run_id} (which made from-upload) trained "
        "on a file this database did not export"
    ]


# ---- the Compare form on the Models page ------------------------------------------------------


def _post(client, version_a, version_b, judge, **fields):
    data = {
        "version_a": version_a.pk,
        "version_b": version_b.pk,
        "reward_version": judge.pk,
        "prompts": 4,
        "max_new_tokens": 8,
        **fields,
    }
    return client.post(reverse("sampler:comparison-start"), data)


def test_the_compare_form_defaults_to_the_lineages_fraction_and_shows_the_check(
    admin_client_, trained, judge, held_out_prompt
):
    ppo = trained("ppo", test_fraction=0.05)
    other = trained("other", test_fraction=0.1)

    response = _post(admin_client_, ppo, other, judge, test_fraction="", split_seed="")

    assert response.status_code == 302, response.content.decode()[:2000]
    comparison = ModelComparison.objects.get()
    assert comparison.config["filters"]["test_fraction"] == 0.05
    page = admin_client_.get(reverse("sampler:models")).content.decode()
    assert (
        f"held out 0.05 (split seed 0): checked against PPO run {ppo.training_run_id}, "
        f"PPO run {other.training_run_id}"
    ) in page


def test_the_compare_form_refuses_a_larger_fraction_naming_the_run(
    admin_client_, trained, judge, held_out_prompt
):
    ppo = trained("ppo", test_fraction=0.05)
    other = trained("other", test_fraction=0.1)

    response = _post(admin_client_, ppo, other, judge, test_fraction="0.1")

    assert response.status_code == 422
    page = response.content.decode()
    assert f"ppo was trained by PPO run {ppo.training_run_id} (which made ppo)" in page
    assert "choose at most 0.05" in page
    assert not ModelComparison.objects.exists()


def test_the_compare_form_leaves_the_split_blank_for_the_lineage_to_fill():
    """A fixed initial value (0.1) would be posted back as asked for, and refused for a policy
    trained at 0.05: blank asks for the policies' own."""
    form = ComparisonForm()
    for name in ("test_fraction", "split_seed"):
        assert form[name].value() is None and not form.fields[name].required
        assert "placeholder" in form.fields[name].widget.attrs


def test_with_no_held_out_prompt_at_the_lineages_fraction_only_more_data_is_advised(
    trained, judge, trainer
):
    """Advice to choose a larger fraction would be refused for these policies: it is left out."""
    conversation_in_split(trainer, split="train", filters=ExportFilters(test_fraction=0.05))
    ppo = trained("ppo", test_fraction=0.05)
    other = trained("other", test_fraction=0.1)

    with pytest.raises(ValidationError) as refused:
        _compare(ppo, other, judge)

    message = " ".join(refused.value.message_dict["test_fraction"])
    assert "held-out fraction of 0.05 does not hold out the only prompt" in message
    assert "Add more conversations (the policies' training held out only 0.05" in message
    assert "choose a larger" not in message
