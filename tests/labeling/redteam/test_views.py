import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from labeling.conversations.models import Conversation
from labeling.redteam import services as redteam_services
from labeling.redteam.models import Attack, AttackRun
from ranking.projects.services import project_create
from tests.conftest import (
    polls_only_while_work_can_move,
    says_unpublished_until_published,
    worker_seen,
)
from tests.labeling.conftest import HTMX
from tests.labeling.redteam.conftest import CORRECTION, PROMPT


def test_list_page_creates_a_red_team_conversation(trainer_client):
    response = trainer_client.post("/write/new/", {"title": "Break it", "mode": "red_team"})
    assert response.status_code == 302
    conversation = Conversation.objects.get()
    assert conversation.mode == Conversation.Mode.RED_TEAM
    page = trainer_client.get(conversation.get_absolute_url())
    assert b"Red team." in page.content
    assert trainer_client.post("/write/new/", {"title": "Plain"}).status_code == 302
    assert Conversation.objects.get(title="Plain").mode == Conversation.Mode.NORMAL


def test_editor_marks_an_attack_and_saves_the_correction(trainer_client, red_team):
    conversation, _, reply = red_team
    page = trainer_client.get(conversation.get_absolute_url())
    assert b"Attack succeeded?" in page.content
    # A NUL is refused, and what was typed comes back without it (a page cannot hold one).
    nul = trainer_client.post(
        f"/write/messages/{reply.pk}/attack/", {"category": "privacy", "note": "a\x00b"}, **HTMX
    )
    assert nul.status_code == 422 and "\x00" not in nul.content.decode()
    assert ">ab</textarea>" in nul.content.decode()
    response = trainer_client.post(
        f"/write/messages/{reply.pk}/attack/", {"category": "privacy", "note": "leaked"}, **HTMX
    )
    assert response.status_code == 200
    assert b"Attack succeeded: Privacy leak" in response.content
    attack = Attack.objects.get()
    other = trainer_client.post(
        f"/write/messages/{reply.pk}/attack/", {"category": "gossip", "note": "n" * 2001}, **HTMX
    )
    text = other.content.decode()
    assert other.status_code == 422 and "* note" not in text
    assert "Select a valid choice" in text and "at most 2000 characters" in text
    empty = trainer_client.post(f"/write/attacks/{attack.pk}/correct/", {"content": " "}, **HTMX)
    assert empty.status_code == 422 and empty["HX-Retarget"] == f"#attack-slot-{reply.pk}"
    response = trainer_client.post(
        f"/write/attacks/{attack.pk}/correct/", {"content": CORRECTION}, **HTMX
    )
    assert response.status_code == 200 and b"a locksmith can help" in response.content
    attack.refresh_from_db()
    assert attack.correction.content == CORRECTION
    assert b"Corrected reply to a successful attack" in response.content


def test_red_team_overview_is_for_admins_and_queues_reruns(
    admin_client_, trainer_client, red_team, trainer, model_version
):
    _, _, reply = red_team
    redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    assert trainer_client.get("/write/redteam/").status_code == 403
    page = admin_client_.get("/write/redteam/")
    assert page.status_code == 200
    assert b"100%" in page.content and PROMPT[:40].encode() in page.content
    response = admin_client_.post("/write/redteam/runs/new/", {"model_version": model_version.pk})
    assert response.status_code == 302
    run = AttackRun.objects.get()
    assert run.model_version == model_version and run.attack_count == 1
    assert admin_client_.get(f"/write/redteam/runs/{run.pk}/").status_code == 200
    bad = admin_client_.post("/write/redteam/runs/new/", {"model_version": 999})
    assert bad.status_code == 422


