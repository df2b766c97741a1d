"""SFT, reward and KTO runs from the database (or a file) whose data split would leave them
nothing to evaluate on (a held-out fraction above 0 that holds out none), or, for a reward model
on one half of the conversations, nothing to train on, are refused when they are made: on the
Training page and by the train_* commands, on the field to change. They used to be queued, and
then trained without a held-out metric, or failed on the worker."""

import json
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from labeling.models import Conversation, Feedback
from ranking.exports.filters import split_of
from ranking.models import Candidate, Ranking
from sampler.runs import services as training_services
from sampler.runs.data import BY_FILE_CONVERSATION, database_records
from sampler.runs.models import TrainingRun
from sampler.training.data import build_ranking_data
from sampler.training.model import load_tokenizer
from sampler.training.records import record_split
from tests.ranking.conftest import (  # noqa: F401  (ranked: a fixture)
    finished_conversation,
    quick_trainer,
    ranked,
    ranked_in_halves,
)

pytestmark = pytest.mark.django_db

FRACTION = 0.5


@pytest.fixture(autouse=True)
def model_root(settings, tmp_path):
    """Where the one run these tests train (a reward model on a half) saves its model."""
    settings.MODEL_ROOT = tmp_path / "models"


def _seed_holding_out(count: int) -> int:
    """A split seed whose held-out fraction holds out exactly ``count`` of the conversations
    (their ids are the database's, so the seed is looked for)."""
    ids = list(Conversation.objects.values_list("pk", flat=True))
    return next(
        seed
        for seed in range(5000)
        if sum(split_of(pk, seed=seed, test_fraction=FRACTION) == "test" for pk in ids) == count
    )


@pytest.fixture
def marked(ranked, trainer):  # noqa: F811
    """The `ranked` fixture's 3 conversations, each ranked twice with its last reply flagged
    harmful once, and a thumbs up on one of each conversation's other replies: 2 KTO examples
    a conversation."""
    tasks, _ = ranked
    for task in tasks:
        message = Candidate.objects.filter(task=task).order_by("position")[1].message
        Feedback.objects.create(
            user=trainer, message=message, rating="up", model_version=message.model_version
        )
    return tasks


# kind: (the form's fields of the kind, the command's options, what it counts and how many
# there are in `marked`).
KINDS = {
    "sft": ({}, [], "demonstration", 3),
    "reward": ({}, ["--normalize-to-demonstrations", "no"], "ranking", 6),
    "kto": (
        {"kto_sources": ["flags", "thumbs_up"]},
        ["--sources", "flags,thumbs_up"],
        "example",
        6,
    ),
}
# What a refusal tells to add, by kind: what the kind's trainer learns from.
ADD = {
    "sft": "conversations",
    "reward": "rankings",
    "kto": "feedback on replies",
    "dpo": "rankings",
}


def advice(kind: str) -> str:
    return (
        f"(whole conversations are held out, chosen by a hash of their id). Add more {ADD[kind]}, "
        "or choose a larger held-out fraction (or 0 to train without evaluation)."
    )


def smaller(kind: str) -> str:
    return (
        f"(whole conversations are held out, chosen by a hash of their id). Add more {ADD[kind]}, "
        "or choose a smaller held-out fraction."
    )


def _none_held_out(kind: str) -> str:
    _, _, unit, count = KINDS[kind]
    return (
        f"No held-out {unit} to evaluate on: a held-out fraction of 0.5 holds out none of the "
        f"{count} {unit}s {advice(kind)}"
    )


def _post(client, kind: str, **fields):
    own = KINDS[kind][0] if kind in KINDS else {}
    form = {"kind": kind, "source": "database", "split_seed": "0", **own}
    return client.post(reverse("sampler:training-run-start"), {**form, **fields})


@pytest.mark.usefixtures("marked", "policy")
@pytest.mark.parametrize("kind", KINDS)
def test_the_training_page_refuses_a_fraction_that_holds_out_nothing(admin_client_, kind):
    seed = _seed_holding_out(0)
    refused = _post(admin_client_, kind, test_fraction="0.5", split_seed=str(seed))
    assert refused.status_code == 422 and not TrainingRun.objects.exists()
    errors = refused.context["form"].errors
    assert set(errors) == {"test_fraction"}
    assert errors["test_fraction"] == [_none_held_out(kind)]
    assert "No held-out" in refused.content.decode()
    # Asked to hold out nothing, it trains without evaluation, as asked.
    accepted = _post(admin_client_, kind, test_fraction="0", split_seed=str(seed))
    assert accepted.status_code == 302
    assert TrainingRun.objects.get().dataset["filters"]["test_fraction"] == 0.0
    # A seed that holds out a conversation: accepted.
    seed = _seed_holding_out(1)
    accepted = _post(admin_client_, kind, test_fraction="0.5", split_seed=str(seed))
    assert accepted.status_code == 302
    run = TrainingRun.objects.latest("pk")
    assert run.kind == kind and run.dataset["filters"]["split_seed"] == seed


