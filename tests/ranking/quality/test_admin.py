"""The admin shows stored trust and writes none of it: an estimate and its trainers' trust are
computed by the quality services from the rankings, and pages and exports read them as the
estimate over exactly those rankings."""

import pytest
from django.urls import reverse
from django.utils import timezone

from ranking.quality.models import TrainerTrust, TrustEstimate

pytestmark = pytest.mark.django_db


@pytest.fixture
def trust(trainer) -> TrainerTrust:
    estimate = TrustEstimate.objects.create(rankings=3, estimated_at=timezone.now())
    return TrainerTrust.objects.create(
        estimate=estimate, trainer=trainer, trust=0.9, judgements=3, gold_judgements=0
    )


@pytest.mark.parametrize("model", ["trustestimate", "trainertrust"])
def test_the_admin_cannot_add_or_delete_stored_trust(admin_client_, trust, model):
    row = trust.estimate if model == "trustestimate" else trust
    name = f"admin:ranking_{model}"

    assert admin_client_.get(reverse(f"{name}_add")).status_code == 403
    delete = admin_client_.post(reverse(f"{name}_delete", args=[row.pk]), {"post": "yes"})
    assert delete.status_code == 403
    admin_client_.post(
        reverse(f"{name}_changelist"),
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert TrainerTrust.objects.filter(pk=trust.pk, estimate=trust.estimate).exists()
    assert admin_client_.get(reverse(f"{name}_change", args=[row.pk])).status_code == 200


def test_the_estimate_page_cannot_add_or_remove_a_trainers_trust(admin_client_, trust):
    page = admin_client_.get(
        reverse("admin:ranking_trustestimate_change", args=[trust.estimate_id])
    )
    inline = page.context["inline_admin_formsets"][0]
    assert not inline.has_add_permission and not inline.has_delete_permission


def test_deleting_a_trainer_in_the_admin_takes_their_trust_with_them(admin_client_, trust):
    delete = admin_client_.post(
        reverse("admin:auth_user_delete", args=[trust.trainer_id]), {"post": "yes"}
    )
    assert delete.status_code == 302
    assert not TrainerTrust.objects.filter(pk=trust.pk).exists()
