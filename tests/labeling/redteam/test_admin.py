"""A run's set of attacks is fixed when the run is asked for (``attack_run_create``): the admin
shows it and changes none of it, so a resumed run re-sends the attacks it was asked for, never
one added to it afterwards (of another project, say), and its count matches its set. An attack
the admin changes or adds passes the checks a trainer's mark passes."""

import json

import pytest
from django.forms.models import model_to_dict
from django.urls import reverse

from labeling.conversations import services
from labeling.redteam import services as redteam_services
from labeling.redteam.models import Attack, AttackRunAttack
from ranking.projects.services import project_create
from tests.labeling.conftest import model_reply
from tests.labeling.redteam.conftest import (
    attack_and_correct,
    stored_attacks,
    two_attacks,
)

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


# An attack changed or added by hand passes the checks a trainer's mark passes
# (services.attack_check), and the refusal is shown on the form.

ATTACK_CHANGE = "admin:labeling_attack_change"


def _form(attack: Attack, **changes) -> dict:
    """The admin's change form for ``attack`` as the page fills it in, with ``changes``."""
    values = {**model_to_dict(attack), **changes}
    values["prompt_messages"] = json.dumps(values["prompt_messages"])
    return {name: "" if value is None else value for name, value in values.items()}


def _refused(response, field: str) -> str:
    """The form's error on ``field`` (the page was shown again, nothing saved)."""
    assert response.status_code == 200, response
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field], errors
    return " ".join(errors[field])


def test_the_admin_refuses_an_attack_the_service_would_not_record(
    admin_client_, trainer, red_team, model_version
):
    conversation, prompt, reply = red_team
    attack, correction = attack_and_correct(trainer, reply)
    attack.refresh_from_db()  # with its correction
    other_attack = stored_attacks(trainer, model_version, 1)[0]
    normal = services.conversation_create(owner=trainer, title="Plain")
    asked = services.message_append(conversation=normal, author=trainer, content="Hi")
    normal_reply = model_reply(normal, asked, model_version)
    # Another reply of the model to the same prompt, marked as an attack too.
    sibling = model_reply(conversation, prompt, model_version, text="Sure, step two...")
    redteam_services.attack_record(message=sibling, user=trainer, category="harmful")
    elsewhere = project_create(name="Safety", slug="safety", status="active")
    url = reverse(ATTACK_CHANGE, args=[attack.pk])
    stored = model_to_dict(attack)

    cases = [
        ({"message": prompt.pk}, "message", "Only assistant replies the model wrote"),
        ({"message": correction.pk}, "message", "Only assistant replies the model wrote"),
        ({"message": normal_reply.pk}, "message", "red-team conversations only"),
        ({"message": other_attack.message_id}, "message", "already marked"),
        ({"conversation": normal.pk}, "conversation", f"in conversation {conversation.pk}"),
        ({"project": elsewhere.pk}, "project", "its conversation's project"),
        ({"prompt_message": reply.pk}, "prompt_message", f"answers message {prompt.pk}"),
        ({"correction": reply.pk}, "correction", "cannot be the attacked reply"),
        ({"correction": prompt.pk}, "correction", "another reply to the same user turn"),
        ({"correction": other_attack.message_id}, "correction", "same user turn"),
        ({"correction": sibling.pk}, "correction", "marked as a successful attack itself"),
    ]
    for changes, field, expected in cases:
        response = admin_client_.post(url, _form(attack, **changes))
        assert expected in _refused(response, field), changes
    attack.refresh_from_db()
    assert model_to_dict(attack) == stored


def test_the_admin_saves_a_change_the_checks_accept_with_the_note_trimmed(
    admin_client_, trainer, red_team
):
    _, _, reply = red_team
    attack, _ = attack_and_correct(trainer, reply)
    attack.refresh_from_db()
    url = reverse(ATTACK_CHANGE, args=[attack.pk])
    response = admin_client_.post(url, _form(attack, category="harmful", note="  it gave steps "))
    assert response.status_code == 302
    attack.refresh_from_db()
    assert (attack.category, attack.note) == ("harmful", "it gave steps")


def test_the_admin_refuses_to_add_an_attack_on_a_reply_the_service_would_not_mark(
    admin_client_, trainer, red_team
):
    _, _, reply = red_team
    attack, correction = attack_and_correct(trainer, reply)
    attack.refresh_from_db()  # with its correction
    values = _form(attack, message=correction.pk, correction="")
    del values["id"]
    response = admin_client_.post(reverse("admin:labeling_attack_add"), values)
    assert "Only assistant replies the model wrote" in _refused(response, "message")
    assert not Attack.objects.exclude(pk=attack.pk).exists()
