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
from sampler.registry.services import model_version_promote
from tests.conftest import racing, recording_thread, served_version

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOO_LONG = {"max_new_tokens": 256}
SHORT_CONTEXT = "short: max_new_tokens=256 leaves less than 16 tokens for the prompt"


def _refusal(error: ValidationError) -> str:
    return " ".join(error.messages)


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
    saver = recording_thread(saves[save], outcome, "saved", refusal=(ValidationError, _refusal))
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
    promoter = recording_thread(
        lambda: model_version_promote(version=short).pk,
        outcome,
        "promoted",
        refusal=(ValidationError, _refusal),
    )
    with racing(promoter, what="the promotion"):
        project_update(project=project, sampling_params=TOO_LONG)

    assert "short cannot be promoted: Project 'Long' (long)" in outcome.get("refused", ""), outcome
    short.refresh_from_db()
    assert not short.is_active
    assert list(ModelVersion.objects.filter(is_active=True)) == ([wide] if wide else [])