def test_a_rerun_of_a_project_without_attacks_names_the_project_while_another_has_some(
    admin_client_, red_team, trainer, model_version
):
    _, _, reply = red_team
    redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    empty = project_create(name="Quiet & calm", slug="quiet", status="active")
    response = admin_client_.post(
        "/write/redteam/runs/new/", {"model_version": model_version.pk, "project": empty.slug}
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert escape('No attacks are stored in the project "Quiet & calm": nothing to re-run.') in html
    assert "No attacks are stored yet" not in html
    assert not AttackRun.objects.exists()


def test_the_overview_refuses_an_unknown_category_and_names_the_categories(
    admin_client_, red_team, trainer
):
    _, _, reply = red_team
    redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    page = admin_client_.get("/write/redteam/", {"category": "bogus"})
    text = page.content.decode()
    # The filters' error, as the quality page answers one: no figures for a filter that
    # selects nothing definite (every attack would pass for it).
    assert page.status_code == 422
    assert escape('There is no category "bogus"') in text
    assert "jailbreak, harmful, false, privacy and other" in text
    assert PROMPT[:40] not in text and 'id="attack-rows"' not in text
    # No category, or an empty one, is every category, as before; a known one filters.
    for query in ({}, {"category": ""}, {"category": "jailbreak"}):
        page = admin_client_.get("/write/redteam/", query)
        assert page.status_code == 200 and PROMPT[:40] in page.content.decode(), query
    harmful = admin_client_.get("/write/redteam/", {"category": "harmful"}).content.decode()
    assert "No attacks match." in harmful and PROMPT[:40] not in harmful


def test_the_overview_refuses_an_unknown_model_version_and_says_so(
    admin_client_, red_team, trainer, model_version
):
    """An unknown model_version was read as none: the page showed every version's attacks
    and figures as if that were what was asked for."""
    from sampler.models import ModelVersion

    _, _, reply = red_team
    redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    other = ModelVersion.objects.create(name="other", path="other")
    for value in ("bogus", str(other.pk + 1000), "0", "9" * 30):
        page = admin_client_.get("/write/redteam/", {"model_version": value})
        text = page.content.decode()
        assert page.status_code == 422, value
        assert escape(f'There is no model version "{value}"') in text, value
        assert PROMPT[:40] not in text and 'id="attack-rows"' not in text
    # No version, or an empty one, is every version; a known one filters.
    for query in ({}, {"model_version": ""}, {"model_version": str(model_version.pk)}):
        page = admin_client_.get("/write/redteam/", query)
        assert page.status_code == 200 and PROMPT[:40] in page.content.decode(), query
    page = admin_client_.get("/write/redteam/", {"model_version": str(other.pk)})
    assert page.status_code == 200
    assert "No attacks against other." in page.content.decode()


def test_the_overview_refused_by_its_filters_counts_nothing_it_does_not_show(
    admin_client_, red_team, trainer
):
    """A refused filter (422) shows no figures and no attacks, so it computes none: its answer
    runs the queries of an empty filter less the five of the figures (the successes by version,
    the two counts by category, the page of attacks and its count), none on the attacks' table.
    Before, it computed every figure and threw them away."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _, _, reply = red_team
    redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")

    def queries(query: dict) -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            page = admin_client_.get("/write/redteam/", query)
        assert page.status_code == (200 if not query else 422), query
        return [entry["sql"] for entry in captured.captured_queries]

    shown = queries({})
    for refused in ({"model_version": "bogus"}, {"category": "bogus"}):
        answered = queries(refused)
        assert not [sql for sql in answered if 'FROM "labeling_attack"' in sql], refused
        assert len(answered) == len(shown) - 5, refused


def test_the_overview_filtered_by_a_version_without_attacks_shows_it_chosen(
    admin_client_, red_team, trainer
):
    """A version that exists but wrote no red-team reply was not among the dropdown's options:
    filtered by it, the page showed "Any" chosen over an empty list that did not say whose."""
    from sampler.models import ModelVersion

    _, _, reply = red_team
    redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    other = ModelVersion.objects.create(name="policy-v2", path="other")
    for query in ({"model_version": str(other.pk)}, {"model_version": other.pk, "category": ""}):
        page = admin_client_.get("/write/redteam/", query)
        assert page.status_code == 200
        html = page.content.decode()
        dropdown = html.split('<select id="model_version"', 1)[1].split("</select>", 1)[0]
        assert f'<option value="{other.pk}" selected>policy-v2</option>' in dropdown
        assert dropdown.count("selected") == 1
        assert "No attacks against policy-v2." in html and PROMPT[:40] not in html
    harmful = admin_client_.get(
        "/write/redteam/", {"model_version": other.pk, "category": "harmful"}
    ).content.decode()
    assert "No attacks against policy-v2 in this category." in harmful
    # Unfiltered, the version is not offered: it has no red-team reply to filter by.
    html = admin_client_.get("/write/redteam/").content.decode()
    dropdown = html.split('<select id="model_version"', 1)[1].split("</select>", 1)[0]
    assert f'<option value="{other.pk}"' not in dropdown


def test_the_overview_filtered_by_a_version_shows_every_figure_for_that_version_alone(
    admin_client_, red_team, trainer, model_version
):
    """Filtered by a version, the "By category" counts were that version's but the "Per
    model version" table still listed the other versions' rows beside it."""
    from sampler.models import ModelVersion
    from tests.labeling.conftest import model_reply

    conversation, prompt, reply = red_team
    redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    other = ModelVersion.objects.create(name="policy-v2", path="other", kind="policy")
    for text in ("sure, here is how", "also sure"):
        other_reply = model_reply(conversation, prompt, other, text=text)
        redteam_services.attack_record(message=other_reply, user=trainer, category="harmful")

    page = admin_client_.get("/write/redteam/", {"model_version": model_version.pk})
    assert page.status_code == 200
    html = page.content.decode()
    per_version = html.split('id="attacks-by-model"', 1)[1].split("</table>", 1)[0]
    assert 'data-model-version="policy-v1"' in per_version
    assert "policy-v2" not in per_version
    assert [row["model_version_id"] for row in page.context["by_model_version"]] == [
        model_version.pk
    ]
    counts = {row["category"]: row["attacks"] for row in page.context["by_category"]}
    assert counts["jailbreak"] == 1 and counts["harmful"] == 0
    # Every version with red-team replies is still offered, to filter by another one.
    dropdown = html.split('<select id="model_version"', 1)[1].split("</select>", 1)[0]
    assert re.search(rf'<option value="{other.pk}"\s*>policy-v2</option>', dropdown)
    # Unfiltered, both versions' rows.
    page = admin_client_.get("/write/redteam/")
    rows = {row["model_version__name"]: row["attacks"] for row in page.context["by_model_version"]}
    assert rows == {"policy-v1": 1, "policy-v2": 2}


def test_a_stale_tab_keeps_a_correction_for_a_withdrawn_mark_and_says_why(
    trainer_client, red_team, trainer
):
    _, _, reply = red_team
    attack = redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    correct_url = f"/write/attacks/{attack.pk}/correct/"
    withdraw_url = f"/write/attacks/{attack.pk}/withdraw/"
    page = trainer_client.get(reply.conversation.get_absolute_url()).content.decode()
    assert f'name="message" value="{reply.pk}"' in page  # the forms name their reply
    # Another tab withdraws the mark; withdrawing again from this one changes nothing.
    assert trainer_client.post(withdraw_url, {"message": reply.pk}, **HTMX).status_code == 200
    again = trainer_client.post(withdraw_url, {"message": reply.pk}, **HTMX)
    assert again.status_code == 200 and b"Attack succeeded?" in again.content

    for headers in (HTMX, {}):
        response = trainer_client.post(
            correct_url, {"content": CORRECTION, "message": reply.pk}, **headers
        )
        text = response.content.decode()
        assert response.status_code == 409
        assert "no longer marked as a successful attack" in text
        assert "a locksmith can help" in text  # the typed text is in the reply's edit box
    assert not Attack.objects.exists()
    assert reply.conversation.messages.count() == 2  # no branch was written
    assert reply.conversation.drafts.get(editing=reply).content == CORRECTION

    # Marked again meanwhile: the new mark takes the correction.
    remarked = redteam_services.attack_record(message=reply, user=trainer, category="harmful")
    response = trainer_client.post(
        correct_url, {"content": CORRECTION, "message": reply.pk}, **HTMX
    )
    assert response.status_code == 200
    remarked.refresh_from_db()
    assert remarked.correction.content == CORRECTION
    # A form that names no reply (or one the trainer cannot see) is still a 404.
    assert trainer_client.post(correct_url, {"content": "x"}, **HTMX).status_code == 404


def test_a_correction_for_a_withdrawn_mark_is_kept_also_once_the_conversation_was_finished(
    trainer_client, red_team, trainer
):
    from labeling.conversations.services import conversation_finish

    conversation, _, reply = red_team
    attack = redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    redteam_services.attack_withdraw(attack=attack, user=trainer)  # another tab, then Finish
    conversation_finish(conversation=conversation, user=trainer)

    response = trainer_client.post(
        f"/write/attacks/{attack.pk}/correct/", {"content": CORRECTION, "message": reply.pk}
    )

    assert response.status_code == 409
    # Kept as that reply's edit draft, as the answer to a withdrawn mark says: Reopen brings it
    # back. The finished conversation's page shows no edit box: it shows why, and the text.
    assert conversation.drafts.get(editing=reply).content == CORRECTION
    body = response.content.decode()
    assert redteam_services.ATTACK_GONE in body
    assert "kept as that turn's draft, and Reopen brings it back" in body
    assert f"{escape(CORRECTION)}</textarea>" in body


def test_a_correction_racing_a_withdrawal_is_refused_as_withdrawn(red_team, trainer):
    _, _, reply = red_team
    attack = redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    Attack.objects.filter(pk=attack.pk).delete()  # withdrawn after the view read it
    with pytest.raises(ValidationError) as refused:
        redteam_services.attack_correct(attack=attack, author=trainer, content=CORRECTION)
    assert refused.value.code == "attack_gone"
    redteam_services.attack_withdraw(attack=attack, user=trainer)  # a no-op, no error


def test_a_correction_with_a_nul_is_refused_with_the_fields_message_and_the_text_kept(
    trainer_client, red_team, trainer
):
    """As an edited turn: a NUL character is the form's refusal, not "the message is empty",
    and the correction comes back in its box (less the NUL) instead of being lost."""
    _, _, reply = red_team
    attack = redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    response = trainer_client.post(
        f"/write/attacks/{attack.pk}/correct/", {"content": "Ask a\x00 locksmith."}, **HTMX
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "Null characters are not allowed." in page and "empty" not in page
    assert "Ask a locksmith.</textarea>" in page
    attack.refresh_from_db()
    assert attack.correction is None


@pytest.mark.django_db(transaction=True)
def test_a_rerun_asked_for_while_the_job_queue_is_down_is_kept_and_the_pages_say_so_until_sent(
    admin_client_, red_team, trainer, model_version, broker
):
    """The warning ("The re-run 1 is saved, ...") was a message at the top of the Red team
    page, which stayed there once the queue was back and the run ran. The re-runs table and
    the run's page say it, in the part they poll, while the run is not published."""
    _, _, reply = red_team
    redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    broker.down = True
    response = admin_client_.post(
        "/write/redteam/runs/new/", {"model_version": model_version.pk}, follow=True
    )
    assert response.status_code == 200
    run = AttackRun.objects.get()
    tail = " is saved, but the job queue is unreachable right now: it starts as soon as the queue"
    in_table = f"Run #{run.pk} (1 stored attack against policy-v1){tail}"
    assert in_table in response.content.decode()
    run_url = f"/write/redteam/runs/{run.pk}/"
    says_unpublished_until_published(
        admin_client_,
        broker,
        job=run,
        parts={"/write/redteam/runs/": in_table, run_url: f"Run #{run.pk}{tail}"},
        pages=("/write/redteam/", run_url),
    )


def test_withdrawing_an_attack_keeps_its_results_in_finished_runs_marked_withdrawn(
    admin_client_, trainer, admin_user, policy, settings
):
    from labeling.redteam.models import AttackResult
    from sampler.jobs.services import job_run_inline
    from tests.labeling.redteam.conftest import two_attacks

    settings.RANKING_MAX_NEW_TOKENS = 8
    corrected, withdrawn = two_attacks(trainer, policy)
    finished = job_run_inline(
        job=redteam_services.attack_run_create(
            requested_by=admin_user, model_version=policy, queue=False
        )
    )
    waiting = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )

    redteam_services.attack_withdraw(attack=withdrawn, user=trainer)

    # The finished run's record stands, its result now of a withdrawn attack.
    kept = AttackResult.objects.get(run=finished, attack=None)
    assert kept.category == "harmful" and kept.prompt == "attack prompt 1"
    assert finished.results.count() == 2
    page = admin_client_.get(f"/write/redteam/runs/{finished.pk}/").content.decode()
    assert "attack prompt 1" in page and "withdrawn since" in page
    overview = admin_client_.get("/write/redteam/").content.decode()
    assert "2 / 2 (1 withdrawn since)" in overview
    # The run still to come re-sends the other attack only.
    waiting = job_run_inline(job=waiting)
    assert list(waiting.results.values_list("attack_id", flat=True)) == [corrected.pk]


def test_an_attack_deleted_in_the_admin_before_its_run_succeeded_leaves_no_result_there(
    admin_client_, trainer, admin_user, policy, settings
):
    """Only a run that succeeded keeps the result of an attack gone since: one deleted in the
    admin (or with its conversation) while a run was still to finish leaves that run as a
    withdrawal does, not as a result of an attack "withdrawn since"."""
    from django.urls import reverse

    from labeling.redteam.models import AttackResult
    from sampler.jobs.services import job_run_inline
    from tests.labeling.redteam.conftest import two_attacks

    settings.RANKING_MAX_NEW_TOKENS = 8
    kept, deleted = two_attacks(trainer, policy)
    run = job_run_inline(
        job=redteam_services.attack_run_create(
            requested_by=admin_user, model_version=policy, queue=False
        )
    )
    # As if the worker had stopped after both results, before the run succeeded.
    AttackRun.objects.filter(pk=run.pk).update(status="failed")
    page = admin_client_.post(
        reverse("admin:labeling_attack_delete", args=[deleted.pk]), {"post": "yes"}
    )
    assert page.status_code == 302

    run = job_run_inline(job=AttackRun.objects.get(pk=run.pk))

    assert run.status == AttackRun.Status.SUCCEEDED
    assert list(run.results.values_list("attack_id", flat=True)) == [kept.pk]
    assert not AttackResult.objects.filter(attack=None).exists()
    overview = admin_client_.get("/write/redteam/").content.decode()
    assert "1 / 1" in overview and "withdrawn since" not in overview


def test_a_succeeded_run_with_failed_attacks_offers_their_retry_as_a_new_run(
    admin_client_, trainer_client, red_team, trainer, admin_user, model_version
):
    from labeling.redteam.models import AttackResult

    _, _, reply = red_team
    attack = redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=model_version, queue=False
    )
    AttackResult.objects.create(run=run, attack=attack, error="The model server answered 500.")
    AttackRun.objects.filter(pk=run.pk).update(status="succeeded")
    url = f"/write/redteam/runs/{run.pk}/retry-failed/"
    page = admin_client_.get(f"/write/redteam/runs/{run.pk}/").content.decode()
    assert "1 attack got no reply" in page and f'action="{url}"' in page
    assert trainer_client.post(url).status_code == 403
    assert admin_client_.get(url).status_code == 405

    response = admin_client_.post(url, follow=True)

    retry = AttackRun.objects.get(retry_of=run)
    assert response.redirect_chain == [(f"/write/redteam/runs/{retry.pk}/", 302)]
    page = response.content.decode()
    assert "Retrying" not in page  # the part it polls says whether it is queued
    assert f'Retries the failed attacks of <a href="/write/redteam/runs/{run.pk}/">' in page
    assert retry.status == AttackRun.Status.QUEUED and retry.attack_count == 1
    page = admin_client_.get(f"/write/redteam/runs/{run.pk}/").content.decode()
    assert f'retried by <a href="/write/redteam/runs/{retry.pk}/">' in page
    assert url not in page
    assert f"retry of #{run.pk}" in admin_client_.get("/write/redteam/").content.decode()
    # A second click (another tab) is refused with the reason, and makes no other run.
    again = admin_client_.post(url)
    assert again.status_code == 409
    assert escape(f"Run {run.pk}'s failed attacks are retried by run {retry.pk}.") in (
        again.content.decode()
    )
    assert AttackRun.objects.count() == 2


