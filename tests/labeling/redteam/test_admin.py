"""A run's set of attacks is fixed when the run is asked for (``attack_run_create``): the admin
shows it and changes none of it, so a resumed run re-sends the attacks it was asked for, never
one added to it afterwards (of another project, say), and its count matches its set. An attack
the admin changes or adds passes the checks a trainer's mark passes (its prompt messages and
model version are its reply's, too); once a run has it, what the run sent and scored of it is
read-only there. A run's own inputs and record are read-only there from the start, and its
results are shown, never added, changed or deleted on their own."""

import json

import pytest
from django.forms.models import model_to_dict
from django.urls import reverse

from labeling.conversations import services
from labeling.redteam import admin
from labeling.redteam import services as redteam_services
from labeling.redteam.models import Attack, AttackResult, AttackRunAttack
from ranking.projects.services import project_create
from sampler.models import ModelVersion
from tests.labeling.conftest import model_reply
from tests.labeling.redteam.conftest import (
    FAILED,
    PROMPT,
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


# Once a run has an attack in its set, what the run sends and scores of it is read-only in the
# admin (its results would no longer match the attack); the rest stays editable, through the
# same checks.

RUN_FIELDS = set(admin.RUN_FIELDS)


def _editable(admin_client_, attack: Attack) -> set[str]:
    response = admin_client_.get(reverse(ATTACK_CHANGE, args=[attack.pk]))
    assert response.status_code == 200
    return set(response.context["adminform"].form.fields)


def test_what_a_run_sent_of_an_attack_is_read_only_in_the_admin_once_a_run_has_it(
    admin_client_, trainer, admin_user, policy
):
    corrected, uncorrected = two_attacks(trainer, policy)
    redteam_services.attack_run_create(requested_by=admin_user, model_version=policy, queue=False)
    corrected.refresh_from_db()  # with its correction
    assert not _editable(admin_client_, corrected) & (RUN_FIELDS | {"correction"})
    # A correction not written yet is scored by no run: it can still be set.
    assert _editable(admin_client_, uncorrected) & (RUN_FIELDS | {"correction"}) == {"correction"}

    stored = model_to_dict(corrected)
    other_version = ModelVersion.objects.create(name="policy-v2", path="/nowhere", kind="policy")
    response = admin_client_.post(
        reverse(ATTACK_CHANGE, args=[corrected.pk]),
        _form(
            corrected,
            prompt_messages=[{"role": "user", "content": "something never sent"}],
            model_version=other_version.pk,
            correction="",
            category="privacy",
            note=" leaked it ",
        ),
    )
    assert response.status_code == 302
    corrected.refresh_from_db()
    assert model_to_dict(corrected) == {**stored, "category": "privacy", "note": "leaked it"}


def test_an_attack_in_a_run_is_still_checked_when_the_admin_saves_it(
    admin_client_, trainer, admin_user, policy
):
    attack, _ = two_attacks(trainer, policy)
    redteam_services.attack_run_create(requested_by=admin_user, model_version=policy, queue=False)
    attack.refresh_from_db()
    # Its reply, read-only now, is still checked: one made another attack's correction since
    # (by hand, in the database) is refused, on the form as a whole.
    Attack.objects.filter(pk=attack.pk).update(correction=None)
    other = Attack.objects.exclude(pk=attack.pk).get()
    Attack.objects.filter(pk=other.pk).update(correction=attack.message)
    url = reverse(ATTACK_CHANGE, args=[attack.pk])
    response = admin_client_.post(url, _form(attack, note="fine", correction=""))
    assert "a correction, not a model reply" in _refused(response, "__all__")
    attack.refresh_from_db()
    assert attack.note == ""


def test_an_attack_no_run_has_stays_editable_in_the_admin(admin_client_, trainer, red_team):
    _, _, reply = red_team
    attack = redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    assert RUN_FIELDS | {"correction"} <= _editable(admin_client_, attack)


# A run's inputs (what the executor reads on every try, and a retry of its failed attacks copies)
# and what it recorded are fixed from the moment it is asked for: its admin page changes none of
# it. Its results are the record of what was sent and scored: shown, never added or changed;
# they go with their run.

RUN = "admin:labeling_attackrun"
RESULT = "admin:labeling_attackresult"


def _run_with_a_result(trainer, admin_user, model_version) -> tuple:
    attack = stored_attacks(trainer, model_version, 1)[0]
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=model_version, seed=7, queue=False
    )
    result = AttackResult.objects.create(
        run=run,
        attack=attack,
        category=attack.category,
        prompt="attack prompt 0",
        text="a new reply",
        filter_flagged=False,
        reward_score=0.25,
    )
    return run, result


