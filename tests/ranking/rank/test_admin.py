"""The admin shows ranking tasks, their candidates, leases and rankings, and changes none of
them: their status and counters are kept by the ranking services (claim, submit, skip, undo,
expiry), which exports and the task pool read."""

import pytest
from django.urls import reverse

from ranking.rank.models import Assignment, Candidate, Ranking, RankingTask
from tests.ranking.conftest import (
    finished_conversation,
    model_version_create,
    rank,
    task_from_source,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def ranking(trainer, other_trainer) -> Ranking:
    conversation = finished_conversation(other_trainer)
    source = conversation.messages.filter(role="assistant").get()
    task = task_from_source(source, model_version=model_version_create("policy"))
    return rank(task, trainer, [[0], [1], [2], [3]])


def test_deleting_a_ranking_in_the_admin_is_refused(admin_client_, ranking):
    changelist = reverse("admin:ranking_ranking_changelist")
    admin_client_.post(
        changelist, {"action": "delete_selected", "_selected_action": [ranking.pk], "post": "yes"}
    )
    delete = reverse("admin:ranking_ranking_delete", args=[ranking.pk])

    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    assert Ranking.objects.filter(pk=ranking.pk).exists()
    task = RankingTask.objects.get(pk=ranking.task_id)
    assert task.rankings_count == Ranking.objects.filter(task=task).count() == 1


@pytest.mark.parametrize(
    ("model", "row", "changes"),
    [
        (RankingTask, lambda ranking: ranking.task, {"status": "preparing", "rankings_count": 0}),
        (Assignment, lambda ranking: ranking.assignment, {"status": "leased"}),
        (Ranking, lambda ranking: ranking, {"ordering": "[]", "cannot_rank": "on"}),
        (Candidate, lambda ranking: ranking.task.candidates.first(), {"position": 9}),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_the_admin_cannot_change_what_the_ranking_services_keep(
    admin_client_, ranking, model, row, changes
):
    instance = row(ranking)
    name = f"admin:ranking_{model._meta.model_name}"
    change = reverse(f"{name}_change", args=[instance.pk])
    before = {field: getattr(instance, field) for field in changes}

    posted = admin_client_.post(change, changes)
    instance.refresh_from_db()

    assert {field: getattr(instance, field) for field in changes} == before
    assert posted.status_code == 403
    assert admin_client_.get(change).status_code == 200  # still shown
    assert admin_client_.get(reverse(f"{name}_add")).status_code == 403