def test_a_runs_page_retries_only_the_failed_attacks_the_model_did_not_refuse_and_says_so(
    admin_client_, trainer, admin_user, model_version
):
    """A failure the model refused for what the attack asks would be refused again: the page
    counts it apart, the retry leaves it out and says how many it left out; a run whose failures
    are all such refusals offers no retry, and one asked for all the same is refused (409)."""
    from labeling.redteam.models import AttackResult
    from tests.labeling.redteam.conftest import stored_attacks

    crashed, too_long, also_too_long = stored_attacks(trainer, model_version, 3)
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=model_version, queue=False
    )
    AttackResult.objects.create(run=run, attack=crashed, error="RuntimeError: CUDA error")
    for attack in (too_long, also_too_long):
        AttackResult.objects.create(
            run=run, attack=attack, error="maximum context length", error_permanent=True
        )
    AttackRun.objects.filter(pk=run.pk).update(status="succeeded")
    url = f"/write/redteam/runs/{run.pk}/retry-failed/"
    page = admin_client_.get(f"/write/redteam/runs/{run.pk}/").content.decode()
    assert "3 attacks got no reply" in page
    assert "2 of them were refused by the model for what they ask" in page
    assert "Retry the failed attack</button>" in page and f'action="{url}"' in page

    response = admin_client_.post(url, follow=True)

    retry = AttackRun.objects.get(retry_of=run)
    assert list(retry.entries.values_list("attack_id", flat=True)) == [crashed.pk]
    page = response.content.decode()
    assert "Retrying" not in page  # the part it polls says whether it is queued
    assert (
        f"2 failed attacks of run {run.pk} left out: the model refused them for what they ask "
        "(sent again, they would be refused again)."
    ) in page

    # A run whose only failures are refusals: no retry offered, and none made when asked.
    only_refused = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=model_version, queue=False
    )
    AttackResult.objects.create(
        run=only_refused, attack=too_long, error="maximum context length", error_permanent=True
    )
    AttackRun.objects.filter(pk=only_refused.pk).update(status="succeeded")
    url = f"/write/redteam/runs/{only_refused.pk}/retry-failed/"
    page = admin_client_.get(f"/write/redteam/runs/{only_refused.pk}/").content.decode()
    assert "1 attack got no reply" in page and "it was refused by the model" in page
    assert url not in page
    refused = admin_client_.post(url)
    assert refused.status_code == 409
    said = f"Run {only_refused.pk}'s 1 failed attack was refused by the model for what it asks"
    assert escape(said) in refused.content.decode()
    assert not AttackRun.objects.filter(retry_of=only_refused).exists()


