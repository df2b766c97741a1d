import random

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import user_create_trainer
from labeling import feedback_selectors, feedback_services
from labeling.models import Conversation, Feedback, Message
from ranking import exports
from ranking import services as ranking_services
from ranking.services import RankingInput
from sampler import services as sampler_services
from tests.ranking.conftest import finished_conversation

PROMPT = [{"role": "user", "content": "hi! how was your weekend?"}]


@pytest.fixture
def flag_everything(settings):
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {}
    settings.CONTENT_FILTER_PATTERNS = {"everything": ["^"]}
    return settings


@pytest.fixture
def flag_nothing(settings):
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {}
    settings.CONTENT_FILTER_PATTERNS = {}
    return settings


def _job(user, n=2):
    job = sampler_services.generation_job_create(
        messages=PROMPT,
        n=n,
        params={"max_new_tokens": 8},
        seed=7,
        requested_by=user,
        queue=False,
    )
    return sampler_services.generation_job_run(job_id=job.pk)


def _url(kind, target_id):
    return f"/write/feedback/{kind}/{target_id}/"


def _post(client, kind, target_id, data):
    return client.post(_url(kind, target_id), data, HTTP_HX_REQUEST="true")


def _model_message(owner, policy):
    conversation = Conversation.objects.create(owner=owner)
    user_turn = Message.objects.create(conversation=conversation, role="user", content="hi")
    return Message.objects.create(
        conversation=conversation,
        parent=user_turn,
        role="assistant",
        content="hello!",
        origin=Message.Origin.MODEL,
        model_version=policy,
    )


# ---- giving feedback ---------------------------------------------------------------------------


def test_thumbs_are_one_row_per_user_and_target_and_can_be_changed(
    flag_nothing, policy, trainer, trainer_client
):
    sample = _job(trainer).samples.first()
    response = _post(trainer_client, "sample", sample.pk, {"action": "rate", "rating": "up"})
    assert response.status_code == 200
    assert 'aria-label="Thumbs up" aria-pressed="true"' in response.content.decode()

    _post(trainer_client, "sample", sample.pk, {"action": "rate", "rating": "down"})
    feedback = Feedback.objects.get()
    assert feedback.rating == "down" and feedback.user == trainer
    assert feedback.model_version == policy  # copied for counts per model version

    _post(trainer_client, "sample", sample.pk, {"action": "rate", "rating": ""})
    assert Feedback.objects.get().rating == ""


def test_a_report_keeps_the_thumb_and_stores_categories_and_comment(
    flag_nothing, policy, trainer, trainer_client
):
    sample = _job(trainer).samples.first()
    _post(trainer_client, "sample", sample.pk, {"action": "rate", "rating": "down"})
    response = _post(
        trainer_client,
        "sample",
        sample.pk,
        {"action": "report", "categories": ["untruthful", "harmful"], "comment": " made up "},
    )
    assert response.status_code == 200
    feedback = Feedback.objects.get()
    assert feedback.rating == "down"
    assert feedback.categories == ["harmful", "untruthful"]
    assert feedback.comment == "made up"
    assert "Reported: Harmful, Untruthful" in response.content.decode()


def test_a_too_long_comment_is_refused_and_comes_back_to_the_trainer(
    flag_nothing, policy, trainer, trainer_client
):
    sample = _job(trainer).samples.first()
    comment = "x" * 2001
    response = _post(trainer_client, "sample", sample.pk, {"action": "report", "comment": comment})
    assert response.status_code == 422
    assert comment in response.content.decode()
    assert not Feedback.objects.exists()


def test_an_unknown_category_is_refused(flag_nothing, policy, trainer, trainer_client):
    sample = _job(trainer).samples.first()
    response = _post(
        trainer_client, "sample", sample.pk, {"action": "report", "categories": ["boring"]}
    )
    assert response.status_code == 422
    assert not Feedback.objects.exists()


def test_without_htmx_a_post_redirects_back_to_the_feedback_page(
    flag_nothing, policy, trainer, trainer_client
):
    sample = _job(trainer).samples.first()
    response = trainer_client.post(_url("sample", sample.pk), {"action": "rate", "rating": "up"})
    assert response.status_code == 302 and response.url == _url("sample", sample.pk)
    page = trainer_client.get(_url("sample", sample.pk))
    assert page.status_code == 200 and sample.text in page.content.decode()


def test_feedback_on_a_model_written_message_records_its_model(policy, trainer, trainer_client):
    message = _model_message(trainer, policy)
    response = _post(trainer_client, "message", message.pk, {"action": "rate", "rating": "up"})
    assert response.status_code == 200
    feedback = Feedback.objects.get()
    assert feedback.message == message and feedback.sample is None
    assert feedback.model_version == policy


