"""Dataset exports and red-team runs, done by a real worker through the broker: each kind of
background work is taken from its queue, run by the executor and finished on its row; and the
content filter on an imported reply's own text, published on commit and run by the worker, and
the worker's sweep judging the replies no filter of today has judged."""

import gzip
import json
from pathlib import Path

import pytest

from config.celery import Queue
from labeling.conversations import services as conversation_services
from labeling.conversations import tasks as conversation_tasks
from labeling.conversations.models import Message
from labeling.redteam import services as redteam_services
from labeling.redteam.models import AttackResult, AttackRun
from ranking.exports.filters import ExportFilters
from ranking.exports.models import DatasetExport
from ranking.exports.services import dataset_export_create
from sampler.moderation.models import ModerationResult, text_sha256
from tests.conftest import wait_until
from tests.labeling.conftest import write_turns
from tests.labeling.redteam.conftest import two_attacks
from tests.ranking.conftest import finished_conversation
from tests.sampler.conftest import suggestion_sample

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _finished(job, model):
    """The row once the worker finished it (whatever the outcome), read fresh."""

    def done():
        row = model.objects.get(pk=job.pk)
        return row if row.status in {"succeeded", "failed", "cancelled"} else None

    return wait_until(done, what=f"the worker to finish {model.__name__} {job.pk}")


def test_the_worker_writes_a_demonstrations_export_the_row_describes(
    celery_worker, other_trainer, admin_user
):
    for index in range(3):
        finished_conversation(other_trainer, turns=(f"q {index}?", f"a {index}."), origin="human")

    export = dataset_export_create(
        created_by=admin_user, format="demonstrations", filters=ExportFilters()
    )
    assert export.publication
    export = _finished(export, DatasetExport)

    assert export.status == "succeeded", export.error
    assert export.worker and export.row_count == 3
    lines = gzip.decompress(Path(export.file_path).read_bytes()).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(r["messages"][-1]["content"] for r in records) == ["a 0.", "a 1.", "a 2."]


def test_the_worker_reruns_the_stored_attacks_one_result_each(
    celery_worker, policy, trainer, admin_user
):
    attacks = two_attacks(trainer, policy)

    run = redteam_services.attack_run_create(requested_by=admin_user, model_version=policy)
    assert run.publication
    run = _finished(run, AttackRun)

    assert run.status == "succeeded", run.error
    assert run.worker and run.progress == 1.0
    results = list(AttackResult.objects.filter(run=run).select_related("sample__job"))
    assert sorted(r.attack_id for r in results) == sorted(a.pk for a in attacks)
    for result in results:
        assert result.error == "" and result.sample.job.model_version == policy


def _imported_reply(owner, question: str, answer: str) -> Message:
    """The model's reply ``answer`` to ``question``, imported in a conversation of ``owner``."""
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    report = conversation_services.conversations_import(
        lines=[json.dumps({"messages": messages})], owner=owner
    )
    return Message.objects.get(conversation_id=report.conversation_ids[0], role="assistant")


def test_the_worker_filters_an_imported_model_reply_on_its_own_text(celery_worker, trainer):
    """An import publishes the filtering of its model-written turns; the worker stores the
    verdict on the reply's text and marks the turn done."""
    reply = _imported_reply(trainer, "how did it go?", "it went like shit, honestly.")
    key = text_sha256(reply.content)

    verdict = wait_until(
        lambda: ModerationResult.objects.filter(sample__isnull=True, text_sha256=key).first(),
        what="the worker to filter the imported reply",
    )

    assert verdict.flagged and verdict.categories == ["profanity"]
    wait_until(
        lambda: not Message.objects.get(pk=reply.pk).text_moderation_pending,
        what="the reply to be marked filtered",
    )


def test_the_workers_sweep_filters_a_reply_imported_while_no_filter_was_configured(
    celery_worker, trainer, settings
):
    """Imported with ``CONTENT_FILTER=none`` here, a reply is neither marked nor published; the
    sweep, run by the worker (which has a filter), judges it on its own words and records the
    filter that did."""
    settings.CONTENT_FILTER = "none"
    reply = _imported_reply(trainer, "and then?", "then shit hit the fan.")
    assert not reply.text_moderation_pending

    conversation_tasks.moderate_pending_message_texts.apply_async(queue=Queue.DEFAULT.value)

    verdict = wait_until(
        lambda: ModerationResult.objects.filter(
            sample__isnull=True, text_sha256=text_sha256(reply.content)
        ).first(),
        what="the worker's sweep to filter the reply",
    )
    assert verdict.flagged and verdict.categories == ["profanity"]
    reply = wait_until(
        lambda: Message.objects.filter(pk=reply.pk, text_filter_name=verdict.filter_name).first(),
        what="the reply to record the filter that judged it",
    )
    assert reply.text_filter_version == verdict.filter_version
    assert not reply.text_moderation_pending


def test_the_workers_sweep_judges_a_suggestion_used_as_it_is_as_its_sample(
    celery_worker, trainer, conversation, policy, settings
):
    """A suggestion used as it is, whose sample has no verdict by the worker's filter (sampled
    here with ``CONTENT_FILTER=none``): the sweep, run by the worker, judges its sample, whose
    verdict is then the reply's; the reply is not judged on its own words."""
    settings.CONTENT_FILTER = "none"
    (user_turn,) = write_turns(conversation, trainer, "and then?")
    sample = suggestion_sample(trainer, policy, user_turn, text="then shit hit the fan.")
    reply = conversation_services.message_append(
        conversation=conversation, author=trainer, content=sample.text, sample_id=sample.pk
    )
    assert not reply.text_moderation_pending

    conversation_tasks.moderate_pending_message_texts.apply_async(queue=Queue.DEFAULT.value)

    verdict = wait_until(
        lambda: ModerationResult.objects.filter(sample=sample).first(),
        what="the worker's sweep to judge the reply's sample",
    )
    assert verdict.flagged and verdict.categories == ["profanity"]
    assert not ModerationResult.objects.filter(text_sha256=text_sha256(reply.content)).exists()
