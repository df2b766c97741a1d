import json
import random
from datetime import timedelta

import pytest
import torch
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.services import trainer_group_ensure, user_create_trainer
from labeling.conversations.services import conversations_import
from labeling.models import Conversation, Message
from ranking.exports.filters import ExportFilters, split_of
from ranking.models import Assignment, Candidate, Ranking, RankingTask
from ranking.rank import services
from ranking.rank.services import RankingInput
from sampler.models import GenerationJob, ModelVersion, Sample
from sampler.registry.services import model_version_register
from sampler.training.model import build_reward_model, load_tokenizer
from sampler.training.records import record_half
from tests.conftest import PASSWORD
from tests.sampler.conftest import suggestion_sample


def finished_conversation(
    owner, *, turns=("hi", "hello! how can i help?"), origin="model", project=None
):
    conversation = Conversation.objects.create(
        owner=owner,
        status=Conversation.Status.FINISHED,
        **({"project": project} if project is not None else {}),
    )
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


def edited_from_a_suggestion(owner, policy, *, suggested: str, written: str) -> Message:
    """The model-written reply of a finished conversation of ``owner``: its writer edited a
    suggestion of ``policy`` whose text was ``suggested`` into ``written``, so the reply keeps
    the suggestion's sample but holds other words."""
    source = finished_conversation(
        owner, turns=("hi", written), origin=Message.Origin.MODEL_EDITED
    ).messages.get(role="assistant")
    source.sample = suggestion_sample(owner, policy, source.parent, text=suggested)
    source.save(update_fields=["sample"])
    return source


def imported_reply(owner, *, written: str, origin: str = Message.Origin.MODEL) -> Message:
    """The assistant reply ``written`` (of ``origin``) of a conversation imported for ``owner``
    (finished, in the default project): a model's reply with no sample here."""
    line = json.dumps(
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": written, "origin": origin},
            ]
        }
    )
    report = conversations_import(lines=[line], owner=owner)
    assert report.created == 1 and not report.errors
    reply = Message.objects.get(conversation_id=report.conversation_ids[0], role="assistant")
    assert reply.sample_id is None
    return reply


def conversation_in_split(owner, *, split="test", filters=None, **arguments):
    """A finished conversation that ``filters``' split (default: the export's) puts on the
    ``split`` side: ids are the database's, so conversations are made until one lands there."""
    filters = filters or ExportFilters()
    for _ in range(500):
        conversation = finished_conversation(owner, **arguments)
        side = split_of(
            conversation.pk, seed=filters.split_seed, test_fraction=filters.test_fraction
        )
        if side == split:
            return conversation
        conversation.delete()
    raise AssertionError(f"No conversation landed in the {split} split.")


def quick_trainer(username: str):
    """A trainer without a usable password: hashing one costs a good part of a second, and
    tests that call the export functions directly never log in."""
    user = get_user_model().objects.create_user(username=username, password=None)
    user.groups.add(trainer_group_ensure())
    return user


def model_version_create(name: str) -> ModelVersion:
    """A policy row only: tasks built with ``task_from_source`` never load it."""
    return ModelVersion.objects.create(name=name, path=name)


