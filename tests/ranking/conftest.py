import random

import pytest

from accounts.services import user_create_trainer
from labeling.models import Conversation, Message
from ranking import services
from ranking.services import RankingInput


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


@pytest.fixture
def ranked(policy, other_trainer, settings):
    """Three tasks, each ranked by two trainers (the first ranking flags the last reply)."""
    settings.RANKING_MAX_NEW_TOKENS = 8
    for index in range(3):
        finished_conversation(other_trainer, turns=(f"question {index}?", f"answer {index}."))
    rng = random.Random(0)
    tasks = [
        services.ranking_task_create(rng=rng, alternatives=3, overlap=2, queue=False)
        for _ in range(3)
    ]
    for task in tasks:
        services.ranking_task_prepare(task_id=task.pk)
    rankers = [user_create_trainer(username=f"ranker{i}", password="x") for i in range(2)]
    for ranker_index, ranker in enumerate(rankers):
        for _ in tasks:
            assignment = services.task_claim_next(trainer=ranker)
            ids = sorted(assignment.task.candidates.values_list("id", flat=True))
            # Both rankers agree on the best; they swap the middle two.
            middle = ids[1:3] if ranker_index == 0 else ids[2:0:-1]
            ordering = [[ids[0]], [middle[0]], [middle[1]], [ids[3]]]
            flags = {ids[3]: ["harmful"]} if ranker_index == 0 else {}
            services.ranking_submit(
                assignment=assignment, trainer=ranker, ranking=RankingInput(ordering, flags=flags)
            )
    return tasks, rankers
