"""The content filter on model-written texts that are no sample's: a suggestion its writer
edited, a model's reply brought in by an import. Saving one publishes its filtering to a worker
(here a recording broker; the task is then called as the worker would); the feedback page shows
the verdict on its own words once there is one, and says it is not judged until then."""

import json
import sqlite3
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from config.celery import Queue
from labeling.conversations import services, tasks
from labeling.conversations.models import Conversation, Message, MessageWalk
from sampler.moderation.filters import content_filter_get
from sampler.moderation.models import ModerationResult, text_sha256
from sampler.moderation.services import samples_moderate
from tests.labeling.conftest import HTMX, write_turns
from tests.labeling.feedback.conftest import feedback_url
from tests.sampler.conftest import suggestion_sample

TASK = services.MODERATE_TEXTS_TASK
NOT_JUDGED = "Not judged by the content filter yet."


def _run(broker) -> None:
    """Run every filtering published so far, as a worker would, and forget it."""
    for message in broker.sent:
        assert message["name"] == TASK and message["queue"] == Queue.DEFAULT.value
        tasks.moderate_message_texts(*message["args"])
    broker.sent.clear()


@pytest.fixture
def suggestion(policy, trainer, conversation):
    """A user turn in ``conversation`` and a suggestion "here is the answer." for the reply."""
    (user_turn,) = write_turns(conversation, trainer, "hi")
    conversation.refresh_from_db()
    return suggestion_sample(trainer, policy, user_turn, text="here is the answer.")


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """A block whose transaction's on-commit callbacks (publications) run at its end."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def _write_page_reply(client, conversation, sample, content):
    """``content`` sent from the Write page's composer, written from the suggestion ``sample``."""
    return client.post(
        reverse("labeling:message-append", args=[conversation.pk]),
        {"content": content, "sample_id": sample.pk, "after": conversation.active_leaf_id},
        **HTMX,
    )


def _verdict(text):
    return ModerationResult.objects.filter(sample__isnull=True, text_sha256=text_sha256(text))


def test_an_edited_suggestion_saved_on_the_write_page_is_filtered_on_a_worker_and_shown(
    secrets_filter, suggestion, trainer, trainer_client, conversation, broker, committed
):
    """The suggestion was clean; its writer added a password. The reply is not judged when it
    is saved (the web process runs no filter): the page says so, and the filter's verdict on
    the reply's own words is shown once the worker has run."""
    sample = suggestion
    with committed():
        response = _write_page_reply(trainer_client, conversation, sample, "here is the password.")
        assert broker.sent == []  # nothing leaves before the commit
    assert response.status_code == 200
    reply = conversation.messages.get(content="here is the password.")
    assert reply.origin == Message.Origin.MODEL_EDITED and reply.text_moderation_pending
    assert [message["args"] for message in broker.sent] == [([reply.pk],)]
    assert not _verdict(reply.content).exists()  # not filtered in the web process
    before = trainer_client.get(feedback_url("message", reply.pk)).content.decode()
    assert NOT_JUDGED in before and "The content filter has not judged this text yet." in before
    assert 'class="moderation-warning"' not in before

    _run(broker)

    reply.refresh_from_db()
    assert not reply.text_moderation_pending
    assert _verdict(reply.content).get().flagged
    after = trainer_client.get(feedback_url("message", reply.pk)).content.decode()
    assert "The content filter flagged this: secrets" in after
    assert NOT_JUDGED not in after and 'name="filter_wrong"' in after


def test_an_edit_through_the_api_and_a_branch_are_filtered_too(
    secrets_filter, suggestion, trainer, trainer_client, conversation, broker, committed
):
    sample = suggestion
    with committed():
        response = trainer_client.post(
            f"/api/conversations/{conversation.pk}/messages/",
            json.dumps({"content": "here is the answer, friend.", "sample_id": sample.pk}),
            content_type="application/json",
        )
    assert response.status_code == 201, response.content
    edited = Message.objects.get(pk=response.json()["id"])
    with committed():
        branch = services.message_branch(
            original=edited, author=trainer, content="here is the password, friend."
        )
    assert edited.origin == branch.origin == Message.Origin.MODEL_EDITED
    assert [message["args"] for message in broker.sent] == [([edited.pk],), ([branch.pk],)]

    _run(broker)

    assert not _verdict(edited.content).get().flagged
    assert _verdict(branch.content).get().flagged