@pytest.mark.usefixtures("marked", "policy")
@pytest.mark.parametrize("kind", KINDS)
def test_the_train_commands_refuse_a_fraction_that_holds_out_nothing(kind):
    options = KINDS[kind][1]
    seed = _seed_holding_out(0)
    with pytest.raises(CommandError) as refused:
        call_command(
            f"train_{kind}", *options, "--test-fraction", "0.5", "--split-seed", str(seed),
            "--queue", stdout=StringIO(),
        )  # fmt: skip
    assert str(refused.value) == f"--test-fraction: {_none_held_out(kind)}"
    assert not TrainingRun.objects.exists()
    for fraction, chosen in (("0", seed), ("0.5", _seed_holding_out(1))):
        call_command(
            f"train_{kind}", *options, "--test-fraction", fraction, "--split-seed", str(chosen),
            "--queue", stdout=StringIO(),
        )  # fmt: skip
    assert TrainingRun.objects.filter(kind=kind).count() == 2


@pytest.mark.usefixtures("marked", "policy")
@pytest.mark.parametrize("kind", KINDS)
def test_a_fraction_that_holds_out_everything_is_refused_it_leaves_nothing_to_train_on(
    admin_client_, kind
):
    """The worker failed: "No usable ... in the training split"."""
    _, _, unit, count = KINDS[kind]
    seed = str(_seed_holding_out(3))
    refused = _post(admin_client_, kind, test_fraction="0.5", split_seed=seed)
    assert refused.status_code == 422 and not TrainingRun.objects.exists()
    assert refused.context["form"].errors["test_fraction"] == [
        f"No {unit} to train on: a held-out fraction of 0.5 holds out all {count} {unit}s "
        + smaller(kind)
    ]


@pytest.mark.usefixtures("marked", "policy")
def test_a_kto_run_needs_two_examples_on_each_side_of_its_split(admin_client_):
    """One held-out example alone has no KL estimate (each reply is put after another
    example's prompt): the trainer skipped evaluation without a word; one left to train on
    failed on the worker. From the flags alone, one example a conversation."""
    fields = {"test_fraction": "0.5", "kto_sources": ["flags"]}
    refused = _post(admin_client_, "kto", split_seed=str(_seed_holding_out(1)), **fields)
    assert refused.status_code == 422 and not TrainingRun.objects.exists()
    assert refused.context["form"].errors["test_fraction"] == [
        "Too few held-out examples to evaluate on: a held-out fraction of 0.5 holds out 1 of "
        "the 3 examples, and KTO evaluates on at least 2: its KL estimate puts each reply "
        f"after another example's prompt {advice('kto')}"
    ]
    refused = _post(admin_client_, "kto", split_seed=str(_seed_holding_out(2)), **fields)
    assert refused.status_code == 422 and not TrainingRun.objects.exists()
    assert refused.context["form"].errors["test_fraction"] == [
        "Too few examples to train on: a held-out fraction of 0.5 leaves 1 of the 3 examples "
        f"to train on, and KTO trains on at least 2 {smaller('kto')}"
    ]
    # With the thumbs up too, two a conversation: one held out is enough on both sides.
    fields["kto_sources"] = ["flags", "thumbs_up"]
    accepted = _post(admin_client_, "kto", split_seed=str(_seed_holding_out(1)), **fields)
    assert accepted.status_code == 302


@pytest.mark.usefixtures("policy")
@pytest.mark.parametrize("fraction", ["0.1", "0"])
def test_a_run_with_nothing_at_all_says_there_is_nothing_yet(admin_client_, fraction):
    """With nothing to train on, whatever the fraction (a run without evaluation, fraction 0,
    was queued, then failed on the worker): said of the whole form, as no field can help."""
    refused = _post(admin_client_, "kto", test_fraction=fraction)
    assert refused.status_code == 422 and not TrainingRun.objects.exists()
    assert refused.context["form"].errors == {
        "__all__": [
            "Nothing to train on: there is no example yet (no reply flagged harmful/untruthful "
            "or thumbs up). Add more feedback on replies first."
        ]
    }
    refused = _post(admin_client_, "sft", test_fraction=fraction)
    assert refused.context["form"].errors == {
        "__all__": [
            "Nothing to train on: there is no demonstration yet (no finished conversation). Add "
            "more conversations first."
        ]
    }