def test_human_messages_and_unknown_kinds_take_no_feedback(policy, trainer, trainer_client):
    message = _model_message(trainer, policy)
    assert trainer_client.get(_url("message", message.parent_id)).status_code == 404
    assert trainer_client.get(_url("conversation", message.pk)).status_code == 404


# ---- who sees what -----------------------------------------------------------------------------


def test_a_trainer_cannot_read_others_feedback(flag_nothing, policy, trainer, other_trainer):
    from django.test import Client

    sample = _job(other_trainer).samples.first()
    target = feedback_selectors.feedback_target_get(
        kind="sample", target_id=sample.pk, user=other_trainer
    )
    theirs = feedback_services.feedback_report(
        user=other_trainer, target=target, categories=["biased"], comment="secret"
    )
    client = Client()
    client.force_login(trainer)

    assert client.get(f"/write/feedback/{theirs.pk}/").status_code == 404
    # Nor the target: it is another trainer's sample.
    assert client.get(_url("sample", sample.pk)).status_code == 404
    assert _post(client, "sample", sample.pk, {"action": "rate", "rating": "up"}).status_code == 404
    mine = client.get("/write/feedback/mine/")
    assert mine.status_code == 200 and "secret" not in mine.content.decode()

    client.force_login(other_trainer)
    response = client.get(f"/write/feedback/{theirs.pk}/")
    assert response.status_code == 302 and response.url == _url("sample", sample.pk)
    assert "secret" in client.get(response.url).content.decode()


def test_a_trainer_cannot_rate_messages_of_others_conversations(policy, trainer, other_trainer):
    from django.test import Client

    message = _model_message(other_trainer, policy)
    client = Client()
    client.force_login(trainer)
    assert (
        _post(client, "message", message.pk, {"action": "rate", "rating": "up"}).status_code == 404
    )
    assert not Feedback.objects.exists()


def test_the_feedback_page_is_for_admins_only(trainer_client, admin_client_):
    assert trainer_client.get("/write/feedback/").status_code == 403
    assert admin_client_.get("/write/feedback/").status_code == 200


# ---- the content filter's false positives and negatives ---------------------------------------


def test_a_false_positive_report_is_counted_on_the_feedback_page(
    flag_everything, policy, trainer, trainer_client, admin_client_
):
    job = _job(trainer, n=3)
    sample = job.samples.first()
    response = _post(trainer_client, "sample", sample.pk, {"action": "report", "filter_wrong": "1"})
    assert response.status_code == 200
    assert "it flagged this, but it is fine" in response.content.decode()
    feedback = Feedback.objects.get()
    assert feedback.filter_report == Feedback.FilterReport.FALSE_POSITIVE
    assert feedback.moderation.sample == sample and feedback.moderation.flagged

    page = admin_client_.get("/write/feedback/")
    confusion = page.context["confusion"]
    assert len(confusion) == 1
    row = confusion[0]
    assert row["filter_name"] == "builtin"
    assert (row["flagged_count"], row["passed_count"]) == (3, 0)
    assert (row["false_positive"], row["false_negative"]) == (1, 0)
    assert (row["true_positive_assumed"], row["true_negative_assumed"]) == (2, 0)
    html = page.content.decode()
    assert '<td class="false-positive">1</td>' in html
    assert "True positives (assumed: flagged, not reported)" in html

    # Withdrawing the report takes it out of the counts.
    _post(trainer_client, "sample", sample.pk, {"action": "report"})
    row = admin_client_.get("/write/feedback/").context["confusion"][0]
    assert row["false_positive"] == 0 and row["true_positive_assumed"] == 3


def test_a_false_negative_report_is_counted(
    flag_nothing, policy, trainer, trainer_client, admin_client_
):
    sample = _job(trainer).samples.first()
    _post(
        trainer_client,
        "sample",
        sample.pk,
        {"action": "report", "filter_wrong": "1", "categories": ["harmful"]},
    )
    assert Feedback.objects.get().filter_report == Feedback.FilterReport.FALSE_NEGATIVE
    row = admin_client_.get("/write/feedback/").context["confusion"][0]
    assert (row["false_negative"], row["true_negative_assumed"]) == (1, 1)


def test_the_filter_cannot_be_wrong_about_text_it_never_saw(
    settings, policy, trainer, trainer_client
):
    settings.CONTENT_FILTER = "none"
    sample = _job(trainer).samples.first()
    response = _post(trainer_client, "sample", sample.pk, {"action": "report", "filter_wrong": "1"})
    assert response.status_code == 422
    assert not Feedback.objects.exists()


