"""DPO and KTO runs from the database, the signals they read, reward data sources, SFT origins,
and the refusal to normalise a file-trained reward model on nothing."""

from io import StringIO

import pytest
import torch
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from labeling.conversations import services as labeling_services
from labeling.models import Conversation, Feedback, Message
from ranking.exports.filters import ExportFilters, split_of
from ranking.exports.pipeline import records, write_jsonl
from ranking.models import Candidate, Ranking, RankingTask
from ranking.projects.services import project_create
from sampler.generation.models import GenerationJob, Sample
from sampler.registry.models import ModelVersion
from sampler.runs import kinds as run_kinds
from sampler.runs import services as training_services
from sampler.runs.models import TrainingRun
from sampler.runs.sources import feedback_pair_records, kto_records
from sampler.training.data import IGNORE_INDEX, sft_example
from sampler.training.model import load_tokenizer
from sampler.training.synthetic import synthetic_rankings
from tests.ranking.conftest import (  # noqa: F401  (ranked: a fixture)
    conversation_in_split,
    finished_conversation,
    ranked,
    ranked_in_halves,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def setup(settings, tmp_path):
    settings.MODEL_ROOT = tmp_path / "models"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _candidate_messages(task) -> list[Message]:
    return [c.message for c in Candidate.objects.filter(task=task).order_by("position")]


@pytest.fixture
def feedback(ranked, trainer, other_trainer):  # noqa: F811
    """On the first task: thumbs up on candidate 1, thumbs down on candidate 2 and a report on
    candidate 3 (all model-written alternatives)."""
    tasks, _ = ranked
    messages = _candidate_messages(tasks[0])
    rows = [
        Feedback.objects.create(
            user=trainer, message=messages[1], rating="up", model_version=messages[1].model_version
        ),
        Feedback.objects.create(
            user=trainer,
            message=messages[2],
            rating="down",
            model_version=messages[2].model_version,
        ),
        Feedback.objects.create(
            user=other_trainer,
            message=messages[3],
            categories=["untruthful"],
            model_version=messages[3].model_version,
        ),
    ]
    return tasks, messages, rows


def test_kto_records_take_thumbs_reports_and_flags_each_selectable(feedback, policy):
    _, messages, _ = feedback
    filters = ExportFilters(test_fraction=0.0)
    every = list(kto_records(filters, sources=("thumbs_up", "thumbs_down", "reports", "flags")))
    by_source = {}
    for record in every:
        by_source.setdefault(record["source"], []).append(record)
    assert [r["label"] for r in by_source["thumbs_up"]] == [True]
    assert [r["label"] for r in by_source["thumbs_down"]] == [False]
    assert [r["label"] for r in by_source["reports"]] == [False]
    # The `ranked` fixture's first ranker flagged one reply harmful in each of the 3 tasks.
    assert len(by_source["flags"]) == 3 and not any(r["label"] for r in by_source["flags"])
    liked = by_source["thumbs_up"][0]
    assert liked["completion"][0]["content"] == messages[1].content
    assert liked["model_version"] == policy.name == messages[1].model_version.name
    assert liked["prompt"][-1]["role"] == "user" and liked["split"] == "train"
    only_flags = list(kto_records(filters, sources=("flags",)))
    assert {r["source"] for r in only_flags} == {"flags"}
    assert len(list(kto_records(filters, sources=("thumbs_up",)))) == 1


def test_feedback_pairs_put_a_liked_reply_over_a_disliked_one_to_the_same_prompt(feedback):
    _, messages, _ = feedback
    pairs = list(feedback_pair_records(ExportFilters(test_fraction=0.0)))
    chosen = {p["chosen"][0]["content"] for p in pairs}
    rejected = {p["rejected"][0]["content"] for p in pairs}
    assert chosen == {messages[1].content}
    assert rejected == {messages[2].content, messages[3].content}


def test_feedback_pairs_never_pair_a_held_out_conversations_reply_into_training(
    trainer, other_trainer, policy
):
    """Two conversations ask the same; one is held out. Its disliked reply is no rejected side
    of a training pair (nor the liked one a chosen side of a held-out pair)."""
    by_split = {}
    for index in range(200):  # split_of is a hash: a few conversations give both splits
        conversation = finished_conversation(trainer, turns=("tell me a joke", f"joke {index}"))
        by_split.setdefault(split_of(conversation.pk, seed=0, test_fraction=0.1), conversation)
        if len(by_split) == 2:
            break
    rating = {"train": "up", "test": "down"}
    for split, conversation in by_split.items():
        Feedback.objects.create(
            user=other_trainer, message=conversation.active_leaf, rating=rating[split]
        )
    assert list(feedback_pair_records(ExportFilters(test_fraction=0.1))) == []
    # In one split, the same two replies are a pair.
    pairs = list(feedback_pair_records(ExportFilters(test_fraction=0.0)))
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        (by_split["train"].active_leaf.content, by_split["test"].active_leaf.content)
    ]


