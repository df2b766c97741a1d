import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from sampler.registry.models import ModelVersion
from sampler.registry.services import (
    model_version_ensure_default,
    model_version_promote,
    model_version_register,
)


def test_register_rejects_a_local_path_that_is_not_a_model(db, tmp_path):
    with pytest.raises(ValidationError):
        model_version_register(name="empty", path=str(tmp_path))


def test_promotion_keeps_exactly_one_active_policy(policy, micro_model_dir):
    newer = model_version_register(name="micro-2", path=str(micro_model_dir), parent=policy)
    model_version_promote(version=newer)
    active = ModelVersion.objects.filter(kind="policy", is_active=True)
    assert list(active) == [newer]
    with pytest.raises(IntegrityError):
        ModelVersion.objects.filter(pk=policy.pk).update(is_active=True)


def test_ensure_default_registers_sampler_model_once(db, settings, micro_model_dir):
    settings.SAMPLER_MODEL = str(micro_model_dir)
    first = model_version_ensure_default()
    second = model_version_ensure_default()
    assert first == second and first.is_active and first.source == "configured"
    assert ModelVersion.objects.count() == 1