@pytest.mark.usefixtures("policy")
def test_a_run_with_fewer_than_its_trainer_needs_is_refused_whatever_the_fraction(
    admin_client_, other_trainer, trainer
):
    """KTO trains on at least 2 examples: with one, a fraction of 0 was queued, then failed on
    the worker."""
    reply = finished_conversation(other_trainer).active_leaf
    Feedback.objects.create(user=trainer, message=reply, rating="up")
    fields = {"kto_sources": ["thumbs_up"], "test_fraction": "0"}
    refused = _post(admin_client_, "kto", **fields)
    assert refused.status_code == 422 and not TrainingRun.objects.exists()
    assert refused.context["form"].errors == {
        "__all__": [
            "Too few examples to train on: there is 1 example, and KTO trains on at least 2. "
            "Add more feedback on replies first."
        ]
    }
    other = finished_conversation(other_trainer, turns=("hey", "hi there")).active_leaf
    Feedback.objects.create(user=trainer, message=other, rating="up")
    assert _post(admin_client_, "kto", **fields).status_code == 302


# ---- a reward model on one half of the conversations ---------------------------------------


def test_a_reward_run_on_a_half_that_holds_no_ranking_is_refused_as_its_worker_would_fail(
    admin_client_, policy, other_trainer, settings
):
    ranked_in_halves(other_trainer, settings, "first", "first")
    refused = _post(admin_client_, "reward", test_fraction="0", data_half="second")
    assert refused.status_code == 422 and not TrainingRun.objects.exists()
    assert refused.context["form"].errors["data_half"] == [
        "Nothing in the second half to train on: 2 records were read, and none of their "
        "conversations is in the second half this run trains on: train on every conversation "
        "or the first half, or rank more conversations."
    ]
    with pytest.raises(CommandError, match=r"^--data-half: Nothing in the second half"):
        call_command(
            "train_reward", "--data-half", "second", "--test-fraction", "0", "--queue",
            stdout=StringIO(),
        )  # fmt: skip
    assert not TrainingRun.objects.exists()
    # The half that holds them: accepted, and its worker trains on them.
    accepted = _post(
        admin_client_, "reward", test_fraction="0", data_half="first", max_steps="1",
        batch_size="2", max_length="48",
    )  # fmt: skip
    assert accepted.status_code == 302
    run = training_services.training_run_run_inline(run_id=TrainingRun.objects.get().pk)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.output_versions.get().metrics["data_half"] == "first"


def test_a_reward_run_on_a_half_whose_rankings_are_not_held_out_is_refused(
    admin_client_, policy, other_trainer, settings
):
    """The held-out fraction holds out a ranking, but in the half the run does not train on;
    in that half, it holds out every ranking."""
    first, second = ranked_in_halves(other_trainer, settings, "first", "second")
    seed = next(
        seed
        for seed in range(5000)
        if split_of(first.pk, seed=seed, test_fraction=FRACTION) == "train"
        and split_of(second.pk, seed=seed, test_fraction=FRACTION) == "test"
    )
    fields = {"test_fraction": "0.5", "split_seed": str(seed)}
    refused = _post(admin_client_, "reward", data_half="first", **fields)
    assert refused.status_code == 422 and not TrainingRun.objects.exists()
    assert refused.context["form"].errors["test_fraction"] == [
        "No held-out ranking to evaluate on: a held-out fraction of 0.5 does not hold out the "
        "only ranking in the first half (whole conversations are held out, chosen by a hash of "
        "their id). Add more rankings, or choose a larger held-out fraction (or 0 to train "
        "without evaluation), or train on every conversation."
    ]
    # The other half's only ranking is held out: nothing left to train on there.
    refused = _post(admin_client_, "reward", data_half="second", **fields)
    assert refused.context["form"].errors["test_fraction"] == [
        "No ranking to train on: a held-out fraction of 0.5 holds out the only ranking in the "
        "second half (whole conversations are held out, chosen by a hash of their id). Add more "
        "rankings, or choose a smaller held-out fraction, or train on every conversation."
    ]
    assert _post(admin_client_, "reward", data_half="all", **fields).status_code == 302
    assert TrainingRun.objects.count() == 1