def test_train_kto_refuses_an_exclude_flag_it_would_ignore(feedback, policy):
    with pytest.raises(CommandError, match=r"^--exclude-flag drops flagged rankings"):
        call_command("train_kto", "--exclude-flag", "harmful", "--queue", stdout=StringIO())
    assert not TrainingRun.objects.exists()


def test_train_kto_from_the_database_registers_a_policy_parented_on_its_reference(feedback, policy):
    call_command(
        "train_kto",
        "--max-steps", "1",
        "--batch-size", "2",
        "--max-length", "48",
        "--test-fraction", "0",
        "--name", "kto-1",
        stdout=StringIO(),
        verbosity=0,
    )  # fmt: skip
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.kind == "kto" and run.dataset["sources"] == [
        "thumbs_up",
        "thumbs_down",
        "reports",
        "flags",
    ]
    assert run.dataset["rows"] == 6
    version = ModelVersion.objects.get(name="kto-1")
    assert version.kind == "policy" and version.parent == policy and not version.is_active
    assert version.metrics["data"][f"version/{policy.name}"] == 6


@pytest.mark.usefixtures("ranked")
def test_train_dpo_from_the_database_in_both_modes(policy):
    for mode in ("listwise", "pairwise"):
        out = StringIO()
        call_command(
            "train_dpo",
            "--mode", mode,
            "--max-steps", "1",
            "--batch-size", "2",
            "--max-length", "48",
            "--test-fraction", "0",
            "--lora-r", "2",
            "--name", f"dpo-{mode}",
            stdout=out,
            verbosity=0,
        )  # fmt: skip
        version = ModelVersion.objects.get(name=f"dpo-{mode}")
        assert version.parent == policy and version.training_run.kind == "dpo"
        assert version.metrics["lora"]["r"] == 2
        assert version.training_run.dataset["rows"] == 6
        assert "reference" in version.description


@pytest.mark.usefixtures("ranked")
def test_a_dpo_run_whose_fraction_holds_out_no_ranking_is_refused_before_it_is_made(
    policy, trainer
):
    """It trained and reported no held-out metric. A conversation held out without a ranking
    holds out a prompt for PPO (which evaluates on it), none for DPO."""
    ranked_ids = set(RankingTask.objects.values_list("source_message__conversation_id", flat=True))
    assert len(ranked_ids) == 3
    seed = next(
        seed
        for seed in range(1000)
        if all(split_of(pk, seed=seed, test_fraction=0.5) == "train" for pk in ranked_ids)
    )
    filters = ExportFilters(test_fraction=0.5, split_seed=seed)
    conversation_in_split(trainer, split="test", filters=filters, turns=("held out?", "yes."))
    with pytest.raises(ValidationError) as refused:
        training_services.training_run_create(kind="dpo", filters=filters, queue=False)
    message = " ".join(refused.value.message_dict["test_fraction"])
    assert message.startswith(
        "No held-out prompt to evaluate on: a held-out fraction of 0.5 holds out none of the 3 "
        "prompts (whole conversations are held out"
    )
    assert "or 0 to train without evaluation" in message
    assert not TrainingRun.objects.exists()
    ppo = run_kinds.PPO.config_from_dict({"test_fraction": 0.5})
    dataset = {"source": "database", "filters": filters.as_dict()}
    assert run_kinds.data_split_problems(run_kinds.PPO, ppo, dataset) == {}
    # Asked to hold out nothing, it trains without evaluation, as asked.
    run = training_services.training_run_create(
        kind="dpo", filters=ExportFilters(test_fraction=0.0), queue=False
    )
    assert run.dataset["filters"]["test_fraction"] == 0.0