def test_a_suggestion_used_as_it_is_and_a_humans_turn_queue_nothing(
    secrets_filter, suggestion, trainer, conversation, broker, committed
):
    """The suggestion's text was filtered as it was sampled; a trainer's own text is not."""
    sample = suggestion
    with committed():
        reply = services.message_append(
            conversation=conversation, author=trainer, content=sample.text, sample_id=sample.pk
        )
        write_turns(conversation, trainer, "and the password?")
    assert reply.origin == Message.Origin.MODEL
    assert broker.sent == []
    assert not Message.objects.filter(text_moderation_pending=True).exists()


def test_an_imports_model_replies_get_verdicts_on_a_worker(
    secrets_filter, trainer, trainer_client, broker, committed
):
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "what is the password?"},
                    {"role": "assistant", "content": f"the password is {n}."},
                    {"role": "user", "content": "thanks"},
                    {"role": "assistant", "content": "you are welcome.", "origin": "model_edited"},
                ]
            }
        )
        for n in range(3)
    ]
    with committed():
        report = services.conversations_import(lines=lines, owner=trainer)
    assert report.created == 3
    replies = Message.objects.filter(role="assistant").order_by("pk")
    assert len(broker.sent) == 1  # one publication for the file
    assert sorted(broker.sent[0]["args"][0]) == [reply.pk for reply in replies]

    _run(broker)

    assert not Message.objects.filter(text_moderation_pending=True).exists()
    for n in range(3):
        assert _verdict(f"the password is {n}.").get().flagged
    assert not _verdict("you are welcome.").get().flagged
    assert not _verdict("what is the password?").exists()  # a human's turn: not filtered
    page = trainer_client.get(feedback_url("message", replies.first().pk)).content.decode()
    assert "The content filter flagged this: secrets" in page


def test_with_the_filter_off_nothing_is_queued_nor_said_to_be_waiting(
    settings, suggestion, trainer, trainer_client, conversation, broker, committed
):
    settings.CONTENT_FILTER = "none"
    sample = suggestion
    with committed():
        reply = services.message_append(
            conversation=conversation, author=trainer, content="the answer.", sample_id=sample.pk
        )
        services.conversations_import(
            lines=[
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": "hi"},
                            {"role": "assistant", "content": "hello"},
                        ]
                    }
                )
            ],
            owner=trainer,
        )
    assert reply.origin == Message.Origin.MODEL_EDITED
    assert broker.sent == []
    assert not Message.objects.filter(text_moderation_pending=True).exists()
    assert NOT_JUDGED not in trainer_client.get(feedback_url("message", reply.pk)).content.decode()


def test_a_broker_outage_saves_the_reply_and_the_sweep_filters_it_later(
    secrets_filter, suggestion, trainer, trainer_client, conversation, broker, committed
):
    sample = suggestion
    broker.down = True
    with committed():
        response = _write_page_reply(trainer_client, conversation, sample, "here is the password.")
    assert response.status_code == 200  # saved: the filtering waits, the trainer does not
    reply = Message.objects.get(content="here is the password.")
    assert reply.text_moderation_pending and broker.sent == []

    # The sweep leaves a fresh message to its own task, then filters it.
    assert tasks.moderate_pending_message_texts() == 0
    Message.objects.filter(pk=reply.pk).update(
        created_at=timezone.now() - timedelta(seconds=tasks.SWEEP_GRACE_SECONDS + 1)
    )
    assert tasks.moderate_pending_message_texts() == 1

    reply.refresh_from_db()
    assert not reply.text_moderation_pending and _verdict(reply.content).get().flagged
    assert tasks.moderate_pending_message_texts() == 0


def test_filtering_again_stores_one_verdict_per_text(secrets_filter, trainer, broker, committed):
    """A task delivered twice, or a task and the sweep: one verdict, by text and filter version.
    Two messages with the same words share it."""
    line = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    )
    with committed():
        services.conversations_import(lines=[line, line], owner=trainer, allow_duplicates=True)
    ids = list(Message.objects.filter(role="assistant").values_list("pk", flat=True))
    Message.objects.filter(pk__in=ids).update(text_moderation_pending=True)
    tasks.moderate_message_texts(ids)
    Message.objects.filter(pk__in=ids).update(text_moderation_pending=True)
    assert tasks.moderate_message_texts(ids) == 2
    assert _verdict("yo").count() == 1
    assert Conversation.objects.count() == 2