# ---- the admins' overview ----------------------------------------------------------------------


def test_overview_counts_per_model_version_and_filters(
    flag_nothing, policy, trainer, other_trainer, admin_client_
):
    first, second = _job(trainer, n=2).samples.all()
    for user, sample, rating, categories in [
        (trainer, first, "up", []),
        (trainer, second, "down", ["harmful", "biased"]),
        (other_trainer, first, "down", ["harmful"]),
    ]:
        # Selected as the sample's requester; the services take any user's opinion.
        target = feedback_selectors.feedback_target_get(
            kind="sample", target_id=sample.pk, user=trainer
        )
        feedback_services.feedback_rate(user=user, target=target, rating=rating)
        feedback_services.feedback_report(user=user, target=target, categories=categories)

    page = admin_client_.get("/write/feedback/")
    (row,) = page.context["by_model_version"]
    assert row["model_version__name"] == policy.name
    assert (row["total"], row["up"], row["down"], row["reports"]) == (3, 1, 2, 2)
    assert dict(row["categories"]) == {
        "harmful": 2,
        "untruthful": 0,
        "biased": 1,
        "refuses_wrongly": 0,
        "other": 0,
    }

    filtered = admin_client_.get("/write/feedback/", {"category": "biased"})
    assert filtered.context["page"].paginator.count == 1
    downs = admin_client_.get("/write/feedback/", {"rating": "down", "model_version": policy.pk})
    assert downs.context["page"].paginator.count == 2
    future = admin_client_.get("/write/feedback/", {"date_from": "2999-01-01"})
    assert future.context["page"].paginator.count == 0
    bad = admin_client_.get("/write/feedback/", {"date_from": "not a date"})
    assert bad.status_code == 200 and bad.context["page"].paginator.count == 3


# ---- raw exports -------------------------------------------------------------------------------


def test_rankings_export_carries_moderation_and_feedback_per_candidate(
    flag_everything, policy, other_trainer, admin_user
):
    flag_everything.RANKING_MAX_NEW_TOKENS = 8
    for index in range(2):
        finished_conversation(other_trainer, turns=(f"question {index}?", f"answer {index}."))
    rng = random.Random(0)
    tasks = [
        ranking_services.ranking_task_create(rng=rng, alternatives=3, overlap=1, queue=False)
        for _ in range(2)
    ]
    for task in tasks:
        ranking_services.ranking_task_prepare(task_id=task.pk)
    ranker = user_create_trainer(username="ranker", password="x")
    for _ in tasks:
        assignment = ranking_services.task_claim_next(trainer=ranker)
        ids = sorted(assignment.task.candidates.values_list("id", flat=True))
        ranking_services.ranking_submit(
            assignment=assignment,
            trainer=ranker,
            ranking=RankingInput([[candidate] for candidate in ids]),
        )
    task = tasks[0]
    source = task.candidates.get(is_source=True).message
    sampled = task.candidates.filter(is_source=False).order_by("position").first().message
    for kind, target_id in [("message", source.pk), ("sample", sampled.sample_id)]:
        target = feedback_selectors.feedback_target_get(
            kind=kind, target_id=target_id, user=admin_user
        )
        feedback_services.feedback_rate(user=admin_user, target=target, rating="down")
        if kind == "sample":
            feedback_services.feedback_report(
                user=admin_user, target=target, categories=["untruthful"], filter_wrong=True
            )

    with CaptureQueriesContext(connection) as queries:
        records = list(exports.ranking_records(exports.ExportFilters()))
    # Per chunk: tasks, candidates, moderation, feedback, rankings, and the empty next chunk.
    assert len(queries) <= 6
    assert len(records) == 2

    record = next(r for r in records if r["task_id"] == task.pk)
    by_message = {c["message_id"]: c for c in record["candidates"]}
    assert by_message[source.pk]["moderation"] is None  # written without a sample
    assert by_message[source.pk]["feedback"]["down"] == 1
    moderation = by_message[sampled.pk]["moderation"]
    assert moderation["filter"] == "builtin" and moderation["flagged"] is True
    assert moderation["categories"] == ["everything"] and moderation["version"]
    assert by_message[sampled.pk]["feedback"] == {
        "up": 0,
        "down": 1,
        "reports": {
            "harmful": 0,
            "untruthful": 1,
            "biased": 0,
            "refuses_wrongly": 0,
            "other": 0,
        },
    }