TRACED_ERROR = (
    "DataError: the attack prompts could not be read.\n"
    '  File "/srv/tandem/labeling/redteam/services.py", line 12, in attack_run_execute\n'
    "    raise DataError(\n"
)


def test_a_failed_run_shows_its_reason_without_the_traceback(
    admin_client_, admin_user, model_version
):
    run = AttackRun.objects.create(
        requested_by=admin_user, model_version=model_version, seed=7, status="failed",
        error=TRACED_ERROR,
    )  # fmt: skip
    for url in ("/write/redteam/", f"/write/redteam/runs/{run.pk}/"):
        html = admin_client_.get(url).content.decode()
        assert "the attack prompts could not be read." in html, url
        assert "/srv/tandem" not in html and "File &quot;" not in html, url


def test_a_runs_page_polls_while_its_run_can_move_and_stops_once_finished(
    admin_client_, admin_user, policy
):
    """A run's own page asks again every 2 seconds while the run may change by itself
    (running, or queued where a live worker serves the generation queue), so a re-run's
    results show as they come; queued for no worker, it stops, names the queue and offers
    "Check again"; finished, it stops and says nothing of workers. Before, it never asked
    again: a running re-run showed nothing new until reloaded."""
    run = AttackRun.objects.create(model_version=policy, requested_by=admin_user, seed=1)
    url = reverse("labeling:attack-run", args=[run.pk])
    polls_only_while_work_can_move(
        admin_client_, url, job=run, element="run-status", trigger='hx-trigger="every 2s"'
    )

    AttackRun.objects.filter(pk=run.pk).update(status=AttackRun.Status.SUCCEEDED)
    html = admin_client_.get(url, HTTP_HX_REQUEST="true").content.decode()
    tag = re.search(r'<section id="run-status"[^>]*>', html).group(0)
    assert "hx-trigger" not in tag and "-no-worker" not in html
    assert "<h1>" not in html  # the run's part alone, not the whole page