@pytest.fixture
def few_sql_variables():
    """SQLite's limit on a statement's parameters lowered to 50, as builds that keep fewer than
    the largest import's conversations (32766 by default, 999 before 3.32) hold it."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's limit on a statement's parameters")
    connection.ensure_connection()
    raw = connection.connection
    before = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 50)
    yield
    raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, before)


def test_an_import_of_more_conversations_than_a_statement_holds_publishes_them_all(
    secrets_filter, trainer, broker, committed, few_sql_variables
):
    """The replies an import publishes are those it saved, not looked up again by its
    conversations' ids (one parameter each: an import of 100 000 lines would pass the limit)."""
    line = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    )
    with committed():
        report = services.conversations_import(
            lines=[line] * 60, owner=trainer, allow_duplicates=True
        )
    assert report.created == 60
    replies = Message.objects.filter(role="assistant").values_list("pk", flat=True)
    assert sorted(pk for sent in broker.sent for pk in sent["args"][0]) == sorted(replies)


def test_the_sweep_filters_a_bounded_share_of_a_backlog_each_time(
    secrets_filter, trainer, broker, committed, monkeypatch
):
    """A backlog (the replies labeling 0020 marked, or an outage's) is filtered a share per
    run, so that one sweep does not hold a worker of the default queue for hours, with the
    next minute's sweeps beside it filtering the same texts again."""
    monkeypatch.setattr(services, "TEXT_MODERATION_BATCH", 2)
    monkeypatch.setattr(tasks, "SWEEP_MAX_TEXTS", 4)
    line = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    )
    broker.down = True
    with committed():
        services.conversations_import(lines=[line] * 5, owner=trainer, allow_duplicates=True)
    Message.objects.update(
        created_at=timezone.now() - timedelta(seconds=tasks.SWEEP_GRACE_SECONDS + 1)
    )

    assert tasks.moderate_pending_message_texts() == 4
    assert Message.objects.filter(text_moderation_pending=True).count() == 1
    assert tasks.moderate_pending_message_texts() == 1
    assert tasks.moderate_pending_message_texts() == 0


def test_a_reply_saved_while_no_filter_was_configured_is_filtered_by_the_sweep_once_one_is(
    settings, suggestion, trainer, trainer_client, conversation, broker, committed
):
    """Saved with ``CONTENT_FILTER=none``, a reply is not marked, nor published once a filter is
    configured: its page does not say it is "not judged yet", as if a verdict were on its way.
    The sweep judges it once a filter is configured."""
    settings.CONTENT_FILTER = "none"
    with committed():
        reply = services.message_append(
            conversation=conversation,
            author=trainer,
            content="the password.",
            sample_id=suggestion.pk,
        )
    assert tasks.moderate_pending_message_texts() == 0  # nothing to filter it with
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password"]}

    page = trainer_client.get(feedback_url("message", reply.pk)).content.decode()
    assert not reply.text_moderation_pending and broker.sent == []
    assert NOT_JUDGED not in page and "has not judged this text yet" not in page

    assert tasks.moderate_pending_message_texts() == 1

    assert _judged_by_the_filter_now(reply) and _verdict(reply.content).get().flagged
    page = trainer_client.get(feedback_url("message", reply.pk)).content.decode()
    assert "The content filter flagged this: secrets" in page


def test_a_batch_the_filter_fails_on_waits_without_holding_up_the_ones_after_it(
    secrets_filter, trainer, broker, committed, monkeypatch, caplog
):
    """The filter raising on one batch (a text a custom filter cannot take, a classifier out of
    memory) leaves that batch waiting for the next sweep, logged; the batches after it are
    filtered, not held up behind it every minute."""
    monkeypatch.setattr(services, "TEXT_MODERATION_BATCH", 1)
    broker.down = True
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": reply},
                ]
            }
        )
        for reply in ("first", "the filter breaks on this", "third")
    ]
    with committed():
        services.conversations_import(lines=lines, owner=trainer)
    real = services.texts_moderate

    def breaks_on_one(*, texts, content_filter):
        if "the filter breaks on this" in texts:
            raise RuntimeError("the classifier ran out of memory")
        return real(texts=texts, content_filter=content_filter)

    monkeypatch.setattr(services, "texts_moderate", breaks_on_one)

    assert services.message_texts_moderate() == 2

    waiting = Message.objects.filter(text_moderation_pending=True)
    assert list(waiting.values_list("content", flat=True)) == ["the filter breaks on this"]
    assert _verdict("first").exists() and _verdict("third").exists()
    assert "the classifier ran out of memory" in caplog.text


