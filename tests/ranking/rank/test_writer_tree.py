"""Replies sampled for a ranking task stay out of the writer's own conversation."""

import re

import pytest
from django.http import Http404
from django.urls import reverse

from labeling.conversations import selectors
from labeling.models import Conversation, Message
from ranking.exports.demonstrations import demonstration_records
from ranking.exports.filters import ExportFilters
from ranking.exports.rankings import ranking_records
from ranking.rank import services
from ranking.rank.services import RankingInput


@pytest.fixture
def writer_conversation(ready_task) -> Conversation:
    return ready_task.source_message.conversation


def _alternatives(task) -> list[Message]:
    return [c.message for c in task.candidates.select_related("message").filter(is_source=False)]


def test_the_alternatives_are_marked_as_candidates_and_the_source_is_not(ready_task):
    assert [m.is_candidate for m in _alternatives(ready_task)] == [True, True, True]
    ready_task.source_message.refresh_from_db()
    assert ready_task.source_message.is_candidate is False


def test_the_writers_transcript_has_no_alternative_switcher_for_sampled_replies(
    writer_conversation, ready_task
):
    transcript = selectors.conversation_transcript(conversation=writer_conversation)

    assert [entry.message.pk for entry in transcript][-1] == ready_task.source_message_id
    assert all(entry.sibling_count == 1 for entry in transcript)
    assert all(entry.next_sibling_id is None for entry in transcript)


def test_following_the_tree_never_leads_into_a_sampled_reply(writer_conversation, ready_task):
    # The alternatives are the newest children of the user turn: the tree walk still skips them.
    leaf = selectors.branch_leaf(message=ready_task.prefix_message)

    assert leaf.pk == ready_task.source_message_id


def test_the_conversation_lists_turn_count_leaves_the_sampled_replies_out(
    writer_conversation, other_trainer
):
    listed = selectors.conversation_list(user=other_trainer).get(pk=writer_conversation.pk)

    assert listed.turn_count == 2  # "hi" and the writer's reply; not the 3 alternatives


def test_editor_actions_on_a_sampled_reply_are_not_found(ready_task, other_trainer):
    alternative = _alternatives(ready_task)[0]

    with pytest.raises(Http404):
        selectors.message_get_for_user(message_id=alternative.pk, user=other_trainer)


def test_the_writers_page_and_api_show_only_their_tree(
    writer_conversation, ready_task, other_trainer, client
):
    client.force_login(other_trainer)
    # Texts no page holds otherwise: a sampled reply (random, often a word or two) could be a
    # piece of the page's own text ("io" in "Conversation").
    for alternative in _alternatives(ready_task):
        Message.objects.filter(pk=alternative.pk).update(content=f"sampled reply {alternative.pk}")
    html = client.get(f"/write/{writer_conversation.pk}/").content.decode()
    api = client.get(f"/api/conversations/{writer_conversation.pk}/").json()
    switched = client.post(
        reverse("labeling:branch-switch", args=[_alternatives(ready_task)[0].pk])
    )

    shown = set(re.findall(r'data-message-id="(\d+)"', html))
    assert str(ready_task.source_message_id) in shown
    for alternative in _alternatives(ready_task):
        assert str(alternative.pk) not in shown
        assert alternative.content not in html
    assert "Next alternative" not in html
    assert {m["id"] for m in api["messages"]} == {
        ready_task.prefix_message_id,
        ready_task.source_message_id,
    }
    assert switched.status_code == 404


def test_demonstrations_leave_the_sampled_replies_out(ready_task):
    records = list(demonstration_records(ExportFilters(pseudonymize=False)))

    assert [record["leaf_message_id"] for record in records] == [ready_task.source_message_id]


def test_the_rankings_export_names_every_candidate_by_its_stable_id(ready_task, trainer):
    assignment = services.task_claim_next(trainer=trainer)
    services.ranking_submit(
        assignment=assignment,
        trainer=trainer,
        ranking=RankingInput([[cid] for cid in assignment.presentation_order]),
    )

    (record,) = ranking_records(ExportFilters(pseudonymize=False))

    ids = sorted(ready_task.candidates.values_list("id", flat=True))
    assert sorted(c["candidate_id"] for c in record["candidates"]) == ids
    assert sorted(cid for group in record["ordering"] for cid in group) == ids