def reward_version_untrained(path, out, seed: int) -> ModelVersion:
    """A registered reward version: ``path``'s model with a fresh reward head (seeded), saved to
    ``out``; two seeds make an ensemble that disagrees."""
    tokenizer = load_tokenizer(path)
    torch.manual_seed(seed)
    model = build_reward_model(path, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model_version_register(name=f"rm-{seed}", path=str(out), kind=ModelVersion.Kind.REWARD)


def task_from_source(
    source: Message, *, model_version: ModelVersion, alternatives: int = 3
) -> RankingTask:
    """A ready ranking task on ``source`` (an assistant reply), its alternatives stored as
    samples of a ranking job by ``model_version``, as ``ranking_task_prepare`` leaves it,
    without running a model. Candidate position 0 is the source."""
    prompt = []
    message = source.parent
    while message is not None:
        prompt.insert(0, {"role": message.role, "content": message.content})
        message = message.parent
    job = GenerationJob.objects.create(
        model_version=model_version,
        prefix_message=source.parent,
        prompt_messages=prompt,
        n=alternatives,
        params={"max_new_tokens": 8},
        seed=7,
        purpose=GenerationJob.Purpose.RANKING,
        status=GenerationJob.Status.SUCCEEDED,
    )
    messages = [source]
    for index in range(alternatives):
        sample = Sample.objects.create(
            job=job,
            index=index,
            text=f"alternative {index} to message {source.pk}",
            token_count=5,
            finish_reason=Sample.FinishReason.END_OF_TURN,
            logprob_sum=-1.0,
        )
        messages.append(
            Message.objects.create(
                conversation=source.conversation,
                parent=source.parent,
                role=Message.Role.ASSISTANT,
                content=sample.text,
                origin=Message.Origin.MODEL,
                sample=sample,
                model_version=model_version,
                is_candidate=True,
            )
        )
    task = RankingTask.objects.create(
        source_message=source,
        prefix_message=source.parent,
        generation_job=job,
        model_version=model_version,
        source_owner_id=source.conversation.owner_id,
        status=RankingTask.Status.READY,
        ready_at=timezone.now(),
        alternatives_requested=alternatives,
        overlap_required=10,
    )
    Candidate.objects.bulk_create(
        Candidate(task=task, message=message, is_source=position == 0, position=position)
        for position, message in enumerate(messages)
    )
    return task


def quick_tasks(owner, count: int) -> list[RankingTask]:
    """``count`` ready tasks (``task_from_source``: no model runs) on finished conversations of
    ``owner``'s, oldest first, as claims take them."""
    version = model_version_create("quick")
    return [
        task_from_source(
            finished_conversation(owner, turns=(f"q{index}?", f"a{index}.")).active_leaf,
            model_version=version,
        )
        for index in range(count)
    ]


def task_in_project(owner, project, model_version: ModelVersion, text: str) -> RankingTask:
    """A ready task (``task_from_source``) on a finished conversation of ``owner``'s
    ("<text>?", "<text>!"), the conversation and the task in ``project``."""
    conversation = finished_conversation(owner, turns=(f"{text}?", f"{text}!"))
    source = conversation.messages.get(role="assistant")
    task = task_from_source(source, model_version=model_version)
    RankingTask.objects.filter(pk=task.pk).update(project=project)
    Conversation.objects.filter(pk=conversation.pk).update(project=project)
    return RankingTask.objects.get(pk=task.pk)


def candidate_ids(task: RankingTask) -> list[int]:
    """The task's candidate ids by position (0 is the source)."""
    return list(task.candidates.order_by("position").values_list("id", flat=True))


def submit_by_positions(assignment: Assignment, trainer, positions: list[list[int]]) -> Ranking:
    """Rank ``assignment``'s task (a claimed lease) by candidate positions (0 = the source)."""
    ids = candidate_ids(assignment.task)
    return services.ranking_submit(
        assignment=assignment,
        trainer=trainer,
        ranking=RankingInput([[ids[p] for p in group] for group in positions]),
    )


def rank(
    task: RankingTask,
    ranker,
    ordering: list[list[int]],
    *,
    flags: dict[int, list[str]] | None = None,
    flag_notes: dict[int, str] | None = None,
    **fields,
) -> Ranking:
    """``ranker``'s ranking of ``task`` through ``ranking_submit``; ``ordering`` (tie groups,
    best first), ``flags`` and ``flag_notes`` name candidates by position."""
    ids = candidate_ids(task)
    assignment = Assignment.objects.create(
        task=task,
        trainer=ranker,
        presentation_order=ids[::-1],
        expires_at=timezone.now() + timedelta(hours=1),
    )
    return services.ranking_submit(
        assignment=assignment,
        trainer=ranker,
        ranking=RankingInput(
            [[ids[position] for position in group] for group in ordering],
            flags={ids[position]: names for position, names in (flags or {}).items()},
            flag_notes={ids[position]: note for position, note in (flag_notes or {}).items()},
            **fields,
        ),
    )


def tasks_prepared(owner, count: int, *, overlap: int) -> list[RankingTask]:
    """``count`` finished conversations of ``owner``'s ("question i?", "answer i."), and a
    task on each (chosen with ``random.Random(0)``) prepared with 3 alternatives sampled by the
    active policy, ``overlap`` rankings wanted (the tasks as created)."""
    for index in range(count):
        finished_conversation(owner, turns=(f"question {index}?", f"answer {index}."))
    rng = random.Random(0)
    tasks = [
        services.ranking_task_create(rng=rng, alternatives=3, overlap=overlap, queue=False)
        for _ in range(count)
    ]
    for task in tasks:
        services.ranking_task_prepare(task_id=task.pk)
    return tasks


@pytest.fixture
def flag_everything(flag_everything):
    """Every text flagged, and flagged replies still ranked (so that the flags show)."""
    flag_everything.CONTENT_FILTER_BLOCK_RANKING = False
    return flag_everything


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
    tasks = tasks_prepared(other_trainer, 3, overlap=2)
    rankers = [user_create_trainer(username=f"ranker{i}", password=PASSWORD) for i in range(2)]
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


def ranked_in_halves(owner, settings, *halves: str) -> list[Conversation]:
    """One finished conversation in each of ``halves`` (the fixed hash of its id: made until
    one lands there), each ranked once."""
    settings.RANKING_MAX_NEW_TOKENS = 8
    conversations = []
    for half in halves:
        for _ in range(200):
            conversation = finished_conversation(owner, turns=(f"q{len(conversations)}?", "a."))
            if record_half({"conversation_id": conversation.pk}) == half:
                conversations.append(conversation)
                break
            conversation.delete()
    rng = random.Random(0)
    tasks = [
        services.ranking_task_create(rng=rng, alternatives=2, overlap=1, queue=False)
        for _ in conversations
    ]
    for task in tasks:
        services.ranking_task_prepare(task_id=task.pk)
    ranker = quick_trainer("ranker")
    for _ in tasks:
        assignment = services.task_claim_next(trainer=ranker)
        ids = sorted(assignment.task.candidates.values_list("id", flat=True))
        services.ranking_submit(
            assignment=assignment, trainer=ranker, ranking=RankingInput([[i] for i in ids])
        )
    ranked_ids = set(RankingTask.objects.values_list("source_message__conversation_id", flat=True))
    assert ranked_ids == {conversation.pk for conversation in conversations}
    return conversations