def _classifier_that_cannot_load(settings, tmp_path):
    settings.CONTENT_FILTER = "classifier"
    settings.CONTENT_FILTER_MODEL = str(tmp_path / "no-such-classifier")
    return "no-such-classifier"


def _a_blank_term(settings, tmp_path):
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password", " "]}
    return "CONTENT_FILTER_WORDS"


@pytest.mark.parametrize("misconfigure", [_classifier_that_cannot_load, _a_blank_term])
def test_a_filter_that_cannot_run_is_recorded_once_and_the_sweep_loses_nothing(
    misconfigure, secrets_filter, tmp_path, trainer, admin_client_, broker, committed, caplog
):
    """A filter the sweep cannot build or load (a setting refused, a classifier directory that
    does not load) fails no sweep: it is logged once at ERROR with the reason, recorded for the
    staff's feedback page, and nothing moves: the replies waiting stay waiting, those judged
    keep their verdict (none is marked for judging again by a filter that cannot judge), and the
    walk stays where it was. Once the filter runs again, the sweep filters them and the record
    goes. Before, the sweep raised every minute (a setting refused), or logged a traceback a
    batch and marked the judged replies as waiting (a classifier that does not load)."""
    import logging

    judged, unjudged = _import_replies(trainer, committed, "the password is x.", "thanks")
    tasks.moderate_message_texts([judged.pk])
    broker.sent.clear()
    Message.objects.filter(pk=unjudged.pk).update(
        created_at=timezone.now() - timedelta(seconds=tasks.SWEEP_GRACE_SECONDS + 1)
    )
    words = dict(secrets_filter.CONTENT_FILTER_WORDS)
    named = misconfigure(secrets_filter, tmp_path)

    assert tasks.moderate_pending_message_texts() == 0
    assert tasks.moderate_pending_message_texts() == 0
    assert tasks.moderate_message_texts([unjudged.pk]) == 0

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and named in errors[0].getMessage()
    judged.refresh_from_db()
    assert not judged.text_moderation_pending and judged.text_filter_name == "builtin"
    assert Message.objects.get(pk=unjudged.pk).text_moderation_pending
    assert not MessageWalk.objects.filter(after_id__gt=0).exists()
    page = admin_client_.get(reverse("labeling:feedback")).content.decode()
    assert 'id="content-filter-problem"' in page and named in page

    secrets_filter.CONTENT_FILTER = "builtin"
    secrets_filter.CONTENT_FILTER_WORDS = words
    assert tasks.moderate_pending_message_texts() == 1
    assert not Message.objects.filter(text_moderation_pending=True).exists()
    page = admin_client_.get(reverse("labeling:feedback")).content.decode()
    assert 'id="content-filter-problem"' not in page


