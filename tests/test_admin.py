"""Every model of the project's apps is in the admin, and its list page (with search) renders
for staff."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from sampler.jobs.admin import JobAdminMixin
from tests.sampler.conftest import suggestion_sample

APPS = ("accounts", "labeling", "ranking", "sampler")
every_model = pytest.mark.parametrize(
    "model",
    [m for app in APPS for m in apps.get_app_config(app).get_models()],
    ids=lambda m: m.__name__,
)


def test_every_model_of_the_apps_is_registered():
    missing = [
        model.__name__
        for app in APPS
        for model in apps.get_app_config(app).get_models()
        if model not in admin.site._registry
    ]
    assert missing == []


@every_model
def test_changelist_with_search_renders(admin_client_, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    response = admin_client_.get(url, {"q": "x"})
    assert response.status_code == 200


@every_model
def test_every_model_admin_has_list_columns_filters_and_search(model):
    model_admin = admin.site._registry[model]

    assert list(model_admin.list_display) != ["__str__"]
    assert model_admin.list_filter
    assert model_admin.search_fields


@every_model
def test_the_changelist_shows_its_filters(admin_client_, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    html = admin_client_.get(url).content.decode()

    assert 'id="changelist-filter"' in html
    assert 'id="searchbar"' in html


# ---- list pages of large tables: a fixed number of queries, whatever the rows --------------


def _feedback_rows(owner, version, index):
    from labeling.feedback.models import Feedback
    from tests.labeling.feedback.conftest import model_message

    message = model_message(owner, version)
    Feedback.objects.create(user=owner, message=message, model_version=version, rating="up")
    sample = suggestion_sample(owner, version, message)
    Feedback.objects.create(user=owner, sample=sample, model_version=version, rating="down")


def _conversation_rows(owner, version, index):
    from tests.labeling.feedback.conftest import model_message

    model_message(owner, version)


def _generation_job_rows(owner, version, index):
    from tests.labeling.feedback.conftest import model_message

    suggestion_sample(owner, version, model_message(owner, version))


def _side_by_side_rows(owner, version, index):
    from sampler.comparisons.models import ModelComparison, SideBySide
    from tests.ranking.conftest import model_version_create

    other = model_version_create(f"other-{index}")
    comparison = ModelComparison.objects.create(
        version_a=version, version_b=other, reward_version=other, requested_by=owner
    )
    SideBySide.objects.create(
        comparison=comparison, version_a=version, version_b=other, reply_a="a", reply_b="b"
    )


def _attack_rows(owner, version, index):
    from labeling.conversations.models import Message
    from labeling.redteam.models import Attack
    from tests.labeling.feedback.conftest import model_message

    reply = model_message(owner, version)
    correction = Message.objects.create(
        conversation=reply.conversation, parent=reply.parent, role="assistant", content="No."
    )
    Attack.objects.create(
        conversation=reply.conversation,
        message=reply,
        prompt_message=reply.parent,
        category="harmful",
        model_version=version,
        correction=correction,
        created_by=owner,
    )


@pytest.mark.parametrize(
    ("changelist", "add_rows"),
    [
        ("admin:labeling_feedback_changelist", _feedback_rows),
        ("admin:labeling_conversation_changelist", _conversation_rows),
        ("admin:sampler_generationjob_changelist", _generation_job_rows),
        ("admin:sampler_sidebyside_changelist", _side_by_side_rows),
        ("admin:labeling_attack_changelist", _attack_rows),
    ],
)
def test_a_large_tables_list_page_runs_as_many_queries_for_many_rows_as_for_one(
    admin_client_, trainer, changelist, add_rows
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.ranking.conftest import model_version_create

    version = model_version_create("policy")
    url = reverse(changelist)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client_.get(url).status_code == 200
        return len(captured)

    add_rows(trainer, version, 0)
    one = queries()
    for index in range(1, 5):
        add_rows(trainer, version, index)

    assert queries() == one


def test_the_conversation_list_counts_the_writers_messages_also_when_searching(
    admin_client_, trainer
):
    from labeling.conversations.models import Conversation, Message
    from tests.labeling.conftest import write_turns

    conversation = Conversation.objects.create(owner=trainer, title="Weekend")
    first, _ = write_turns(conversation, trainer, "hi there", "hi again")
    Message.objects.create(
        conversation=conversation, parent=first, role="assistant", content="hi", is_candidate=True
    )
    url = reverse("admin:labeling_conversation_changelist")

    for query in ({}, {"q": "hi"}):
        page = admin_client_.get(url, query)
        shown = page.context["cl"].result_list
        assert [row.own_messages for row in shown] == [2], query


# ---- read-only pages: their rows still go with the row they belong to ---------------------


def test_deleting_a_user_takes_their_guideline_reads_with_them(admin_client_, trainer):
    from django.contrib.auth import get_user_model

    from labeling.guidelines.models import GuidelineAcknowledgement
    from labeling.guidelines.services import guideline_acknowledge, guideline_version_ensure_current

    guideline_acknowledge(user=trainer, version=guideline_version_ensure_current())
    url = reverse("admin:auth_user_delete", args=[trainer.pk])

    assert "Cannot delete" not in admin_client_.get(url).content.decode()
    response = admin_client_.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=trainer.pk).exists()
    assert not GuidelineAcknowledgement.objects.exists()


def test_deleting_a_conversation_takes_the_feedback_on_its_replies_with_it(admin_client_, trainer):
    from labeling.conversations.models import Conversation
    from labeling.feedback.models import Feedback
    from tests.labeling.feedback.conftest import model_message
    from tests.ranking.conftest import model_version_create

    version = model_version_create("policy")
    reply = model_message(trainer, version)
    Feedback.objects.create(user=trainer, message=reply, model_version=version, rating="up")
    url = reverse("admin:labeling_conversation_delete", args=[reply.conversation_id])

    response = admin_client_.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=reply.conversation_id).exists()
    assert not Feedback.objects.exists()


def test_the_read_only_pages_still_delete_nothing_themselves(admin_client_, trainer):
    from labeling.guidelines.models import GuidelineAcknowledgement
    from labeling.guidelines.services import guideline_acknowledge, guideline_version_ensure_current

    read = guideline_acknowledge(user=trainer, version=guideline_version_ensure_current())
    url = reverse("admin:labeling_guidelineacknowledgement_delete", args=[read.pk])
    changelist = reverse("admin:labeling_guidelineacknowledgement_changelist")

    assert admin_client_.post(url, {"post": "yes"}).status_code == 403
    admin_client_.post(
        changelist, {"action": "delete_selected", "_selected_action": [read.pk], "post": "yes"}
    )
    assert GuidelineAcknowledgement.objects.filter(pk=read.pk).exists()
    page = admin_client_.get(
        reverse("admin:labeling_guidelineacknowledgement_change", args=[read.pk])
    )
    assert "deletelink" not in page.content.decode()


job_models = pytest.mark.parametrize(
    "model",
    [
        m
        for app in APPS
        for m in apps.get_app_config(app).get_models()
        if isinstance(admin.site._registry.get(m), JobAdminMixin)
    ],
    ids=lambda m: m.__name__,
)


@job_models
def test_no_job_is_added_in_the_admin_where_nothing_would_check_or_queue_it(admin_client_, model):
    name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
    assert admin_client_.get(reverse(f"{name}_add")).status_code == 403
    assert (
        reverse(f"{name}_add")
        not in admin_client_.get(reverse(f"{name}_changelist")).content.decode()
    )


@job_models
def test_no_job_admin_edits_what_a_job_was_asked_for_nor_what_its_executor_recorded(model):
    """A job's publish token was editable on every job admin but the red-team run's: changed,
    the queued message no longer matched it, and no worker ran the job. A training run's
    config, data filters, checkpoint directory, log and progress, a generation job's prompt,
    parameters and seed, an export's progress were editable too: a retry ran what nothing
    checked, and a finished job claimed inputs its outputs did not come from."""
    model_admin = admin.site._registry[model]
    read_only = set(model_admin.get_readonly_fields(None))
    names = {field.name for field in [*model._meta.fields, *model._meta.many_to_many]}
    assert {"publish_token", "status", "attempts", "worker", "queued_at"} <= read_only
    assert names - {model._meta.pk.name} == read_only


def test_every_kind_of_job_has_its_admin_and_it_is_a_job_admin():
    from sampler.jobs.kinds import job_models as kinds_models

    assert {m for m in kinds_models()} <= {
        m for m, a in admin.site._registry.items() if isinstance(a, JobAdminMixin)
    }


def test_the_admin_names_every_model_in_a_correct_plural():
    """Django adds an "s": a name ending in a consonant and "y" needs its own plural."""
    import re

    wrong = [
        str(m._meta.verbose_name_plural)
        for app in APPS
        for m in apps.get_app_config(app).get_models()
        if re.search(r"[^aeiou]ys$", str(m._meta.verbose_name_plural))
    ]
    assert wrong == []


def test_a_training_runs_change_page_shows_it_and_a_post_changes_nothing_of_it(admin_client_):
    from sampler.runs.models import TrainingRun

    run = TrainingRun.objects.create(
        kind="reward",
        output_name="rm",
        config={"epochs": 1},
        dataset={"filters": {}},
        checkpoint_dir="/srv/checkpoints/run",
        status="failed",
    )
    url = reverse("admin:sampler_trainingrun_change", args=[run.pk])
    assert admin_client_.get(url).status_code == 200
    response = admin_client_.post(
        url,
        {
            "kind": "sft",
            "config": '{"epochs": 50}',
            "dataset": '{"filters": {"project": 1}}',
            "progress": "0.5",
            "metrics": "{}",
            "log": "forged",
            "output_name": "other",
            "checkpoint_dir": "/etc",
            "status": "queued",
        },
    )
    assert response.status_code == 403
    run.refresh_from_db()
    assert (run.kind, run.config, run.dataset, run.checkpoint_dir, run.log, run.progress) == (
        "reward",
        {"epochs": 1},
        {"filters": {}},
        "/srv/checkpoints/run",
        "",
        0.0,
    )
    assert run.status == "failed"


@pytest.mark.parametrize(
    "name", ["sampler_sample", "sampler_moderationresult"], ids=["Sample", "ModerationResult"]
)
def test_what_a_model_wrote_and_the_filters_verdict_on_it_are_not_changed_in_the_admin(
    admin_client_, trainer, name
):
    """A sample's text and a verdict's flag were editable: the sample's verdict, the replies
    that are its text unedited and the rankings of it then no longer matched its words."""
    from sampler.moderation.models import ModerationResult
    from tests.labeling.feedback.conftest import model_message
    from tests.ranking.conftest import model_version_create

    version = model_version_create("admin-sample")
    sample = suggestion_sample(trainer, version, model_message(trainer, version), text="hi there")
    verdict = ModerationResult.objects.create(
        sample=sample, filter_name="builtin", filter_version="1", flagged=True
    )
    row = sample if name == "sampler_sample" else verdict
    change = reverse(f"admin:{name}_change", args=[row.pk])
    assert admin_client_.get(change).status_code == 200
    assert admin_client_.get(reverse(f"admin:{name}_add")).status_code == 403
    admin_client_.post(change, {"text": "forged", "flagged": "", "job": sample.job_id, "index": 0})
    assert (
        admin_client_.post(
            reverse(f"admin:{name}_delete", args=[row.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    sample.refresh_from_db()
    verdict.refresh_from_db()
    assert (sample.text, verdict.flagged) == ("hi there", True)


def test_a_written_turn_is_not_changed_added_nor_deleted_in_the_admin(admin_client_, trainer):
    """A turn's content, role and parent were editable on its page and its conversation's: a
    ranked reply, an exported demonstration or a red-team attack's prompt then no longer held
    the text it had when it was ranked, exported or stored."""
    from labeling.conversations.admin import ConversationAdmin
    from labeling.conversations.models import Conversation
    from tests.labeling.conftest import write_turns

    conversation = Conversation.objects.create(owner=trainer, title="Weekend")
    first, reply = write_turns(conversation, trainer, "hi there", "hello")
    change = reverse("admin:labeling_message_change", args=[reply.pk])
    assert admin_client_.get(change).status_code == 200
    assert admin_client_.get(reverse("admin:labeling_message_add")).status_code == 403
    admin_client_.post(
        change,
        {
            "conversation": conversation.pk,
            "parent": first.pk,
            "role": "assistant",
            "origin": "human",
            "content": "forged",
        },
    )
    delete = reverse("admin:labeling_message_delete", args=[reply.pk])
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    reply.refresh_from_db()
    assert reply.content == "hello"

    page = admin_client_.get(reverse("admin:labeling_conversation_change", args=[conversation.pk]))
    request = page.wsgi_request
    inlines = admin.site._registry[Conversation].get_inline_instances(request, conversation)
    assert isinstance(admin.site._registry[Conversation], ConversationAdmin)
    assert inlines and not any(
        inline.has_change_permission(request, conversation)
        or inline.has_add_permission(request, conversation)
        or inline.has_delete_permission(request, conversation)
        for inline in inlines
    )
    assert "hello" in page.content.decode()


def test_a_jobs_page_is_a_view_and_the_cancel_action_still_works_from_the_list(
    admin_client_, trainer
):
    """A job's page offers no save (it would write back the row as read, over what a worker
    wrote meanwhile); the list's actions still retry and cancel."""
    from sampler.generation.models import GenerationJob
    from tests.labeling.feedback.conftest import model_message
    from tests.ranking.conftest import model_version_create
    from tests.sampler.conftest import suggestion_job

    version = model_version_create("admin-actions")
    job = suggestion_job(trainer, version, model_message(trainer, version))
    page = admin_client_.get(reverse("admin:sampler_generationjob_change", args=[job.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    admin_client_.post(
        reverse("admin:sampler_generationjob_changelist"),
        {"action": "cancel_jobs", "_selected_action": [job.pk]},
    )
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.CANCELLED


# ---- numbers in a list page's address that the database cannot hold ----------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"model_version": "9" * 24},
        {"model_version_id": "9" * 24},
        {"requested_by": "-" + "9" * 24},
    ],
)
def test_a_list_page_filtered_by_a_number_too_large_for_the_database_is_a_400_page(
    admin_client_, query
):
    url = reverse("admin:sampler_generationjob_changelist")

    response = admin_client_.get(url, query)

    assert response.status_code == 400
    html = response.content.decode()
    assert "too large" in html
    assert 'href="' + url + '"' in html


def test_another_bad_request_is_not_said_to_be_a_number_too_large(client, admin_client_):
    """Django answers every bad request of a page (a host it does not serve, a form of too many
    fields) with its ``400.html`` template: the page about a number too large is the admin's
    own, and is not what those say."""
    bad_host = client.get("/accounts/login/", headers={"host": "elsewhere.example"})
    too_many = admin_client_.post(
        reverse("admin:sampler_generationjob_changelist"),
        {f"field{index}": "x" for index in range(1001)},
    )

    for response in (bad_host, too_many):
        assert response.status_code == 400
        assert "too large" not in response.content.decode().lower()
