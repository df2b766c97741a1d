import re

from django.test import Client
from django.urls import reverse

from labeling.conversations import services as conversation_services
from labeling.conversations.models import Conversation, Message
from labeling.feedback import selectors as feedback_selectors
from labeling.feedback import services as feedback_services
from labeling.feedback.models import Feedback
from sampler.moderation.services import samples_moderate, texts_moderate
from tests.labeling.conftest import HTMX, write_turns
from tests.labeling.feedback.conftest import feedback_url, model_message, post_feedback, sample_job
from tests.sampler.conftest import suggestion_sample

# ---- giving feedback ---------------------------------------------------------------------------


def test_thumbs_are_one_row_per_user_and_target_and_can_be_changed(
    flag_nothing, policy, trainer, trainer_client
):
    sample = sample_job(trainer).samples.first()
    response = post_feedback(
        trainer_client, "sample", sample.pk, {"action": "rate", "rating": "up"}
    )
    assert response.status_code == 200
    assert 'aria-label="Thumbs up" aria-pressed="true"' in response.content.decode()

    post_feedback(trainer_client, "sample", sample.pk, {"action": "rate", "rating": "down"})
    feedback = Feedback.objects.get()
    assert feedback.rating == "down" and feedback.user == trainer
    assert feedback.model_version == policy  # copied for counts per model version

    post_feedback(trainer_client, "sample", sample.pk, {"action": "rate", "rating": ""})
    assert not Feedback.objects.exists()  # the thumb taken back: nothing is said


def test_feedback_that_says_nothing_is_not_kept_nor_counted(
    flag_nothing, policy, trainer, trainer_client, admin_client_
):
    """A thumb taken back, or a report sent or withdrawn with nothing in it, leaves no row that
    says nothing: the admins' "Feedback" count per model version and the trainer's own list
    hold only feedback that says something."""
    first, second = sample_job(trainer).samples.all()
    for data in ({"action": "rate", "rating": ""}, {"action": "report", "comment": "  "}):
        response = post_feedback(trainer_client, "sample", first.pk, data)
        assert response.status_code == 200
    assert not Feedback.objects.exists()

    post_feedback(trainer_client, "sample", first.pk, {"action": "rate", "rating": "up"})
    post_feedback(trainer_client, "sample", first.pk, {"action": "rate", "rating": ""})
    post_feedback(trainer_client, "sample", second.pk, {"action": "report", "comment": "Odd."})
    post_feedback(trainer_client, "sample", second.pk, {"action": "rate", "rating": "down"})
    post_feedback(trainer_client, "sample", second.pk, {"action": "report", "comment": ""})
    assert list(Feedback.objects.values_list("sample", "rating", "comment")) == [
        (second.pk, "down", "")
    ]
    withdrawn = post_feedback(trainer_client, "sample", second.pk, {"action": "rate", "rating": ""})
    assert withdrawn.status_code == 200
    assert 'aria-pressed="true"' not in withdrawn.content.decode()
    assert not Feedback.objects.exists()

    (row,) = admin_client_.get("/write/feedback/", {"rating": ""}).context["by_model_version"] or [
        {"total": 0}
    ]
    assert row["total"] == 0
    assert not trainer_client.get("/write/feedback/mine/").context["page"].object_list


