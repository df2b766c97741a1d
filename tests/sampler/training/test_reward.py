"""`train_reward` end to end: data in, a stock-loadable reward model out, the run recorded."""

import json
import shutil
from io import StringIO
from pathlib import Path

import pytest
import torch
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ranking.exports.filters import ExportFilters
from ranking.exports.pipeline import records, write_jsonl
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active
from sampler.registry.services import (
    model_version_promote,
    model_version_register,
    reward_version_score,
)
from sampler.runs import services as training_services
from sampler.runs.kinds import training_kind, validated_config
from sampler.runs.models import TrainingRun
from sampler.training.compare import Reply, judge_replies
from sampler.training.config import RewardConfig
from sampler.training.data import conversation_ids, pad_right, ranking_from_record
from sampler.training.model import (
    RewardScorer,
    build_reward_model,
    load_tokenizer,
    missing_lora_targets,
    turn_end_ids,
)
from sampler.training.records import DataError, file_sha256, records_sha256
from sampler.training.reward import score_sequences, train_reward
from sampler.training.synthetic import synthetic_demonstrations, synthetic_rankings
from tests.ranking.conftest import ranked  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

NOISE = 0.15


@pytest.fixture(autouse=True)
def model_root(settings, tmp_path) -> Path:
    settings.MODEL_ROOT = tmp_path / "models"
    return settings.MODEL_ROOT


def _write(rows, path: Path) -> Path:
    write_jsonl(iter(rows), path)
    return path


@torch.no_grad()
def _stock_scores(model, tokenizer, conversations) -> torch.Tensor:
    """Scores as any user would get them: stock model, tokenizer padding, `.logits`."""
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    tokenizer.padding_side = "right"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return model(**batch).logits.squeeze(-1)


def _held_out_accuracy(model, tokenizer, rankings) -> float:
    correct = pairs = 0
    for record in rankings:
        prompt, texts, groups = ranking_from_record(record)
        scores = _stock_scores(
            model, tokenizer, [[*prompt, {"role": "assistant", "content": t}] for t in texts]
        )
        for rank, group in enumerate(groups):
            for worse in groups[rank + 1 :]:
                for winner in group:
                    for loser in worse:
                        correct += int(scores[winner] > scores[loser])
                        pairs += 1
    return correct / pairs


def test_train_reward_reaches_the_noise_ceiling_of_a_known_rule_and_reloads_stock(policy, tmp_path):
    rankings = synthetic_rankings(800, k=4, rule="keyword", noise=NOISE, seed=1)
    demonstrations = synthetic_demonstrations(100, seed=2)
    data = _write(rankings, tmp_path / "rankings.jsonl.gz")
    demos = _write(demonstrations, tmp_path / "demonstrations.jsonl")
    call_command(
        "train_reward",
        "--data", str(data),
        "--demonstrations", str(demos),
        "--learning-rate", "2e-3",
        "--epochs", "2",
        "--batch-size", "8",
        "--max-length", "64",
        "--eval-every", "50",
        "--name", "rm-keyword",
        stdout=StringIO(),
        verbosity=0,
    )  # fmt: skip

    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.SUCCEEDED and run.progress == 1.0
    assert run.dataset["sha256"] == file_sha256(data) and run.dataset["rows"] == 800
    assert {"loss/train", "accuracy/train", "learning_rate", "loss/eval", "accuracy/eval"} <= set(
        run.metrics
    )
    version = run.output_versions.get()
    assert version.name == "rm-keyword" and version.kind == ModelVersion.Kind.REWARD
    assert version.parent == policy and version.source == ModelVersion.Source.TRAINED
    # Registered, not promoted: the active models did not change.
    assert not version.is_active and model_version_active() == policy
    assert model_version_active(kind=ModelVersion.Kind.REWARD) is None

    held_out = [r for r in rankings if r["split"] == "test"]
    ceiling = sum(r["rule_agrees"] for r in held_out) / len(held_out)
    assert version.metrics["accuracy/eval"] >= ceiling - 0.05, (version.metrics, ceiling)

    # Stock loading, stock padding and pooling: the same held-out accuracy as reported.
    model = AutoModelForSequenceClassification.from_pretrained(version.path).eval()
    tokenizer = AutoTokenizer.from_pretrained(version.path)
    assert _held_out_accuracy(model, tokenizer, held_out) == pytest.approx(
        version.metrics["accuracy/eval"], abs=1e-9
    )
    # The same scores as the trainer's own last-token reader on the same weights ...
    conversations = [d["messages"] for d in demonstrations]
    stock = _stock_scores(model, tokenizer, conversations)
    ids = [tokenizer.apply_chat_template(c, tokenize=True)["input_ids"] for c in conversations]
    ours = RewardScorer(model)(*pad_right(ids, pad_id=tokenizer.pad_token_id))
    torch.testing.assert_close(stock, ours, atol=1e-5, rtol=1e-5)
    # ... and demonstrations score mean 0, as normalised after training.
    assert abs(stock.mean().item()) < 1e-3
    assert version.metrics["reward/normalized_on"] == 100