@pytest.mark.usefixtures("ranked", "policy")
def test_a_dpo_run_that_holds_out_every_ranking_is_refused_too(admin_client_):
    """The check PPO and DPO runs already had (a fraction that holds out none) is the same one:
    it now refuses a fraction that holds out all of their prompts too."""
    seed = str(_seed_holding_out(3))
    fields = {"kind": "dpo", "source": "database", "test_fraction": "0.5", "split_seed": seed}
    refused = admin_client_.post(reverse("sampler:training-run-start"), fields)
    assert refused.status_code == 422 and not TrainingRun.objects.exists()
    assert refused.context["form"].errors["test_fraction"] == [
        "No prompt to train on: a held-out fraction of 0.5 holds out all 3 prompts "
        + smaller("dpo")
    ]


# ---- records the trainer skips are not counted -------------------------------------------------


def _seed_holding_out_only(held_out: set[int]) -> int:
    """A split seed whose held-out fraction holds out exactly the conversations ``held_out``."""
    ids = list(Conversation.objects.values_list("pk", flat=True))
    return next(
        seed
        for seed in range(5000)
        if {pk for pk in ids if split_of(pk, seed=seed, test_fraction=FRACTION) == "test"}
        == held_out
    )


def _rank_nothing(conversation_ids: set[int], **verdict) -> None:
    """The rankings of ``conversation_ids`` say nothing about the order: "all equal" (or
    ``verdict``), with no ordering, as ranking_submit stores such an answer."""
    fields = {"verdict": "all_equal", "cannot_rank": False, **verdict}
    Ranking.objects.filter(task__source_message__conversation_id__in=conversation_ids).update(
        ordering=[], rationale="they are the same", **fields
    )


@pytest.mark.parametrize(
    ("kind", "held_out", "trained"),
    [
        ("reward", "none of the 4 rankings", "all 4 rankings"),
        ("dpo", "none of the 2 prompts", "all 2 prompts"),
    ],
)
def test_rankings_that_order_nothing_are_not_counted_as_the_trainer_skips_them(
    admin_client_,
    ranked,  # noqa: F811
    kind,
    held_out,
    trained,
):
    """An "all equal", "all bad" or "cannot rank" answer is exported, and the reward and DPO
    trainers skip it (no pair in it): a held-out conversation with only those gave no held-out
    metric, and a trained side with only those failed on the worker; both were accepted."""
    unit = "ranking" if kind == "reward" else "prompt"
    conversations = sorted(Conversation.objects.values_list("pk", flat=True))
    _rank_nothing({conversations[0]})
    seed = _seed_holding_out_only({conversations[0]})
    fields = {"test_fraction": "0.5", "split_seed": str(seed)}
    refused = _post(admin_client_, kind, **fields)
    assert refused.status_code == 422 and not TrainingRun.objects.exists()
    assert refused.context["form"].errors["test_fraction"] == [
        f"No held-out {unit} to evaluate on: a held-out fraction of 0.5 holds out {held_out} "
        f"{advice(kind)}"
    ]
    # The trainer's own data holds out none of them.
    if kind == "reward":
        tokenizer = load_tokenizer(ranked[0][0].model_version.path)
        dataset = {"source": "database", "filters": {"test_fraction": 0.5, "split_seed": seed}}
        data = build_ranking_data(
            tokenizer, database_records(dataset, "rankings"), max_length=64,
            test_fraction=0.5, seed=0,
        )  # fmt: skip
        assert not data.test and len(data.train) == 4 and data.stats["skipped"] == 2
    # Held out, the conversations whose rankings say something leave nothing to train on.
    seed = _seed_holding_out_only(set(conversations[1:]))
    refused = _post(admin_client_, kind, test_fraction="0.5", split_seed=str(seed))
    assert refused.status_code == 422 and not TrainingRun.objects.exists()
    assert refused.context["form"].errors["test_fraction"] == [
        f"No {unit} to train on: a held-out fraction of 0.5 holds out {trained} {smaller(kind)}"
    ]
    # Another conversation held out, with rankings that say something: accepted.
    _rank_nothing({conversations[0]}, verdict="cannot_rank", cannot_rank=True)
    seed = _seed_holding_out_only({conversations[1]})
    assert _post(admin_client_, kind, test_fraction="0.5", split_seed=str(seed)).status_code == 302


