from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.services import user_create_trainer

PASSWORD = "a-Strong-test-passw0rd"


@pytest.fixture(scope="session")
def micro_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny, random) chat model with the project's tokenizer and template, built once."""
    from sampler.embedded.build import build_micro_model

    return build_micro_model(tmp_path_factory.mktemp("micro-model"), seed=0)


@pytest.fixture
def trainer(db):
    return user_create_trainer(username="tess", password=PASSWORD)


@pytest.fixture
def other_trainer(db):
    return user_create_trainer(username="otto", password=PASSWORD)


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser(username="ada", password=PASSWORD, email="")


@pytest.fixture
def plain_user(db):
    """Logged in, but in no role."""
    return get_user_model().objects.create_user(username="nobody", password=PASSWORD)


@pytest.fixture
def trainer_client(trainer) -> Client:
    client = Client()
    client.force_login(trainer)
    return client


@pytest.fixture
def admin_client_(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def policy(db, micro_model_dir):
    """The micro model registered as the active policy."""
    from sampler.services import model_version_promote, model_version_register

    version = model_version_register(name="micro", path=str(micro_model_dir), source="registered")
    return model_version_promote(version=version)
