"""A run's set of attacks is fixed when the run is asked for (``attack_run_create``): the admin
shows it and changes none of it, so a resumed run re-sends the attacks it was asked for, never
one added to it afterwards (of another project, say), and its count matches its set."""

import pytest
from django.urls import reverse

from labeling.redteam import services as redteam_services
from labeling.redteam.models import AttackRunAttack
from tests.labeling.redteam.conftest import two_attacks

pytestmark = pytest.mark.django_db


def test_the_admin_neither_adds_nor_changes_nor_deletes_a_runs_attacks(
    admin_client_, trainer, admin_user, policy
):
    first, second = two_attacks(trainer, policy)
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )
    later, _ = two_attacks(trainer, policy)  # made after the run: not in its set
    entry = AttackRunAttack.objects.get(run=run, attack=first)
    name = "admin:labeling_attackrunattack"

    assert admin_client_.get(reverse(f"{name}_add")).status_code == 403
    admin_client_.post(
        reverse(f"{name}_change", args=[entry.pk]), {"run": run.pk, "attack": later.pk}
    )
    delete = admin_client_.post(reverse(f"{name}_delete", args=[entry.pk]), {"post": "yes"})
    assert delete.status_code == 403
    assert set(run.entries.values_list("attack_id", flat=True)) == {first.pk, second.pk}
    assert admin_client_.get(reverse(f"{name}_change", args=[entry.pk])).status_code == 200