@pytest.mark.usefixtures("ranked")
def test_reward_run_from_the_database_records_filters_rows_and_sha256(policy):
    filters = ExportFilters(test_fraction=0.0)
    run = training_services.training_run_create(
        kind="reward",
        config={"max_steps": 2, "batch_size": 2, "max_length": 48},
        filters=filters,
        queue=False,
    )
    run = training_services.training_run_run_inline(run_id=run.pk)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    expected = list(records("rankings", filters))
    assert run.dataset["source"] == "database" and run.dataset["filters"] == filters.as_dict()
    assert run.dataset["rows"] == len(expected) == 6
    assert run.dataset["sha256"] == records_sha256(expected)
    version = run.output_versions.get()
    # Demonstrations from the database (the three finished conversations) set the zero.
    assert version.metrics["reward/normalized_on"] == 3
    assert run.dataset["demonstrations"]["rows"] == 3
    assert "no held-out rankings" in run.log
    assert not Path(run.checkpoint_dir).exists()


def _interrupted_at_step_3(run: TrainingRun) -> None:
    """Run ``run`` inline and stop it (as a killed process would) at step 3."""

    def interrupt(event):
        if event.kind == "train" and event.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training_services.training_run_run_inline(run_id=run.pk, echo=interrupt)


def test_an_interrupted_run_changes_no_active_model_and_resumes_from_its_checkpoint(
    policy, tmp_path, model_root
):
    reward = ModelVersion.objects.create(name="old-rm", kind="reward", path=policy.path)
    model_version_promote(version=reward)
    data = _write(synthetic_rankings(40, k=3, seed=3), tmp_path / "rankings.jsonl")
    run = training_services.training_run_create(
        kind="reward",
        config={
            "max_steps": 6,
            "checkpoint_every": 2,
            "batch_size": 4,
            "max_length": 48,
            "normalize_to_demonstrations": False,
        },
        data_path=str(data),
        queue=False,
    )

    _interrupted_at_step_3(run)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "resume" in run.error.lower()
    assert not run.output_versions.exists()
    assert not (model_root / run.output_name).exists()
    assert model_version_active() == policy
    assert model_version_active(kind="reward") == reward
    # In the folder of the attempt that saved it; the next attempt resumes from there.
    [saved] = Path(run.checkpoint_dir).glob("attempt-*/step-00000002")
    assert saved.is_dir()

    run = training_services.training_run_run_inline(run_id=run.pk)
    assert run.status == TrainingRun.Status.SUCCEEDED
    assert "resumed at step 2" in run.log
    assert [point[0] for point in run.metrics["loss/train"]] == [
        1,
        5,
        6,
    ]  # step 1 kept by the checkpoint
    assert run.output_versions.get().metrics["steps"] == 6
    assert model_version_active(kind="reward") == reward


@pytest.mark.usefixtures("ranked")
def test_a_run_from_the_database_resumes_on_the_rows_it_first_read(policy, model_root):
    """Rankings made (or trust re-estimated) after a run started change the records its filters
    choose; resuming it still works, on the rows it read, kept beside its checkpoints."""
    from ranking.models import Ranking

    filters = ExportFilters(test_fraction=0.0)
    first_rows = list(records("rankings", filters))
    run = training_services.training_run_create(
        kind="reward",
        config={"max_steps": 4, "checkpoint_every": 2, "batch_size": 2, "max_length": 48},
        filters=filters,
        queue=False,
    )

    _interrupted_at_step_3(run)
    Ranking.objects.order_by("pk").first().delete()
    assert list(records("rankings", filters)) != first_rows

    run = training_services.training_run_run_inline(run_id=run.pk)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert "resumed at step 2" in run.log
    assert run.dataset["rows"] == len(first_rows) == 6
    assert run.dataset["sha256"] == records_sha256(first_rows)
    assert not Path(run.checkpoint_dir).exists()