@pytest.mark.usefixtures("policy")
def test_an_sft_run_on_some_origins_counts_the_demonstrations_that_have_one(
    admin_client_, other_trainer
):
    """SFT learning only hand-written replies (origins) skips a conversation without one: with
    only such conversations held out, it trained without a held-out metric."""
    written = [finished_conversation(other_trainer, origin="human") for _ in range(2)]
    suggested = finished_conversation(other_trainer, origin="model")
    seed = _seed_holding_out_only({suggested.pk})
    fields = {"test_fraction": "0.5", "split_seed": str(seed)}
    refused = _post(admin_client_, "sft", origins=["human"], **fields)
    assert refused.status_code == 422 and not TrainingRun.objects.exists()
    assert refused.context["form"].errors["test_fraction"] == [
        "No held-out demonstration to evaluate on: a held-out fraction of 0.5 holds out none of "
        f"the 2 demonstrations {advice('sft')}"
    ]
    # Learning every reply, the one held out is evaluated on.
    assert _post(admin_client_, "sft", **fields).status_code == 302
    # Those learning suggestions alone have nothing to train on.
    refused = _post(admin_client_, "sft", origins=["model"], **fields)
    assert refused.context["form"].errors["test_fraction"] == [
        f"No demonstration to train on: a held-out fraction of 0.5 holds out the only "
        f"demonstration {smaller('sft')}"
    ]
    # None of them at all.
    refused = _post(admin_client_, "sft", origins=["model_edited"], **fields)
    assert refused.context["form"].errors == {
        "__all__": [
            "Nothing to train on: there is no demonstration yet (no finished conversation with "
            "a reply written as model edited). Add more conversations first."
        ]
    }
    assert len(written) == 2


@pytest.mark.parametrize("side", ["test", "train"])
def test_an_uploaded_file_whose_split_leaves_a_side_empty_is_refused_as_a_database_run_is(
    admin_client_, policy, side
):
    """A file's records were not counted: a 1-record upload with a held-out fraction of 0.3
    was queued, then failed ("No usable demonstration in the training split") or trained with
    no held-out metric. They are split as the worker splits them (the seed and fraction)."""
    demonstration = next(
        record
        for number in range(5000)
        if record_split(
            record := {
                "messages": [
                    {"role": "user", "content": f"Hi {number}"},
                    {"role": "assistant", "content": "Hello"},
                ]
            },
            test_fraction=0.3,
            seed=0,  # the run's own seed (a file's records are split by it)
        )
        == side
    )
    upload = SimpleUploadedFile("one.jsonl", (json.dumps(demonstration) + "\n").encode())
    response = admin_client_.post(
        reverse("sampler:training-run-start"),
        {"kind": "sft", "source": "upload", "upload": upload, "test_fraction": "0.3",
         "split_seed": "0", "max_steps": "1"},
    )  # fmt: skip
    assert response.status_code == 422
    refusal = {
        "test": (
            "No demonstration to train on: a held-out fraction of 0.3 holds out the only "
            f"demonstration in one.jsonl {BY_FILE_CONVERSATION}. Add more records to one.jsonl, "
            "or choose a smaller held-out fraction."
        ),
        "train": (
            "No held-out demonstration to evaluate on: a held-out fraction of 0.3 does not hold "
            f"out the only demonstration in one.jsonl {BY_FILE_CONVERSATION}. Add more records "
            "to one.jsonl, or choose a larger held-out fraction (or 0 to train without "
            "evaluation)."
        ),
    }
    assert response.context["form"].errors["test_fraction"] == [refusal[side]]
    assert not TrainingRun.objects.exists()


@pytest.mark.usefixtures("policy")
def test_a_run_whose_filters_leave_out_every_ranking_says_so_not_that_there_is_none_yet(
    ranked,  # noqa: F811
):
    """Rankings exist: "there is no ranking yet. Add more rankings first." sent a user who
    excluded every ranker, or chose dates after them, to rank more instead of to widen."""
    rankers = sorted(set(Ranking.objects.values_list("ranker__username", flat=True)))
    excluded = [option for name in rankers for option in ("--exclude-trainer", name)]
    for filters in (excluded, ["--date-from", "2030-01-01"]):
        with pytest.raises(CommandError) as refused:
            call_command(
                "train_reward", "--normalize-to-demonstrations", "no", *filters, "--queue",
                stdout=StringIO(),
            )  # fmt: skip
        assert str(refused.value) == (
            "data: Nothing to train on: the filters leave none of the rankings there are "
            "(dates, trainers, agreement, flags, versions, guidelines, red team). Widen them."
        )
    assert not TrainingRun.objects.exists()