@pytest.mark.usefixtures("ranked")
def test_a_dpo_run_records_what_its_file_holds(policy, tmp_path):
    pairs = list(records("pairs", ExportFilters(test_fraction=0.0)))
    rankings = list(records("rankings", ExportFilters(test_fraction=0.0)))
    files = {"pairs": pairs, "rankings": rankings, "rankings and pairs": rankings + pairs[:2]}
    for held, rows in files.items():
        data = tmp_path / f"{len(rows)}.jsonl"
        write_jsonl(iter(rows), data)
        run = training_services.training_run_create(
            kind="dpo",
            config={"max_steps": 1, "batch_size": 2, "max_length": 48, "test_fraction": 0.0},
            data_path=str(data),
            queue=False,
        )
        run = training_services.training_run_run_inline(run_id=run.pk)
        assert run.status == TrainingRun.Status.SUCCEEDED, run.error
        assert run.dataset["format"] == held and run.dataset["rows"] == len(rows)
        assert f"{len(rows)} {held} records loaded" in run.log


def test_a_kto_file_whose_label_is_not_a_boolean_is_refused_naming_its_line_before_any_run(
    policy, tmp_path
):
    """Only the trainer checked a KTO `label`, so "yes" was recorded as a run that failed on
    its worker; every record's label is checked when the run is made, by the trainer's check."""
    prompt = [{"role": "user", "content": "Hi"}]
    rows = [
        {"prompt": prompt, "completion": "Hello.", "label": True},
        {"prompt": prompt, "completion": "Go away.", "label": "yes"},
    ]
    data = tmp_path / "kto.jsonl"
    write_jsonl(iter(rows), data)
    with pytest.raises(CommandError) as refused:
        call_command(
            "train_kto", "--data", str(data), "--test-fraction", "0", "--queue", stdout=StringIO()
        )
    assert str(refused.value) == (
        "--data: kto.jsonl line 2: A KTO record's `label` is true (desirable) or false "
        '(undesirable), not "yes".'
    )
    assert not TrainingRun.objects.exists()


def test_reward_data_sources_from_the_database(feedback, policy):
    run = training_services.training_run_create(
        kind="reward",
        config={"max_steps": 1, "batch_size": 2, "max_length": 48},
        filters=ExportFilters(test_fraction=0.0),
        reward_sources=("rankings", "feedback"),
        queue=False,
    )
    assert run.dataset["sources"] == ["rankings", "feedback"]
    run = training_services.training_run_run_inline(run_id=run.pk)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    # 6 rankings and 2 feedback pairs.
    assert run.dataset["rows"] == 8
    with pytest.raises(ValidationError, match="reward_sources"):
        training_services.training_run_create(
            kind="reward", filters=ExportFilters(), reward_sources=("gossip",), queue=False
        )


def test_a_file_trained_reward_model_names_its_demonstrations_or_turns_normalising_off(
    policy, tmp_path
):
    data = tmp_path / "rankings.jsonl"
    write_jsonl(iter(synthetic_rankings(8)), data)
    with pytest.raises(ValidationError, match="normalised on demonstrations"):
        training_services.training_run_create(kind="reward", data_path=str(data), queue=False)
    run = training_services.training_run_create(
        kind="reward",
        config={"normalize_to_demonstrations": False},
        data_path=str(data),
        queue=False,
    )
    assert run.dataset["source"] == "file"