def test_a_run_on_broken_data_fails_and_registers_nothing(policy, tmp_path, model_root):
    # A margin the trainer refuses when it reads the pair (a file that cannot be read at all is
    # refused before any run is made).
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "hi", "chosen": "a", "rejected": "b", "margin": Infinity}\n')
    with pytest.raises(CommandError, match="finite number"):
        call_command(
            "train_reward",
            "--data",
            str(broken),
            "--normalize-to-demonstrations",
            "no",
            "--test-fraction",
            "0",
            stdout=StringIO(),
            verbosity=0,
        )
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.FAILED and "finite number, not inf" in run.error
    assert ModelVersion.objects.count() == 1 and model_version_active() == policy
    assert not any(model_root.glob("*")) if model_root.exists() else True


def test_create_rejects_bad_settings_before_anything_runs(policy, tmp_path):
    data = _write(synthetic_rankings(4), tmp_path / "r.jsonl")
    with pytest.raises(ValidationError) as error:
        training_services.training_run_create(
            kind="reward", config={"learning_rate": -1, "warp": 1}, data_path=str(data), queue=False
        )
    assert "config" in error.value.message_dict
    with pytest.raises(ValidationError, match="either"):
        training_services.training_run_create(kind="reward", queue=False)
    with pytest.raises(ValidationError, match="folder training may read"):
        training_services.training_run_create(
            kind="sft", data_path=str(data), allowed_data_roots=[tmp_path / "uploads"], queue=False
        )
    assert not TrainingRun.objects.exists()


def test_promote_command_switches_the_active_version_atomically(policy, micro_model_dir):
    other = ModelVersion.objects.create(name="micro-2", path=str(micro_model_dir))
    out = StringIO()
    call_command("promote", "micro-2", stdout=out)
    assert "micro-2 is now the active" in out.getvalue()
    assert model_version_active() == other
    with pytest.raises(CommandError, match="No model version"):
        call_command("promote", "nope")


def test_run_record_stores_the_full_config_as_json(policy, tmp_path):
    data = _write(synthetic_rankings(4), tmp_path / "r.jsonl")
    run = training_services.training_run_create(
        kind="reward",
        config={"margin_per_rank": 0.5, "normalize_to_demonstrations": False},
        data_path=str(data),
        queue=False,
    )
    assert json.loads(json.dumps(run.config))["margin_per_rank"] == 0.5
    assert run.config["epochs"] == 1.0 and run.output_name == f"micro-reward-run{run.pk}"


def test_weighting_by_trust_learns_from_the_trusted_ranker_over_an_adversarial_one(
    policy, tmp_path
):
    """Half the training rankings come from a trusted ranker who follows the rule, half from one
    who reverses it (trust 0.02): weighted by trust the reward model learns the rule; unweighted,
    the two cancel out."""
    rankings = synthetic_rankings(480, k=4, rule="keyword", noise=0.0, seed=3)
    for index, record in enumerate(rankings):
        adversarial = record["split"] == "train" and index % 2 == 1
        record["trust_weight"] = 0.02 if adversarial else 0.98
        if adversarial:
            record["ordering"] = record["ordering"][::-1]
    data = _write(rankings, tmp_path / "rankings.jsonl")
    accuracy = {}
    for weighted in ("yes", "no"):
        call_command(
            "train_reward",
            "--data", str(data),
            "--weight-by-trust", weighted,
            "--normalize-to-demonstrations", "no",
            "--learning-rate", "2e-3",
            "--epochs", "2",
            "--batch-size", "8",
            "--max-length", "64",
            "--name", f"rm-trust-{weighted}",
            stdout=StringIO(),
            verbosity=0,
        )  # fmt: skip
        run = TrainingRun.objects.get(output_versions__name=f"rm-trust-{weighted}")
        assert run.status == TrainingRun.Status.SUCCEEDED
        assert run.config["weight_by_trust"] is (weighted == "yes")
        accuracy[weighted] = run.output_versions.get().metrics["accuracy/eval"]
    # The held-out rankings all follow the rule.
    assert accuracy["yes"] >= 0.8, accuracy
    assert accuracy["yes"] - accuracy["no"] >= 0.2, accuracy