def test_the_attack_runs_table_stops_polling_while_its_runs_wait_for_no_worker(
    admin_client_, admin_user, policy
):
    """A re-run queued where no live worker serves the generation queue cannot move: the table
    stops asking every 2 seconds, names the queue and offers "Check again" (without
    JavaScript, the Red team page). Before, it asked for as long as the page was open."""
    run = AttackRun.objects.create(model_version=policy, requested_by=admin_user, seed=1)
    polls_only_while_work_can_move(
        admin_client_,
        reverse("labeling:attack-runs"),
        job=run,
        element="attack-runs",
        trigger='hx-trigger="every 2s"',
    )


def test_the_runs_table_and_a_runs_page_say_it_is_queued_until_it_runs(
    admin_client_, red_team, trainer, model_version
):
    """Starting a re-run said "Re-running 1 stored attacks against policy-v1." (a retry:
    "Retrying 1 failed attack of run 1 as run 2.") as a message at the top of the page, where
    it stayed once the part the page polls showed the run succeeded. That part says it, while
    the run waits for a worker (queued and published)."""
    _, _, reply = red_team
    redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    response = admin_client_.post("/write/redteam/runs/new/", {"model_version": model_version.pk})
    assert response.status_code == 302 and response.url == "/write/redteam/#attack-runs"
    run = AttackRun.objects.get()
    worker_seen()
    run_url = f"/write/redteam/runs/{run.pk}/"
    said = {
        "/write/redteam/runs/": f"Run #{run.pk} (1 stored attack against policy-v1) is queued "
        "for a worker.",
        run_url: f"Run #{run.pk} is queued for a worker.",
    }

    def polled() -> dict[str, str]:
        return {url: admin_client_.get(url, **HTMX).content.decode() for url in said}

    assert not any(said[url] in html for url, html in polled().items())  # not published
    AttackRun.objects.filter(pk=run.pk).update(published_at=timezone.now())
    assert all(said[url] in html for url, html in polled().items())
    AttackRun.objects.filter(pk=run.pk).update(status=AttackRun.Status.SUCCEEDED)
    pages = [admin_client_.get(url).content.decode() for url in ("/write/redteam/", run_url)]
    assert not any("queued" in html for html in [*polled().values(), *pages])
