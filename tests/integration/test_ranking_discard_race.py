"""A ranking submitted while its conversation is being discarded, on PostgreSQL: once the
discard commits, the submit is refused as for any conversation no longer finished."""

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling.conversations import services as labeling_services
from labeling.models import Conversation
from ranking.models import Assignment, Ranking, RankingTask
from ranking.rank import services
from ranking.rank.services import RankingInput
from tests.conftest import racing, recording_thread
from tests.ranking.conftest import (
    candidate_ids,
    finished_conversation,
    model_version_create,
    quick_trainer,
    task_from_source,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_submit_racing_the_discard_of_its_conversation_is_refused_once_it_commits():
    writer = quick_trainer("writer")
    task = task_from_source(
        finished_conversation(writer, turns=("q?", "a.")).active_leaf,
        model_version=model_version_create("policy"),
    )
    trainer = quick_trainer("ranker")
    RankingTask.objects.filter(pk=task.pk).update(leased_count=1)
    assignment = Assignment.objects.create(
        task=task,
        trainer=trainer,
        presentation_order=candidate_ids(task),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    ranking = RankingInput([[candidate] for candidate in candidate_ids(task)])
    conversation = task.source_message.conversation

    outcome: dict = {}
    submit = recording_thread(
        lambda: services.ranking_submit(assignment=assignment, trainer=trainer, ranking=ranking),
        outcome,
        "ranking",
        refusal=(services.RankingConflict, str),
    )
    with racing(submit, what="the submit") as race:
        # The writer reopens and discards it; the submit starts before that commits.
        conversation = labeling_services.conversation_reopen(conversation=conversation, user=writer)
        labeling_services.conversation_discard(conversation=conversation, user=writer)

    assert race.waited, "the submit read the conversation without waiting for the discard"
    assert "error" not in outcome, outcome
    assert outcome.get("refused", "").startswith(
        "The conversation this task was made from was reopened or discarded"
    ), outcome
    assert not Ranking.objects.exists()
    assert Conversation.objects.get(pk=conversation.pk).status == Conversation.Status.DISCARDED
    task.refresh_from_db()
    assert task.rankings_count == 0