def test_a_runs_admin_page_changes_nothing_it_sends_scores_or_recorded(
    admin_client_, trainer, admin_user, model_version
):
    run, _ = _run_with_a_result(trainer, admin_user, model_version)
    url = reverse(f"{RUN}_change", args=[run.pk])
    page = admin_client_.get(url)
    assert page.status_code == 200
    assert set(page.context["adminform"].form.fields) == set()

    other = ModelVersion.objects.create(name="policy-v2", path="/nowhere", kind="policy")
    stored = model_to_dict(run)
    response = admin_client_.post(
        url,
        {
            "model_version": other.pk,
            "reward_model_version": other.pk,
            "attack_count": 9,
            "progress": "0.5",
            "seed": 8,
            "params": json.dumps({"max_new_tokens": 1}),
            "filter_name": "none",
            "requested_by": trainer.pk,
            "project": run.project_id,
            "publish_token": "another",
            "results-TOTAL_FORMS": "0",
            "results-INITIAL_FORMS": "0",
        },
    )
    # A view: no save (it would write the row back over what the worker wrote meanwhile).
    assert response.status_code == 403
    run.refresh_from_db()
    assert model_to_dict(run) == stored


def test_a_runs_results_are_shown_never_added_changed_or_deleted_on_their_own(
    admin_client_, trainer, admin_user, model_version
):
    run, result = _run_with_a_result(trainer, admin_user, model_version)
    stored = model_to_dict(result)
    change = reverse(f"{RESULT}_change", args=[result.pk])

    assert admin_client_.get(reverse(f"{RESULT}_add")).status_code == 403
    assert admin_client_.get(change).status_code == 200
    edited = {**stored, "text": "edited", "reward_score": "9", "prompt": "never sent"}
    edited = {name: "" if value is None else value for name, value in edited.items()}
    edited["filter_categories"] = json.dumps(stored["filter_categories"])
    assert admin_client_.post(change, edited).status_code == 403
    delete = reverse(f"{RESULT}_delete", args=[result.pk])
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    result.refresh_from_db()
    assert model_to_dict(result) == stored

    # The run's page shows them, read-only, with no row to add or delete.
    page = admin_client_.get(reverse(f"{RUN}_change", args=[run.pk]))
    (inline,) = page.context["inline_admin_formsets"]
    assert not (inline.has_add_permission or inline.has_change_permission)
    assert not inline.has_delete_permission

    # Deleting the run takes them with it.
    response = admin_client_.post(reverse(f"{RUN}_delete", args=[run.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not AttackResult.objects.exists()


# While no run has an attack, the prompt it stores and the version it names are still its
# reply's: the conversation's path up to the turn the reply answers, and the version that wrote
# the reply.


def test_the_admin_refuses_a_prompt_or_version_the_reply_never_answered(
    admin_client_, trainer, red_team, model_version
):
    _, prompt, reply = red_team
    attack = redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    other_version = ModelVersion.objects.create(name="policy-v2", path="/nowhere", kind="policy")
    url = reverse(ATTACK_CHANGE, args=[attack.pk])
    stored = model_to_dict(attack)
    sent = {"role": "user", "content": PROMPT}

    cases = [
        ({"prompt_messages": [{"role": "user", "content": "never sent"}]}, "prompt_messages"),
        ({"prompt_messages": [sent, {"role": "assistant", "content": FAILED}]}, "prompt_messages"),
        ({"prompt_messages": [{**sent, "name": "someone"}]}, "prompt_messages"),
        ({"prompt_messages": {"role": "user", "content": PROMPT}}, "prompt_messages"),
        ({"model_version": other_version.pk}, "model_version"),
        ({"model_version": ""}, "model_version"),
    ]
    for changes, field in cases:
        response = admin_client_.post(url, _form(attack, **changes))
        error = _refused(response, field)
        expected = f"message {prompt.pk}" if field == "prompt_messages" else "policy-v1"
        assert expected in error, (changes, error)
    attack.refresh_from_db()
    assert model_to_dict(attack) == stored


def test_the_admin_adds_an_attack_only_with_its_replys_own_prompt_and_version(
    admin_client_, trainer, red_team, model_version
):
    _, _, reply = red_team
    attack = redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    other = stored_attacks(trainer, model_version, 1)[0]
    values = _form(other)
    del values["id"]
    other.delete()  # its reply is free to be marked again, here
    add = reverse("admin:labeling_attack_add")

    refused = admin_client_.post(
        add, {**values, "prompt_messages": json.dumps(attack.prompt_messages)}
    )
    assert "message" in _refused(refused, "prompt_messages")
    assert admin_client_.post(add, values).status_code == 302
    added = Attack.objects.exclude(pk=attack.pk).get()
    assert added.prompt_messages == [{"role": "user", "content": "attack prompt 0"}]