@pytest.mark.parametrize(
    ("command", "extra"),
    [("train_reward", ["--queue"]), ("export_comparisons", ["--format", "rankings"])],
)
@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--model-version", "Unknown model version: nope"),
        ("--exclude-trainer", "Unknown user: nope"),
    ],
)
def test_a_filter_naming_what_does_not_exist_is_refused_not_ignored(
    policy, trainer, tmp_path, command, extra, option, message
):
    known = policy.name if option == "--model-version" else trainer.username
    arguments = [*extra, option, known, option, "nope"]
    if command == "export_comparisons":
        arguments += ["--out", str(tmp_path / "out.jsonl")]
    with pytest.raises(CommandError) as refused:
        call_command(command, *arguments, verbosity=0)
    assert str(refused.value) == f"{message}."  # the same sentence from both commands
    assert not TrainingRun.objects.exists() and not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    "command", ["train_reward", "train_sft", "train_dpo", "train_kto", "train_ppo"]
)
def test_options_that_would_be_ignored_are_refused_before_any_run_exists(policy, tmp_path, command):
    data = tmp_path / "data.jsonl"
    data.write_text("")
    with pytest.raises(CommandError) as refused:
        call_command(command, "--data", str(data), "--date-from", "2030-01-01", verbosity=0)
    assert str(refused.value) == (
        "--date-from chooses rows of the database; a --data file is read whole (filter it when "
        "you export it)."
    )
    with pytest.raises(CommandError) as refused:
        call_command(
            command, "--data", str(data), "--date-from", "2030-01-01", "--project", "default",
            verbosity=0,
        )  # fmt: skip
    assert str(refused.value).startswith("--date-from, --project choose rows of the database;")
    with pytest.raises(CommandError) as resumed:
        call_command(command, "--resume", "7", "--max-steps", "10", "--queue", verbosity=0)
    assert str(resumed.value) == (
        "--resume continues run 7 with the settings it was created with; leave out "
        "--max-steps, --queue."
    )
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize(
    ("command", "name"),
    [
        ("train_reward", "reward"),
        ("train_sft", "sft"),
        ("train_dpo", "dpo"),
        ("train_kto", "kto"),
        ("train_ppo", "PPO"),
    ],
)
def test_resuming_a_run_that_is_not_there_names_the_kind_and_trains_nothing(db, command, name):
    with pytest.raises(CommandError) as refused:
        call_command(command, "--resume", "7", stdout=StringIO(), verbosity=0)
    assert str(refused.value) == f"No {name} run 7."
    assert not TrainingRun.objects.exists()


