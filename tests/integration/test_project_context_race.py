"""A project's save racing a promotion, on PostgreSQL.

A project's save checks its ``max_new_tokens`` against the context of the active policy; a
promotion checks the projects that would sample from the new policy against its context. Run
together, each read what the other had not yet committed: both passed, and the project was
left asking for a ``max_new_tokens`` its active policy has no room for (every fill of its pool
refused). They take turns instead, and the second sees what the first committed."""

import pytest
from django.core.exceptions import ValidationError

from ranking.projects.models import Project
from ranking.projects.services import project_create, project_update
from sampler.registry.models import ModelVersion
from sampler.registry.services import model_version_promote, model_version_serving_update
from tests.conftest import racing, recording_thread, served_version

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOO_LONG = {"max_new_tokens": 256}
SHORT_CONTEXT = "short: max_new_tokens=256 leaves less than 16 tokens for the prompt"


def _thread(work, outcome: dict):
    """``work`` on a connection of its own: its result under "done", its refusal's sentences
    under "refused"."""
    return recording_thread(
        work, outcome, "done", refusal=(ValidationError, lambda error: " ".join(error.messages))
    )


@pytest.mark.parametrize("save", ["update", "create"])
@pytest.mark.parametrize("active", ["wide", None])
def test_a_project_save_racing_a_promotion_waits_and_is_checked_against_the_new_policy(
    active, save
):
    """The promotion is under way (written, not committed) when a project is saved: with
    another policy active, or none (the project was checked against no context)."""
    if active:
        served_version("wide", 4096, active=True)
    short = served_version("short", 256)
    project = project_create(name="Long", slug="long", sampling_params={"max_new_tokens": 200})
    saves = {
        "update": lambda: project_update(project=project, sampling_params=TOO_LONG).pk,
        "create": lambda: project_create(name="New", slug="new", sampling_params=TOO_LONG).pk,
    }
    outcome: dict = {}
    saver = _thread(saves[save], outcome)
    with racing(saver, what="the project's save") as race:
        model_version_promote(version=short)

    assert race.waited, outcome
    assert SHORT_CONTEXT in outcome.get("refused", ""), outcome
    project.refresh_from_db()
    assert project.sampling_params == {"max_new_tokens": 200}
    assert not Project.objects.filter(slug="new").exists()
    assert ModelVersion.objects.get(is_active=True) == short


@pytest.mark.parametrize("active", ["wide", None])
def test_a_promotion_racing_a_project_save_waits_and_sees_the_saved_limit(active):
    """The project's save is under way (written, not committed) when the policy is promoted."""
    wide = served_version("wide", 4096, active=True) if active else None
    short = served_version("short", 256)
    project = project_create(name="Long", slug="long", sampling_params={"max_new_tokens": 200})
    outcome: dict = {}
    promoter = _thread(lambda: model_version_promote(version=short).pk, outcome)
    with racing(promoter, what="the promotion"):
        project_update(project=project, sampling_params=TOO_LONG)

    assert "short cannot be promoted: Project 'Long' (long)" in outcome.get("refused", ""), outcome
    short.refresh_from_db()
    assert not short.is_active
    assert list(ModelVersion.objects.filter(is_active=True)) == ([wide] if wide else [])


@pytest.mark.parametrize("naming", ["as saved", "given again"])
def test_a_project_save_racing_a_context_change_of_its_policy_waits_and_sees_it(naming):
    """The version the project names is given a shorter context (API, admin) under way when
    the project's limit is raised: the save read the context from before the change and
    passed, as the change had passed on the limit from before the save."""
    named = served_version("named", 4096)
    project = project_create(
        name="Own", slug="own", sampling_params={"max_new_tokens": 100}, policies=[(named, 1.0)]
    )
    policies = {"as saved": {}, "given again": {"policies": [(named, 1.0)]}}[naming]
    outcome: dict = {}
    saver = _thread(
        lambda: project_update(project=project, sampling_params=TOO_LONG, **policies).pk, outcome
    )
    with racing(saver, what="the project's save") as race:
        model_version_serving_update(version=named, context_length=256)

    assert race.waited, outcome
    assert "named: max_new_tokens=256 leaves less than 16" in outcome.get("refused", ""), outcome
    project.refresh_from_db()
    assert project.sampling_params == {"max_new_tokens": 100}


def test_a_context_change_racing_a_project_save_waits_and_sees_the_saved_limit():
    named = served_version("named", 4096)
    project = project_create(
        name="Own", slug="own", sampling_params={"max_new_tokens": 100}, policies=[(named, 1.0)]
    )
    outcome: dict = {}
    changer = _thread(
        lambda: model_version_serving_update(version=named, context_length=256).pk, outcome
    )
    with racing(changer, what="the context change"):
        project_update(project=project, sampling_params=TOO_LONG)

    assert "Project 'Own' (own) would sample from named" in outcome.get("refused", ""), outcome
    named.refresh_from_db()
    assert named.context_length == 4096
