"""A model version's name is one version's whatever its letter case: every door that names a
version refuses another's in any case with one sentence, automatic names take a free one, and a
name typed in another case finds its version."""

import json
from io import StringIO
from pathlib import Path
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.urls import reverse

from config.celery import app
from ranking.exports.pipeline import write_jsonl
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active, model_version_ids_by_name
from sampler.registry.services import (
    MODEL_VERSION_NAME_RULE,
    model_version_ensure_default,
    model_version_register,
)
from sampler.runs import services as training_services
from sampler.runs.models import TrainingRun
from sampler.training.synthetic import synthetic_rankings
from tests.conftest import model_version_admin_fields

TAKEN = "A model version named micro already exists; names that differ only in letter case are one."


def test_registering_a_name_another_version_has_in_another_case_is_refused(policy, micro_model_dir):
    with pytest.raises(ValidationError) as refused:
        model_version_register(name="MICRO", path=str(micro_model_dir))
    assert refused.value.message_dict == {"name": [TAKEN]}
    with pytest.raises(ValidationError) as exact:
        model_version_register(name="micro", path=str(micro_model_dir))
    assert exact.value.message_dict == {"name": ["A model version named micro already exists."]}
    assert list(ModelVersion.objects.values_list("name", flat=True)) == ["micro"]


def test_the_database_refuses_a_name_another_version_has_in_another_case(policy):
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(name="Micro", path=policy.path)


def test_the_api_refuses_a_name_another_version_has_in_another_case(admin_client_, policy):
    response = admin_client_.post(
        "/api/model-versions/",
        json.dumps({"name": "Micro", "path": policy.path}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {"name": [TAKEN]}
    assert ModelVersion.objects.count() == 1


def test_the_admin_refuses_to_add_or_rename_a_version_to_another_ones_name_in_any_case(
    admin_client_, policy, micro_model_dir
):
    added = admin_client_.post(
        reverse("admin:sampler_modelversion_add"), model_version_admin_fields(policy, name="MICRO")
    )
    assert added.status_code == 200  # the form again, with its error
    assert added.context["adminform"].form.errors == {"name": [TAKEN]}
    assert ModelVersion.objects.count() == 1

    other = model_version_register(name="other", path=str(micro_model_dir))
    url = reverse("admin:sampler_modelversion_change", args=[other.pk])
    renamed = admin_client_.post(url, model_version_admin_fields(other, name="Micro"))
    assert renamed.status_code == 200
    assert renamed.context["adminform"].form.errors == {"name": [TAKEN]}
    other.refresh_from_db()
    assert other.name == "other"
    # Its own name in another case is no other version's.
    kept = admin_client_.post(url, model_version_admin_fields(other, name="Other"))
    assert kept.status_code == 302
    other.refresh_from_db()
    assert other.name == "Other"
    # A name that could not be a folder, as every door refuses it.
    climbing = admin_client_.post(url, model_version_admin_fields(other, name="../evil"))
    assert climbing.context["adminform"].form.errors == {"name": [MODEL_VERSION_NAME_RULE]}


def _rankings(tmp_path: Path) -> str:
    data = tmp_path / "rankings.jsonl"
    write_jsonl(iter(synthetic_rankings(4)), data)
    return str(data)


def _reward_run(tmp_path: Path, **fields) -> TrainingRun:
    return training_services.training_run_create(
        kind="reward",
        config={"normalize_to_demonstrations": False},
        data_path=_rankings(tmp_path),
        queue=False,
        **fields,
    )


def test_a_runs_output_name_another_version_has_in_another_case_is_refused(
    policy, settings, tmp_path
):
    settings.MODEL_ROOT = tmp_path / "models"
    with pytest.raises(ValidationError) as refused:
        _reward_run(tmp_path, base_version=policy, output_name="MICRO")
    assert refused.value.message_dict == {"output_name": [TAKEN]}
    assert not TrainingRun.objects.exists()


def test_a_runs_automatic_name_another_version_has_in_another_case_is_numbered(
    policy, settings, tmp_path, micro_model_dir
):
    settings.MODEL_ROOT = tmp_path / "models"
    first = _reward_run(tmp_path, base_version=policy)
    assert first.output_name == f"micro-reward-run{first.pk}"
    # The next run's name, taken by a version in another case (ids come one after another).
    model_version_register(name=f"MICRO-REWARD-RUN{first.pk + 1}", path=str(micro_model_dir))
    second = _reward_run(tmp_path, base_version=policy)
    assert second.pk == first.pk + 1
    assert second.output_name == f"micro-reward-run{second.pk}-2"


def test_the_sampler_models_version_takes_a_name_free_in_any_case(db, settings, micro_model_dir):
    ModelVersion.objects.create(name=micro_model_dir.name.upper(), path="/elsewhere")
    settings.SAMPLER_MODEL = str(micro_model_dir)
    version = model_version_ensure_default()
    assert version.name == f"{micro_model_dir.name}-2"


def test_a_name_typed_in_another_case_finds_its_version(policy, micro_model_dir, tmp_path):
    other = model_version_register(name="Tiny-SFT", path=str(micro_model_dir))
    out = StringIO()
    call_command("promote", "tiny-sft", stdout=out)
    assert "Tiny-SFT is now the active" in out.getvalue()
    assert model_version_active() == other
    # One version, named twice in two cases, is one id.
    assert model_version_ids_by_name(names=["TINY-SFT", "tiny-sft", "Micro"]) == (
        other.pk,
        policy.pk,
    )
    with pytest.raises(ValidationError, match="Unknown model version: nope"):
        model_version_ids_by_name(names=["nope", "micro"])


def test_a_training_commands_base_typed_in_another_case_finds_its_version(
    policy, micro_model_dir, settings, tmp_path, monkeypatch
):
    settings.MODEL_ROOT = tmp_path / "models"
    monkeypatch.setattr(app, "send_task", mock.Mock())
    other = model_version_register(name="Tiny-SFT", path=str(micro_model_dir))
    call_command(
        "train_reward",
        "--data",
        _rankings(tmp_path),
        "--base",
        "TINY-sft",
        "--normalize-to-demonstrations",
        "no",
        "--queue",
        stdout=StringIO(),
    )
    assert TrainingRun.objects.get().base_version == other
