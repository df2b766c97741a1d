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
    from sampler.registry.services import model_version_promote, model_version_register

    version = model_version_register(name="micro", path=str(micro_model_dir), source="registered")
    return model_version_promote(version=version)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, micro_model_dir):
    """A real Celery worker process, consuming the broker from CELERY_BROKER_URL (Redis in the
    integration tier) and writing to this test session's database."""
    import os
    import subprocess
    import sys
    import time
    import uuid

    from django.conf import settings
    from django.db import connection

    from config.celery import app

    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        pytest.fail(
            "The worker tests need CELERY_BROKER_URL=redis://... (run them via `make test`)."
        )
    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.fail("The worker tests need DATABASE_URL=postgres://... (run them via `make test`).")
    import redis

    redis.Redis.from_url(broker).flushdb()
    database_url = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SAMPLER_MODEL": str(micro_model_dir),
        # Models trained by the worker go next to the test model, not into the repository's var/.
        "MODEL_ROOT": str(Path(micro_model_dir).parent / "worker-models"),
    }
    name = f"test-{uuid.uuid4().hex[:8]}@%h"
    log = open(Path(micro_model_dir).parent / "worker.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            "interactive,generation,training,default",
            "--concurrency",
            "1",
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.close()
            pytest.fail("The Celery worker did not start:\n" + (Path(log.name).read_text()[-3000:]))
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def wait_until(predicate, *, timeout: float = 60.0, interval: float = 0.2):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
