import random

import pytest

from labeling.models import Conversation, Message
from ranking import services


def finished_conversation(owner, *, turns=("hi", "hello! how can i help?"), origin="model"):
    conversation = Conversation.objects.create(owner=owner, status=Conversation.Status.FINISHED)
    parent = None
    for index, text in enumerate(turns):
        role = "user" if index % 2 == 0 else "assistant"
        parent = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role=role,
            content=text,
            origin=origin if role == "assistant" else "human",
        )
    conversation.active_leaf = parent
    conversation.save()
    return conversation


@pytest.fixture
def ready_task(policy, other_trainer, settings):
    """A prepared task (K=3 alternatives + the source) from other_trainer's conversation."""
    settings.RANKING_MAX_NEW_TOKENS = 12
    finished_conversation(other_trainer)
    task = services.ranking_task_create(
        rng=random.Random(0), alternatives=3, overlap=2, queue=False
    )
    return services.ranking_task_prepare(task_id=task.pk)