def test_sft_learns_only_the_turns_of_the_chosen_origins(micro_model_dir):
    tokenizer = load_tokenizer(micro_model_dir)
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello there"},
        {"role": "user", "content": "how are you"},
        {"role": "assistant", "content": "fine thanks"},
    ]
    origins = ["human", "model", "human", "human"]
    everything = sft_example(tokenizer, messages, max_length=256)
    human = sft_example(
        tokenizer, messages, max_length=256, origins=origins, learn_origins=("human",)
    )
    learned = [t for t in human["labels"] if t != IGNORE_INDEX]
    assert tokenizer.decode(learned) == "fine thanks<|end|>"
    assert len([t for t in everything["labels"] if t != IGNORE_INDEX]) > len(learned)
    assert (
        sft_example(
            tokenizer, messages, max_length=256, origins=origins, learn_origins=("model_edited",)
        )
        is None
    )


@pytest.mark.usefixtures("ranked", "policy")
def test_sft_origin_option_reaches_the_config(trainer):
    arguments = ["--origin", "human", "--origin", "model_edited", "--test-fraction", "0"]
    # Every reply of `ranked` is the model's own: nothing of those origins to learn.
    with pytest.raises(CommandError, match="Nothing to train on: there is no demonstration yet"):
        call_command("train_sft", *arguments, "--queue", stdout=StringIO())
    finished_conversation(trainer, origin="human")
    call_command("train_sft", *arguments, "--queue", stdout=StringIO())
    assert TrainingRun.objects.get().config["origins"] == "human,model_edited"
    with pytest.raises(CommandError, match="not both"):
        call_command("train_sft", "--origins", "model", "--origin", "human", "--queue")
    assert TrainingRun.objects.count() == 1
    # The demonstrations export carries each message's origin, so the filter can apply.
    record = next(iter(records("demonstrations", ExportFilters())))
    assert len(record["origins"]) == len(record["messages"])


def test_a_project_reward_run_normalises_on_that_projects_demonstrations_alone(
    policy, trainer, settings
):
    ours = project_create(name="Ours", slug="ours", status="active")
    theirs = project_create(name="Theirs", slug="theirs", status="active")
    for project, reply in ((ours, "our reply"), (theirs, "their reply")):
        conversation = finished_conversation(trainer, turns=("hi", reply))
        Conversation.objects.filter(pk=conversation.pk).update(project=project)
    filters = ExportFilters(project_ids=(ours.pk,), test_fraction=0.0)
    # Demonstrations alone: nothing to train a reward model on.
    with pytest.raises(ValidationError, match="there is no ranking yet in project “Ours”"):
        training_services.training_run_create(kind="reward", filters=filters, queue=False)
    (ranked_conversation,) = ranked_in_halves(trainer, settings, "first")
    Conversation.objects.filter(pk=ranked_conversation.pk).update(project=ours)
    RankingTask.objects.update(project=ours)
    Ranking.objects.update(project=ours)
    run = training_services.training_run_create(kind="reward", filters=filters, queue=False)
    data = run_kinds.REWARD.load(run, run_kinds.REWARD.config_from_dict(run.config))
    demonstrations = data.extra["demonstrations"].rows
    assert sorted(row["messages"][-1]["content"] for row in demonstrations) == ["a.", "our reply"]


def _feedback_on_conversations(trainer, other_trainer, count: int, start: int) -> None:
    """``count`` conversations of two exchanges, their first reply disliked, their last liked."""
    for index in range(start, start + count):
        turns = (f"q{index}?", f"a{index}.", f"and q{index}?", f"a{index} again.")
        conversation = finished_conversation(trainer, turns=turns)
        replies = conversation.messages.filter(role="assistant").order_by("pk")
        for message, rating in zip(replies, ("down", "up"), strict=True):
            Feedback.objects.create(user=other_trainer, message=message, rating=rating)