def test_demonstrations_that_are_not_are_refused_before_a_step_is_trained(policy, tmp_path):
    rankings = tmp_path / "rankings.jsonl"
    write_jsonl(iter(synthetic_rankings(8)), rankings)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for wrong, holds in ((rankings, "its first record has"), (empty, "it is empty")):
        with pytest.raises(ValidationError) as refused:
            training_services.training_run_create(
                kind="reward", data_path=str(rankings), demonstrations_path=str(wrong)
            )
        message = refused.value.message_dict["demonstrations"][0]
        assert f"{wrong.name} holds no demonstration" in message and holds in message
    # A file that changes after the run was created is caught when it loads, before training.
    demonstrations = tmp_path / "demonstrations.jsonl"
    write_jsonl(iter(synthetic_demonstrations(4)), demonstrations)
    run = training_services.training_run_create(
        kind="reward",
        config={"max_steps": 1, "batch_size": 2, "max_length": 48, "checkpoint_every": 1},
        data_path=str(rankings),
        demonstrations_path=str(demonstrations),
        queue=False,
    )
    demonstrations.write_text(rankings.read_text())
    with pytest.raises(DataError, match=r"demonstrations\.jsonl holds no demonstration"):
        training_services.training_run_run_inline(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "demonstrations.jsonl holds no demonstration" in run.error
    assert not run.metrics.get("loss/train") and not Path(run.checkpoint_dir).exists()


def test_string_prompts_in_pairs_are_the_users_turn(micro_model_dir):
    record = {"prompt": "what colour?", "chosen": "blue", "rejected": "no"}
    prompt, texts, ordering = ranking_from_record(record)
    assert prompt == [{"role": "user", "content": "what colour?"}]
    assert (texts, ordering) == (["blue", "no"], [[0], [1]])
    with pytest.raises(DataError, match="neither a ranking"):
        ranking_from_record({"prompt": [1, 2], "chosen": "a", "rejected": "b"})


def test_rankings_with_no_order_are_skipped_and_ties_beside_an_order_are_kept():
    """As the README says: "all equally good" (one group), "all bad" and "cannot rank" (no
    ordering) give the reward model nothing; a tie beside an order is a tied pair."""
    base = {
        "prompt": [{"role": "user", "content": "hi"}],
        "candidates": [{"candidate_id": i, "text": f"reply {i}"} for i in (1, 2, 3)],
        "cannot_rank": False,
    }
    assert ranking_from_record({**base, "ordering": [[1, 2, 3]]}) is None
    assert ranking_from_record({**base, "ordering": []}) is None
    assert ranking_from_record({**base, "ordering": [], "cannot_rank": True}) is None
    _, texts, groups = ranking_from_record({**base, "ordering": [[2, 3], [1]]})
    assert (texts, groups) == (["reply 2", "reply 3", "reply 1"], [[0, 1], [2]])


def test_a_test_fraction_the_files_own_split_would_override_is_refused(policy, tmp_path):
    data = tmp_path / "demonstrations.jsonl"
    write_jsonl(iter(synthetic_demonstrations(4)), data)
    assert "split" in json.loads(data.read_text().splitlines()[0])
    with pytest.raises(CommandError, match="carry their own `split`"):
        call_command("train_sft", "--data", str(data), "--test-fraction", "0.5", verbosity=0)
    unsplit = tmp_path / "unsplit.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    unsplit.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows))
    call_command("train_sft", "--data", str(unsplit), "--test-fraction", "0.5", "--queue")
    assert TrainingRun.objects.get().config["test_fraction"] == 0.5


def test_filters_that_choose_rankings_are_refused_for_demonstrations(policy, tmp_path):
    out = tmp_path / "demonstrations.jsonl"
    with pytest.raises(CommandError, match="--min-agreement chooses rankings or pairs"):
        call_command(
            "export_comparisons", "--format", "demonstrations", "--out", str(out),
            "--min-agreement", "0.9", verbosity=0,
        )  # fmt: skip
    # The train_* commands name their own options.
    with pytest.raises(CommandError) as refused:
        call_command("train_sft", "--exclude-flag", "harmful", "--queue", verbosity=0)
    assert str(refused.value) == (
        "--exclude-flag chooses rankings or pairs; demonstrations are not filtered by it."
    )
    kto = tmp_path / "kto.jsonl"
    kto.write_text(json.dumps({"prompt": "hi", "completion": "hello", "label": True}) + "\n")
    with pytest.raises(CommandError) as refused:
        call_command("train_kto", "--data", str(kto), "--sources", "flags", verbosity=0)
    assert str(refused.value) == (
        "--sources chooses rows of the database; a --data file is read whole."
    )
    assert not TrainingRun.objects.exists() and not out.exists()


def test_a_missing_file_is_named_by_the_option_that_gave_it(policy, tmp_path, model_root):
    data = tmp_path / "rankings.jsonl"
    data.write_text(json.dumps(synthetic_rankings(1, k=3, seed=0)[0]) + "\n")
    with pytest.raises(CommandError) as refused:
        call_command(
            "train_reward", "--data", str(data), "--demonstrations", str(tmp_path / "nope.jsonl"),
            verbosity=0,
        )  # fmt: skip
    assert str(refused.value) == f"--demonstrations: No file at {tmp_path / 'nope.jsonl'}."
    with pytest.raises(CommandError) as refused:
        call_command("train_reward", "--data", str(tmp_path / "gone.jsonl"), verbosity=0)
    assert str(refused.value) == f"--data: No file at {tmp_path / 'gone.jsonl'}."
    assert not TrainingRun.objects.exists()


def test_resuming_a_cancelled_run_says_how_to_queue_it_again(policy, tmp_path, model_root):
    from sampler.runs.services import training_run_cancel

    data = tmp_path / "rankings.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rankings(4, k=3, seed=0)))
    call_command(
        "train_reward", "--data", str(data), "--normalize-to-demonstrations", "no", "--queue",
        stdout=StringIO(), verbosity=0,
    )  # fmt: skip
    run = training_run_cancel(run=TrainingRun.objects.get())
    with pytest.raises(CommandError) as refused:
        call_command("train_reward", "--resume", str(run.pk), stdout=StringIO(), verbosity=0)
    assert f"`manage.py retry_job training {run.pk}` queues it again" in str(refused.value)


def test_a_file_of_another_format_is_refused_before_any_run_exists(policy, tmp_path, model_root):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": [], "chosen": [], "rejected": []}) + "\n")
    with pytest.raises(CommandError) as refused:
        call_command("train_sft", "--data", str(pairs), verbosity=0)
    assert str(refused.value) == (
        "--data: A supervised fine-tuning run reads records with `messages`; the first record of "
        "pairs.jsonl has `chosen`, `prompt`, `rejected`."
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CommandError, match=r"empty\.jsonl holds no record"):
        call_command("train_dpo", "--data", str(empty), verbosity=0)
    assert not TrainingRun.objects.exists()


def test_a_file_from_a_newer_export_schema_is_refused_before_any_run_exists(
    policy, tmp_path, model_root
):
    """Schema 2 renamed pairs' `margin` to `rank_distance`: a newer schema may change what a
    field means, and reading it as this version's would train on the wrong thing in silence."""
    newer = tmp_path / "newer.jsonl"
    rows = [{**row, "schema_version": 3} for row in synthetic_demonstrations(4, seed=1)]
    write_jsonl(iter(rows), newer)
    with pytest.raises(CommandError) as refused:
        call_command("train_sft", "--data", str(newer), "--queue", verbosity=0)
    assert str(refused.value) == (
        "--data: newer.jsonl was exported with schema_version 3, and this version of Tandem reads "
        "up to 2: update it, or export the data with this one."
    )
    assert not TrainingRun.objects.exists()


def test_demonstrations_from_a_newer_export_schema_are_refused_before_any_run_exists(
    policy, tmp_path, model_root
):
    """The demonstrations a reward model is normalised on are export records too: a newer
    schema is refused by name, as for ``--data``."""
    data = _write(synthetic_rankings(4, k=3, seed=0), tmp_path / "rankings.jsonl")
    rows = [{**row, "schema_version": 3} for row in synthetic_demonstrations(4, seed=1)]
    demos = _write(rows, tmp_path / "demos.jsonl")
    with pytest.raises(CommandError) as refused:
        call_command(
            "train_reward", "--data", str(data), "--demonstrations", str(demos), "--queue",
            verbosity=0,
        )  # fmt: skip
    assert str(refused.value) == (
        "--demonstrations: demos.jsonl was exported with schema_version 3, and this version of "
        "Tandem reads up to 2: update it, or export the data with this one."
    )
    assert not TrainingRun.objects.exists()


def test_a_yes_or_no_option_says_what_it_expects(policy, tmp_path, model_root):
    with pytest.raises(CommandError) as refused:
        call_command("train_dpo", "--weight-by-trust", "maybe", verbosity=0)
    assert "expected yes or no, got 'maybe'" in str(refused.value)
    assert "_boolean" not in str(refused.value)


def _turn_end_is_not_eos(micro_model_dir, path: Path) -> Path:
    """The micro model as many chat models come: the tokenizer's eos is not the token that ends
    a turn (only the generation config names that one) and the template writes a newline after
    it, as ChatML's does after ``<|im_end|>``."""
    shutil.copytree(micro_model_dir, path)
    tokenizer = load_tokenizer(path)
    tokenizer.eos_token = "<|system|>"
    tokenizer.chat_template = tokenizer.chat_template.replace("'<|end|>' }}", "'<|end|>\n' }}")
    tokenizer.save_pretrained(path)
    return path


def test_a_reward_model_is_scored_where_its_training_cut_the_turn(micro_model_dir, tmp_path, db):
    base = _turn_end_is_not_eos(micro_model_dir, tmp_path / "base")
    tokenizer = load_tokenizer(base)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|end|>")
    assert turn_end_ids(base, tokenizer) == [end_of_turn, tokenizer.eos_token_id]
    out = tmp_path / "reward"
    train_reward(
        config=RewardConfig(
            max_steps=1, batch_size=4, max_length=48, normalize_to_demonstrations=False
        ),
        records=synthetic_rankings(8, k=2, seed=1),
        base_model=base,
        output_dir=out,
    )
    assert turn_end_ids(out, load_tokenizer(out)) == turn_end_ids(base, tokenizer)

    conversation = [
        {"role": "user", "content": "how was the hike?"},
        {"role": "assistant", "content": "long, and the view was worth it"},
    ]
    rendered = conversation_ids(tokenizer, conversation)
    assert rendered[-2] == end_of_turn and rendered[-1] != end_of_turn
    scorer = RewardScorer(build_reward_model(out, load_tokenizer(out))).eval()
    at_end_of_turn, after_it = score_sequences(
        scorer, [rendered[:-1], rendered], pad_id=tokenizer.pad_token_id
    ).tolist()
    assert abs(at_end_of_turn - after_it) > 1e-6

    version = model_version_register(name="rm", path=str(out), kind=ModelVersion.Kind.REWARD)
    [served] = reward_version_score(version=version, conversations=[conversation])
    assert abs(served - at_end_of_turn) < 1e-5

    reply = Reply(text=conversation[1]["content"], token_count=9, finished=True)
    verdict = judge_replies(
        reward_model=out, prompts=[conversation[:1]], replies_a=[reply], replies_b=[reply]
    )
    assert abs(verdict["examples"][0]["score_a"] - at_end_of_turn) < 1e-5


class _Process:
    """One process of an ``accelerate launch``, as ``process_state`` describes it."""

    def __init__(self, *, main: bool) -> None:
        self.is_main_process = main

    def wait_for_everyone(self) -> None:
        pass


@pytest.mark.usefixtures("ranked")
def test_the_processes_of_one_launch_train_on_the_rows_the_main_one_read(
    policy, model_root, monkeypatch
):
    """Under ``accelerate launch`` every process loads the run's data. Only the main one reads
    the database; the others read the rows it kept, so a ranking made or removed between their
    reads cannot give the processes different data."""
    from ranking.models import Ranking
    from sampler.training import loop

    run = training_services.training_run_create(
        kind="reward",
        config={"max_steps": 2, "batch_size": 2, "max_length": 48},
        filters=ExportFilters(test_fraction=0.0),
        queue=False,
    )
    kind = training_kind("reward")
    config = validated_config(kind, run.config)
    monkeypatch.setattr(loop, "process_state", lambda: _Process(main=True))
    main = kind.load(run, config)
    Ranking.objects.order_by("pk").first().delete()
    assert list(records("rankings", ExportFilters(test_fraction=0.0))) != main.rows

    monkeypatch.setattr(loop, "process_state", lambda: _Process(main=False))
    other = kind.load(run, config)
    assert other.rows == main.rows
    assert other.description["sha256"] == main.description["sha256"]


def _one_step_run(tmp_path: Path) -> TrainingRun:
    """An unqueued reward run of one step on 12 synthetic rankings, written to
    ``tmp_path / "rankings.jsonl"``."""
    data = _write(synthetic_rankings(12, k=3, seed=3), tmp_path / "rankings.jsonl")
    return training_services.training_run_create(
        kind="reward",
        config={"max_steps": 1, "batch_size": 4, "normalize_to_demonstrations": False},
        data_path=str(data),
        queue=False,
    )


def test_a_run_cancelled_while_its_model_is_saved_leaves_no_folder_and_can_be_retried(
    policy, tmp_path, model_root, monkeypatch
):
    """A cancel that lands while the trained model is written (after the last heartbeat) was
    noticed only when the run tried to succeed: the model folder stayed under MODEL_ROOT with
    no version, and the retried run failed on "exists already"."""
    from sampler.training import loop

    run = _one_step_run(tmp_path)
    save_output = loop.save_output

    def saved_then_cancelled(*args, **kwargs):
        result = save_output(*args, **kwargs)
        training_services.training_run_cancel(run=TrainingRun.objects.get(pk=run.pk))
        return result

    monkeypatch.setattr(loop, "save_output", saved_then_cancelled)
    run = training_services.training_run_run_inline(run_id=run.pk)
    assert run.status == TrainingRun.Status.CANCELLED
    assert not run.output_versions.exists()
    assert not (model_root / run.output_name).exists()

    monkeypatch.setattr(loop, "save_output", save_output)
    training_services.training_run_retry(run=run)
    run = training_services.training_run_run_inline(run_id=run.pk)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.output_versions.get().path == str(model_root / run.output_name)


def test_a_run_whose_worker_stopped_between_moving_its_model_and_registering_it_can_be_retried(
    policy, tmp_path, model_root, monkeypatch
):
    """A worker stopped after the trained model was moved in place, before the version was
    registered (no cleanup ran), left the folder with no version: the run's retry failed on
    "exists already". The run's own folder is now replaced; anyone else's is still refused."""
    from sampler.runs import services

    run = _one_step_run(tmp_path)

    class WorkerStopped(BaseException):
        pass

    def stopped(**kwargs):
        raise WorkerStopped

    # The stop as the worker sees it: no registration, and no cleanup after it.
    monkeypatch.setattr(services, "model_version_register", stopped)
    monkeypatch.setattr(services, "_remove_unless_taken_over", lambda *args, **kwargs: None)
    with pytest.raises(WorkerStopped):
        training_services.training_run_run_inline(run_id=run.pk)
    monkeypatch.undo()
    assert (model_root / run.output_name / "config.json").is_file()

    other = _one_step_run(tmp_path)
    (model_root / other.output_name).mkdir()
    (model_root / other.output_name / services.RUN_MARKER).write_text(f"{run.pk}\n")
    with pytest.raises(ValidationError, match="exists already"):
        training_services.training_run_run_inline(run_id=other.pk)
    assert (model_root / other.output_name / services.RUN_MARKER).is_file()

    run = TrainingRun.objects.get(pk=run.pk)
    if run.status != TrainingRun.Status.QUEUED:
        training_services.training_run_retry(run=run)
    run = training_services.training_run_run_inline(run_id=run.pk)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.output_versions.get().path == str(model_root / run.output_name)
    assert not list(model_root.glob("*.leftover"))


def test_a_folder_that_took_the_runs_name_while_it_trained_fails_it_and_leaves_no_partial(
    policy, tmp_path, model_root, monkeypatch
):
    """The trained model is moved in place at the end: a folder of that name made meanwhile (by
    hand, or by another install sharing MODEL_ROOT) keeps it out. The run fails saying so, and
    the trained copy, a whole model, is not left behind as a hidden `.partial` folder."""
    from sampler.training import loop

    run = _one_step_run(tmp_path)
    save_output = loop.save_output

    def saved_then_taken(*args, **kwargs):
        result = save_output(*args, **kwargs)
        (model_root / run.output_name).mkdir()
        (model_root / run.output_name / "notes.txt").write_text("someone else's\n")
        return result

    monkeypatch.setattr(loop, "save_output", saved_then_taken)
    with pytest.raises(ValidationError, match="exists already"):
        training_services.training_run_run_inline(run_id=run.pk)
    run = TrainingRun.objects.get(pk=run.pk)
    assert run.status == TrainingRun.Status.FAILED
    assert f"{run.output_name} exists already" in run.error
    assert not run.output_versions.exists()
    assert [p.name for p in model_root.iterdir() if p.name != "runs"] == [run.output_name]
    assert (model_root / run.output_name / "notes.txt").read_text() == "someone else's\n"


def test_train_reward_from_a_file_without_demonstrations_names_its_own_option_to_skip_normalising(
    policy, tmp_path, model_root
):
    data = tmp_path / "rankings.jsonl"
    write_jsonl(iter(synthetic_rankings(4, k=3, seed=0)), data)
    with pytest.raises(CommandError) as refused:
        call_command("train_reward", "--data", str(data), verbosity=0)
    assert str(refused.value).endswith(
        "name a demonstrations export (--demonstrations), or set --normalize-to-demonstrations no."
    )
    assert not TrainingRun.objects.exists()


def test_a_file_with_an_unpaired_surrogate_is_refused_naming_its_line_before_any_run_exists(
    policy, tmp_path, model_root
):
    """The tokenizer fails on a lone surrogate ("TextEncodeInput must be Union[...]") once a
    worker starts the run; the file is refused by that line instead. A pair is one character."""
    paired = {"role": "user", "content": "\ud83d\ude00"}
    lone = {"role": "user", "content": "a\ud800b"}
    reply = {"role": "assistant", "content": "x"}
    data = tmp_path / "sur.jsonl"
    data.write_text(
        json.dumps({"messages": [paired, reply]}) + "\n\n" + json.dumps({"messages": [lone, reply]})
    )
    with pytest.raises(CommandError) as refused:
        call_command(
            "train_sft", "--data", str(data), "--test-fraction", "0", "--max-steps", "1",
            verbosity=0,
        )  # fmt: skip
    assert str(refused.value) == (
        "--data: sur.jsonl line 3 holds unpaired surrogate characters (\\ud800-\\udfff), which "
        "are not allowed."
    )
    assert not TrainingRun.objects.exists()


def test_a_reward_runs_lora_targets_are_checked_against_the_model_with_its_score_head(
    policy, tmp_path, settings
):
    """A reward run's modules are the policy's with a score head: its targets are checked on
    that model (built from the config, one label), named ones it lacks refused."""
    settings.MODEL_ROOT = tmp_path / "models"
    data = tmp_path / "rankings.jsonl"
    write_jsonl(iter(synthetic_rankings(4, k=3, seed=0)), data)
    arguments = ["--data", str(data), "--normalize-to-demonstrations", "no", "--lora-r", "4"]
    with pytest.raises(CommandError) as refused:
        call_command(
            "train_reward", *arguments, "--lora-targets", "c_attn,bogus", "--queue",
            stdout=StringIO(),
        )  # fmt: skip
    assert "has no module named `bogus` for LoRA to adapt" in str(refused.value)
    assert not TrainingRun.objects.exists()
    call_command(
        "train_reward", *arguments, "--lora-targets", "c_attn,score", "--queue", stdout=StringIO()
    )
    assert TrainingRun.objects.get().kind == TrainingRun.Kind.REWARD


def test_lora_targets_of_a_model_this_machine_cannot_build_are_left_to_its_trainer(tmp_path):
    """A config of an architecture this transformers does not know is not checked here (no
    error where the run is made); its trainer reports it when it loads the model."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    assert missing_lora_targets(tmp_path, "bogus", task="reward") == []