def test_a_filter_that_runs_is_built_once_a_task_and_writes_nothing_when_all_is_well(
    secrets_filter, trainer, broker, committed, monkeypatch
):
    """A worker's filtering (each save's task, the sweep every minute) that finds the filter
    running, with no problem recorded, writes nothing to say so, and builds the filter once
    for all its batches. Before, every task deleted the problem row, there or not (a write a
    task), and built the filter again for each batch of 200 texts."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from sampler.moderation import services as moderation

    monkeypatch.setattr(services, "TEXT_MODERATION_BATCH", 1)
    replies = _import_replies(trainer, committed, "first", "second", "third")
    built = []
    monkeypatch.setattr(
        moderation, "content_filter_get", lambda: built.append(1) or content_filter_get()
    )

    with CaptureQueriesContext(connection) as queries:
        assert moderation.content_filter_ready() is not None
    written = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].lstrip().upper().startswith(("DELETE", "UPDATE", "INSERT"))
    ]
    assert written == [] and len(queries.captured_queries) == 1

    built.clear()
    assert tasks.moderate_message_texts([reply.pk for reply in replies]) == 3
    assert len(built) == 1


def _import_replies(trainer, committed, *replies):
    """One imported conversation per reply, its turns waiting for the filter (published)."""
    lines = [
        json.dumps(
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": r}]}
        )
        for r in replies
    ]
    with committed():
        services.conversations_import(lines=lines, owner=trainer)
    return [Message.objects.get(role="assistant", content=reply) for reply in replies]


def _judged_by_the_filter_now(message) -> bool:
    """Whether the message records a verdict on its own words by the filter configured now."""
    message.refresh_from_db()
    content_filter = content_filter_get()
    return (message.text_filter_name, message.text_filter_version) == (
        content_filter.name,
        content_filter.version,
    ) and not message.text_moderation_pending


def test_a_change_of_the_filter_has_the_sweep_judge_the_replies_again(
    secrets_filter, trainer, trainer_client, broker, committed
):
    """A reply judged by one filter is judged again by the sweep once another is configured
    (here another word list: another version of the built-in filter), and its page shows the
    new verdict; a reply the filter of the day judged already is not filtered again."""
    judged, passed = _import_replies(trainer, committed, "the password is x.", "you are welcome.")
    _run(broker)
    assert tasks.moderate_pending_message_texts() == 0

    secrets_filter.CONTENT_FILTER_WORDS = {"politeness": ["welcome"]}
    assert tasks.moderate_pending_message_texts() == 2

    assert _judged_by_the_filter_now(judged) and _judged_by_the_filter_now(passed)
    version = content_filter_get().version
    assert not _verdict(judged.content).get(filter_version=version).flagged
    assert _verdict(passed.content).get(filter_version=version).flagged
    page = trainer_client.get(feedback_url("message", passed.pk)).content.decode()
    assert "The content filter flagged this: politeness" in page
    assert tasks.moderate_pending_message_texts() == 0


def test_a_change_of_the_filter_has_the_sweep_judge_a_suggestion_used_as_it_is_again(
    secrets_filter, suggestion, trainer, trainer_client, conversation, broker, committed
):
    """A suggestion used as it is, judged as its sample by one filter, is judged again by the
    sweep once another is configured, as an edited reply is: the sample gets the new filter's
    verdict, and the reply's page (and everything that shows the sample) shows it; the sweep
    after finds nothing more to judge."""
    sample = suggestion
    samples_moderate(samples=[sample])
    with committed():
        reply = services.message_append(
            conversation=conversation, author=trainer, content=sample.text, sample_id=sample.pk
        )
    assert tasks.moderate_pending_message_texts() == 0

    secrets_filter.CONTENT_FILTER_WORDS = {"certainty": ["answer"]}
    assert tasks.moderate_pending_message_texts() == 1

    version = content_filter_get().version
    assert sample.moderation_results.get(filter_version=version).flagged
    assert not _verdict(reply.content).exists()  # judged as its sample, not on its own
    page = trainer_client.get(feedback_url("message", reply.pk)).content.decode()
    assert "The content filter flagged this: certainty" in page
    assert tasks.moderate_pending_message_texts() == 0


def test_the_replies_judged_again_take_the_room_the_waiting_ones_leave_in_a_sweep(
    secrets_filter, trainer, broker, committed, monkeypatch
):
    """The sweep filters the replies waiting for a verdict first; those judged by another filter
    are filtered again in what is left of its bound, so they never hold up the waiting ones."""
    monkeypatch.setattr(tasks, "SWEEP_MAX_TEXTS", 2)
    older = _import_replies(trainer, committed, "first", "second", "third")
    _run(broker)
    secrets_filter.CONTENT_FILTER_WORDS = {"secrets": ["passphrase"]}
    broker.down = True
    (waiting,) = _import_replies(trainer, committed, "the passphrase is x.")
    Message.objects.filter(pk=waiting.pk).update(
        created_at=timezone.now() - timedelta(seconds=tasks.SWEEP_GRACE_SECONDS + 1)
    )

    assert tasks.moderate_pending_message_texts() == 2

    assert _judged_by_the_filter_now(waiting) and _verdict(waiting.content).get().flagged
    assert [_judged_by_the_filter_now(message) for message in older] == [True, False, False]
    assert tasks.moderate_pending_message_texts() == 2
    assert tasks.moderate_pending_message_texts() == 0


def test_a_reply_whose_sample_was_deleted_is_filtered_on_its_own_text(
    secrets_filter, suggestion, trainer, trainer_client, conversation, broker, committed
):
    """A suggestion used as it is was judged as its sample; once the sample goes (with its
    job), that verdict goes with it, and the reply is judged on its own words."""
    sample = suggestion
    samples_moderate(samples=[sample])
    with committed():
        reply = services.message_append(
            conversation=conversation, author=trainer, content=sample.text, sample_id=sample.pk
        )
    assert tasks.moderate_pending_message_texts() == 0  # a sample's text: judged as the sample

    sample.job.delete()
    reply.refresh_from_db()
    assert reply.sample_id is None and not _verdict(reply.content).exists()

    assert tasks.moderate_pending_message_texts() == 1

    assert _judged_by_the_filter_now(reply) and not _verdict(reply.content).get().flagged
    page = trainer_client.get(feedback_url("message", reply.pk)).content.decode()
    assert 'name="filter_wrong"' in page


def test_each_sweep_looks_at_a_bounded_share_of_the_messages_and_the_walk_reaches_them_all(
    secrets_filter, trainer, broker, committed, monkeypatch
):
    """However many messages there are, a sweep looks at ``SWEEP_SCAN_MESSAGES`` of them for
    those to judge again, going on from where the last one stopped (a stored walk), and starts
    again at the first once it has looked at the last: each reply judged by another filter is
    reached, and one that falls behind the walk is reached after it wraps around."""
    monkeypatch.setattr(tasks, "SWEEP_SCAN_MESSAGES", 4)  # two conversations: 2 replies
    replies = _import_replies(trainer, committed, "one", "two", "three", "four", "five")
    _run(broker)
    secrets_filter.CONTENT_FILTER_WORDS = {"secrets": ["passphrase"]}

    assert [tasks.moderate_pending_message_texts() for _ in range(4)] == [2, 2, 1, 0]
    assert all(_judged_by_the_filter_now(reply) for reply in replies)
    walk = MessageWalk.objects.get(name=services.REJUDGE_WALK)
    assert walk.after_id == replies[1].pk  # the fourth started again at the first message

    # The first reply's verdict is by no filter now (say its sample went): behind the walk,
    # it is reached once the walk starts again at the first message.
    Message.objects.filter(pk=replies[0].pk).update(text_filter_name="", text_filter_version="")
    assert [tasks.moderate_pending_message_texts() for _ in range(3)] == [0, 0, 1]
    assert _judged_by_the_filter_now(replies[0])


def test_a_sweep_with_more_to_judge_again_than_its_room_goes_on_after_the_last_it_took(
    secrets_filter, trainer, broker, committed, monkeypatch
):
    """The walk moves past only the messages a sweep took: those its bound left in the share
    it looked at are the next sweep's."""
    monkeypatch.setattr(tasks, "SWEEP_MAX_TEXTS", 2)
    replies = _import_replies(trainer, committed, "one", "two", "three")
    _run(broker)
    secrets_filter.CONTENT_FILTER_WORDS = {"secrets": ["passphrase"]}

    assert tasks.moderate_pending_message_texts() == 2
    assert [_judged_by_the_filter_now(reply) for reply in replies] == [True, True, False]
    assert tasks.moderate_pending_message_texts() == 1
    assert _judged_by_the_filter_now(replies[2])


def test_after_the_filter_goes_from_one_to_another_and_back_the_page_shows_the_first_ones(
    secrets_filter, trainer, trainer_client, broker, committed
):
    """Judged by filter A, then B, then A again: A's verdict is found, not stored again, so it
    is not the newest; the page shows the verdict of the filter configured now, A's."""
    (reply,) = _import_replies(trainer, committed, "the password is x.")
    _run(broker)
    secrets_filter.CONTENT_FILTER_WORDS = {"politeness": ["welcome"]}
    assert tasks.moderate_pending_message_texts() == 1
    secrets_filter.CONTENT_FILTER_WORDS = {"secrets": ["password"]}
    assert tasks.moderate_pending_message_texts() == 1

    assert _judged_by_the_filter_now(reply) and _verdict(reply.content).count() == 2
    page = trainer_client.get(feedback_url("message", reply.pk)).content.decode()
    assert "The content filter flagged this: secrets" in page