def test_feedback_records_are_read_a_chunk_at_a_time_not_a_query_a_row(trainer, other_trainer):
    """A training run's feedback examples and pairs (read in the request that makes a run, to
    check its split) took two queries for every feedback row (its reply's parent, then that
    conversation's messages): thousands of rows were a request that timed out."""
    filters = ExportFilters(test_fraction=0.0)
    _feedback_on_conversations(trainer, other_trainer, 2, start=0)
    with CaptureQueriesContext(connection) as few:
        examples = list(kto_records(filters, sources=("thumbs_up", "thumbs_down")))
    assert len(examples) == 4
    _feedback_on_conversations(trainer, other_trainer, 10, start=2)
    with CaptureQueriesContext(connection) as many:
        examples = list(kto_records(filters, sources=("thumbs_up", "thumbs_down")))
        pairs = list(feedback_pair_records(filters))
    assert len(examples) == 24 and len(pairs) == 0
    assert len(many) == 2 * len(few)  # examples, then pairs: a query or two each
    # Each reply follows the path to it, as before.
    liked = [example for example in examples if example["label"]]
    assert liked[-1]["prompt"] == [
        {"role": "user", "content": "q11?"},
        {"role": "assistant", "content": "a11."},
        {"role": "user", "content": "and q11?"},
    ]
    assert liked[-1]["completion"] == [{"role": "assistant", "content": "a11 again."}]
    disliked = [example for example in examples if not example["label"]]
    assert disliked[0]["prompt"] == [{"role": "user", "content": "q0?"}]


def test_feedback_on_a_conversation_not_finished_is_left_out_of_training_until_it_is_again(
    feedback, other_trainer, policy
):
    """Thumbs and reports on the replies of a conversation reopened or discarded (a ranking
    task's replies are stored in its writer's), or on a sample made for it, are left out of the
    KTO records and feedback pairs, as its rankings are (source_finished), until it is finished
    again; feedback on a sample of no conversation ("Try the model") is kept throughout."""
    tasks, messages, rows = feedback
    on_sample = Feedback.objects.create(user=other_trainer, sample=messages[1].sample, rating="up")
    job = GenerationJob.objects.create(
        model_version=policy,
        prompt_messages=[{"role": "user", "content": "a playground prompt"}],
        n=1,
        params={"max_new_tokens": 8},
        seed=7,
        purpose=GenerationJob.Purpose.PLAYGROUND,
        status=GenerationJob.Status.SUCCEEDED,
    )
    playground = Feedback.objects.create(
        user=other_trainer,
        sample=Sample.objects.create(
            job=job, index=0, text="a playground reply", token_count=3, logprob_sum=-1.0
        ),
        rating="up",
    )
    filters = ExportFilters(test_fraction=0.0)

    def read() -> tuple[set[int], int]:
        examples = kto_records(filters, sources=("thumbs_up", "thumbs_down", "reports"))
        return {example["feedback_id"] for example in examples}, len(
            list(feedback_pair_records(filters))
        )

    every = {row.pk for row in rows} | {on_sample.pk, playground.pk}
    assert read() == (every, 2)
    writer = tasks[0].source_message.conversation.owner
    conversation = labeling_services.conversation_reopen(
        conversation=tasks[0].source_message.conversation, user=writer
    )
    assert read() == ({playground.pk}, 0)
    conversation = labeling_services.conversation_discard(conversation=conversation, user=writer)
    assert read() == ({playground.pk}, 0)
    conversation = labeling_services.conversation_reopen(conversation=conversation, user=writer)
    assert read() == ({playground.pk}, 0)
    labeling_services.conversation_finish(conversation=conversation, user=writer)
    assert read() == (every, 2)