def test_a_report_keeps_the_thumb_and_stores_categories_and_comment(
    flag_nothing, policy, trainer, trainer_client
):
    sample = sample_job(trainer).samples.first()
    post_feedback(trainer_client, "sample", sample.pk, {"action": "rate", "rating": "down"})
    response = post_feedback(
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
    assert ">Saved</span>" in response.content.decode()
    # The comment is on the trainer's own list too.
    assert "made up" in trainer_client.get(reverse("labeling:feedback-mine")).content.decode()
    # Nothing ticked or written: no report is kept, and the widget says so (not "Saved").
    emptied = post_feedback(trainer_client, "sample", sample.pk, {"action": "report"}).content
    assert b"No report kept: tick what is wrong or write a comment." in emptied
    assert b">Saved</span>" not in emptied
    assert Feedback.objects.get().categories == []


def test_a_too_long_comment_is_refused_and_comes_back_to_the_trainer(
    flag_nothing, policy, trainer, trainer_client
):
    sample = sample_job(trainer).samples.first()
    comment = "x" * 2001
    response = post_feedback(
        trainer_client, "sample", sample.pk, {"action": "report", "comment": comment}
    )
    assert response.status_code == 422
    assert comment in response.content.decode()
    assert not Feedback.objects.exists()


def test_an_unknown_category_is_refused(flag_nothing, policy, trainer, trainer_client):
    sample = sample_job(trainer).samples.first()
    response = post_feedback(
        trainer_client, "sample", sample.pk, {"action": "report", "categories": ["boring"]}
    )
    assert response.status_code == 422
    assert not Feedback.objects.exists()


def test_without_htmx_a_post_redirects_back_to_the_feedback_page(
    flag_nothing, policy, trainer, trainer_client
):
    sample = sample_job(trainer).samples.first()
    response = trainer_client.post(
        feedback_url("sample", sample.pk), {"action": "rate", "rating": "up"}
    )
    assert response.status_code == 302 and response.url == feedback_url("sample", sample.pk)
    page = trainer_client.get(feedback_url("sample", sample.pk))
    assert page.status_code == 200 and sample.text in page.content.decode()


def test_feedback_on_a_model_written_message_records_its_model(policy, trainer, trainer_client):
    message = model_message(trainer, policy)
    response = post_feedback(
        trainer_client, "message", message.pk, {"action": "rate", "rating": "up"}
    )
    assert response.status_code == 200
    feedback = Feedback.objects.get()
    assert feedback.message == message and feedback.sample is None
    assert feedback.model_version == policy


def test_human_messages_and_unknown_kinds_take_no_feedback(policy, trainer, trainer_client):
    message = model_message(trainer, policy)
    assert trainer_client.get(feedback_url("message", message.parent_id)).status_code == 404
    assert trainer_client.get(feedback_url("conversation", message.pk)).status_code == 404


# ---- who sees what -----------------------------------------------------------------------------


def test_a_trainer_cannot_read_others_feedback(flag_nothing, policy, trainer, other_trainer):
    sample = sample_job(other_trainer).samples.first()
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
    assert client.get(feedback_url("sample", sample.pk)).status_code == 404
    assert (
        post_feedback(client, "sample", sample.pk, {"action": "rate", "rating": "up"}).status_code
        == 404
    )
    mine = client.get("/write/feedback/mine/")
    assert mine.status_code == 200 and "secret" not in mine.content.decode()

    client.force_login(other_trainer)
    response = client.get(f"/write/feedback/{theirs.pk}/")
    assert response.status_code == 302 and response.url == feedback_url("sample", sample.pk)
    assert "secret" in client.get(response.url).content.decode()


def test_a_trainer_cannot_rate_messages_of_others_conversations(policy, trainer, other_trainer):
    message = model_message(other_trainer, policy)
    client = Client()
    client.force_login(trainer)
    assert (
        post_feedback(client, "message", message.pk, {"action": "rate", "rating": "up"}).status_code
        == 404
    )
    assert not Feedback.objects.exists()


def test_a_writer_cannot_rate_replies_sampled_for_ranking_in_their_conversation(
    policy, trainer, other_trainer
):
    """The alternatives sampled for a ranking task are stored in the writer's conversation but
    are not part of it: the writer never sees them, so rating one by its id is the 404 a
    missing id gets. Their own reply (the task's source) they rate; the trainer the task was
    given to rates its replies by the numbers they are shown under, not by their ids (the
    source's is the smallest)."""
    from ranking.rank import services as ranking_services
    from tests.ranking.conftest import finished_conversation, task_from_source

    source = finished_conversation(trainer).messages.get(role="assistant")
    task = task_from_source(source, model_version=policy)
    alternative = task.candidates.get(position=1).message
    writer = Client()
    writer.force_login(trainer)
    rate = {"action": "rate", "rating": "down"}

    missing = post_feedback(writer, "message", alternative.pk + 1000, rate)
    refused = post_feedback(writer, "message", alternative.pk, rate)
    assert (refused.status_code, refused.content) == (404, missing.content)
    assert writer.get(feedback_url("message", alternative.pk)).status_code == 404
    assert not Feedback.objects.exists()
    assert post_feedback(writer, "message", source.pk, rate).status_code == 200

    assignment = ranking_services.task_claim_next(trainer=other_trainer)
    assert assignment.task == task
    ranker = Client()
    ranker.force_login(other_trainer)
    assert post_feedback(ranker, "message", alternative.pk, rate).status_code == 404
    number = assignment.presentation_order.index(task.candidates.get(position=1).pk) + 1
    reply_url = reverse("labeling:feedback-reply", args=[assignment.pk, number])
    assert ranker.post(reply_url, rate, HTTP_HX_REQUEST="true").status_code == 200
    assert set(Feedback.objects.values_list("user", "message")) == {
        (trainer.pk, source.pk),
        (other_trainer.pk, alternative.pk),
    }


def test_the_feedback_page_is_for_admins_only(trainer_client, admin_client_):
    assert trainer_client.get("/write/feedback/").status_code == 403
    assert admin_client_.get("/write/feedback/").status_code == 200


# ---- the content filter's false positives and negatives ---------------------------------------


def test_a_false_positive_report_is_counted_on_the_feedback_page(
    flag_everything, policy, trainer, trainer_client, admin_client_
):
    job = sample_job(trainer, n=3)
    sample = job.samples.first()
    response = post_feedback(
        trainer_client, "sample", sample.pk, {"action": "report", "filter_wrong": "1"}
    )
    assert response.status_code == 200
    assert "it flagged this, but it is fine" in response.content.decode()
    feedback = Feedback.objects.get()
    assert feedback.filter_report == Feedback.FilterReport.FALSE_POSITIVE
    assert feedback.moderation.sample == sample and feedback.moderation.flagged

    page = admin_client_.get("/write/feedback/")
    confusion = page.context["confusion"]
    assert len(confusion) == 1
    row = confusion[0]
    assert row["filter_name"] == "flag-everything"
    assert (row["flagged_count"], row["passed_count"]) == (3, 0)
    assert (row["false_positive"], row["false_negative"]) == (1, 0)
    assert (row["true_positive_assumed"], row["true_negative_assumed"]) == (2, 0)
    html = page.content.decode()
    assert '<td class="false-positive">1</td>' in html
    assert "True positives (assumed: flagged, not reported)" in html

    # Withdrawing the report takes it out of the counts.
    post_feedback(trainer_client, "sample", sample.pk, {"action": "report"})
    row = admin_client_.get("/write/feedback/").context["confusion"][0]
    assert row["false_positive"] == 0 and row["true_positive_assumed"] == 3


def test_a_false_negative_report_is_counted(
    flag_nothing, policy, trainer, trainer_client, admin_client_
):
    sample = sample_job(trainer).samples.first()
    post_feedback(
        trainer_client,
        "sample",
        sample.pk,
        {"action": "report", "filter_wrong": "1", "categories": ["harmful"]},
    )
    assert Feedback.objects.get().filter_report == Feedback.FilterReport.FALSE_NEGATIVE
    row = admin_client_.get("/write/feedback/").context["confusion"][0]
    assert (row["false_negative"], row["true_negative_assumed"]) == (1, 1)


def test_a_refused_report_keeps_the_filter_was_wrong_tick(
    flag_everything, policy, trainer, trainer_client
):
    sample = sample_job(trainer).samples.first()
    response = post_feedback(
        trainer_client,
        "sample",
        sample.pk,
        {"action": "report", "filter_wrong": "1", "categories": ["biased"], "comment": "x" * 5001},
    )
    assert response.status_code == 422 and not Feedback.objects.exists()
    html = response.content.decode()
    assert re.search(r'name="filter_wrong" value="1"\s+checked', html), html


def test_a_filter_was_wrong_value_other_than_the_checkboxs_is_refused_and_nothing_kept(
    flag_everything, policy, trainer, trainer_client
):
    sample = sample_job(trainer).samples.first()
    for value in ("maybe", "0", "false", ""):
        response = post_feedback(
            trainer_client,
            "sample",
            sample.pk,
            {"action": "report", "filter_wrong": value, "categories": ["biased"]},
        )
        assert response.status_code == 422, value
        assert "The content filter was wrong is a checkbox" in response.content.decode(), value
        assert not Feedback.objects.exists(), value
    # The checkbox's own value is a tick; left out, no tick.
    post_feedback(trainer_client, "sample", sample.pk, {"action": "report", "filter_wrong": "1"})
    assert Feedback.objects.get().filter_report == Feedback.FilterReport.FALSE_POSITIVE
    post_feedback(
        trainer_client, "sample", sample.pk, {"action": "report", "categories": ["biased"]}
    )
    assert Feedback.objects.get().filter_report == ""


def test_the_filter_cannot_be_wrong_about_text_it_never_saw(
    settings, policy, trainer, trainer_client
):
    settings.CONTENT_FILTER = "none"
    sample = sample_job(trainer).samples.first()
    response = post_feedback(
        trainer_client, "sample", sample.pk, {"action": "report", "filter_wrong": "1"}
    )
    assert response.status_code == 422
    assert not Feedback.objects.exists()


def _edited_suggestion(trainer, policy, *, suggested: str, written: str) -> Message:
    """A reply ``trainer`` wrote on the Write page from a suggestion whose text was
    ``suggested`` (filtered, as suggestions are), edited into ``written``."""
    conversation = Conversation.objects.create(owner=trainer)
    (user_turn,) = write_turns(conversation, trainer, "hi")
    sample = suggestion_sample(trainer, policy, user_turn, text=suggested)
    samples_moderate(samples=[sample])
    message = conversation_services.message_append(
        conversation=conversation, author=trainer, content=written, sample_id=sample.pk
    )
    assert message.origin == Message.Origin.MODEL_EDITED and message.sample_id == sample.pk
    return message


def test_an_edited_suggestion_shows_no_verdict_on_the_suggestions_words(
    secrets_filter, policy, trainer, trainer_client
):
    """The suggestion gave a password away and was flagged; its writer took the password out.
    The Write page's widget must not warn about words the reply no longer holds, nor offer to
    dispute a verdict that was never on its text."""
    message = _edited_suggestion(
        trainer, policy, suggested="here is the password.", written="here is the answer."
    )

    response = trainer_client.get(feedback_url("message", message.pk), **HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="moderation-warning"' not in html
    assert 'name="filter_wrong"' not in html


def test_an_edited_suggestion_shows_the_verdict_on_its_own_text(
    secrets_filter, policy, trainer, trainer_client
):
    """Once the filter has seen the reply's own text (as preparing a ranking task from it does),
    that verdict is the one shown, and the one a "filter was wrong" report disputes."""
    message = _edited_suggestion(
        trainer, policy, suggested="here is the answer.", written="here is the password."
    )
    own = texts_moderate(texts=[message.content])[message.content]

    response = trainer_client.get(feedback_url("message", message.pk), **HTMX)
    reported = post_feedback(
        trainer_client, "message", message.pk, {"action": "report", "filter_wrong": "1"}
    )

    assert "The content filter flagged this: secrets" in response.content.decode()
    assert reported.status_code == 200
    feedback = Feedback.objects.get()
    assert feedback.moderation == own
    assert feedback.filter_report == Feedback.FilterReport.FALSE_POSITIVE


# ---- the admins' overview ----------------------------------------------------------------------


def test_overview_counts_per_model_version_and_filters(
    flag_nothing, policy, trainer, other_trainer, admin_client_
):
    first, second = sample_job(trainer, n=2).samples.all()
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


def test_the_overview_shows_no_feedback_for_filters_it_refuses(
    flag_nothing, trainer, admin_client_
):
    """A filter that is none (a date that is not one, a rating or model version that does not
    exist, days from after to before) is said with a 422, and the page shows no counts nor
    rows, rather than those of all the feedback, which the refused filters would pass for (as
    the quality page answers)."""
    (sample,) = sample_job(trainer, n=1).samples.all()
    target = feedback_selectors.feedback_target_get(
        kind="sample", target_id=sample.pk, user=trainer
    )
    feedback_services.feedback_rate(user=trainer, target=target, rating="up")

    for refused, error in [
        ({"date_from": "not a date"}, "Enter a valid date."),
        ({"rating": "sideways"}, "Select a valid choice."),
        ({"model_version": 10**6}, "There is no model version &quot;1000000&quot;"),
        ({"date_from": "2026-12-05", "date_to": "2026-12-04"}, "The start date is after the end"),
    ]:
        response = admin_client_.get("/write/feedback/", {"category": "", **refused})
        html = response.content.decode()
        assert response.status_code == 422, refused
        assert error in html and "No feedback is shown until the filters are right." in html
        for table in ("feedback-by-model", "filter-confusion", "feedback-rows"):
            assert f'id="{table}"' not in html
        assert "page" not in response.context

    unfiltered = admin_client_.get("/write/feedback/", {"category": ""})
    assert unfiltered.status_code == 200 and unfiltered.context["page"].paginator.count == 1


def test_the_feedback_page_says_the_content_filter_cannot_run_with_a_filter_refused_too(
    admin_client_,
):
    """The banner came and went with the filters: a refused one (a 422) left it out."""
    from django.utils import timezone

    from sampler.moderation.models import ContentFilterProblem

    now = timezone.now()
    ContentFilterProblem.objects.create(reason="No model in /models/clf", since=now, seen_at=now)
    for query in ("", "?rating=bogus"):
        page = admin_client_.get(reverse("labeling:feedback") + query)
        assert page.status_code == (422 if query else 200)
        assert 'id="content-filter-problem"' in page.content.decode()
