"""The default policy registered while an admin promotes another one, on PostgreSQL.

A worker's first suggestion registers ``SAMPLER_MODEL`` and makes it active when no policy is
active. If it checked before the admin's promotion committed and activated after, the default
would replace the policy the admin chose. It waits for the promotion instead (the one-active-policy
constraint stands behind that), and the worker takes the admin's policy."""

import threading

import pytest
from django.db import connection

from sampler.registry.models import ModelVersion
from sampler.registry.services import (
    model_version_ensure_default,
    model_version_promote,
    model_version_register,
)
from tests.conftest import WAIT_SECONDS, racing, recording_thread

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OPENAI = {"base_url": "http://server:8000/v1", "model": "m", "api_key_env": "SERVER_API_KEY"}


def test_the_default_registered_while_an_admin_promotes_a_policy_leaves_the_admins_active(
    settings, micro_model_dir
):
    settings.SAMPLER_MODEL = str(micro_model_dir)
    chosen = model_version_register(
        name="chosen", path="", backend="openai", backend_options=OPENAI, context_length=64
    )
    outcome: dict[str, object] = {}
    worker = recording_thread(model_version_ensure_default, outcome, "version")
    with racing(worker, what="the default's registration"):
        # The promotion is under way: written, not yet committed.
        model_version_promote(version=chosen)

    assert "error" not in outcome, outcome
    assert outcome["version"] == chosen
    active = ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY, is_active=True)
    assert list(active) == [chosen]
    # Nothing of the default is left behind: it was registered only to be served.
    assert list(ModelVersion.objects.all()) == [chosen]


def test_two_default_registrations_at_once_make_one_active_version(settings, micro_model_dir):
    settings.SAMPLER_MODEL = str(micro_model_dir)
    start = threading.Barrier(2)
    results: list[object] = []

    def ensure_default() -> None:
        try:
            start.wait(timeout=WAIT_SECONDS)
            results.append(model_version_ensure_default())
        except Exception as error:
            results.append(repr(error))
        finally:
            connection.close()

    workers = [threading.Thread(target=ensure_default) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT_SECONDS)
    assert not any(worker.is_alive() for worker in workers)

    versions = list(ModelVersion.objects.all())
    assert len(versions) == 1 and versions[0].is_active
    assert results == [versions[0], versions[0]]
