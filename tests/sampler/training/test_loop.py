"""The shared loop, without Django: resuming gives the run that never stopped."""

import itertools
import json
from functools import partial
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from sampler.training.config import MAX_STEPS, ConfigError, RewardConfig, SFTConfig
from sampler.training.loop import (
    STATE_FILE,
    checkpoint_plan,
    latest_checkpoint,
    learning_rate_at,
    prune_checkpoints,
    pruned_messages,
)
from sampler.training.reward import train_reward
from sampler.training.sft import train_sft
from sampler.training.synthetic import synthetic_demonstrations, synthetic_rankings
from tests.sampler.training.conftest import stopped_at_its_checkpoint_report_keeps_others


class Interrupt(Exception):
    pass


def _interrupted_at_step_3(trainer, common: dict, checkpoints) -> None:
    """Run until step 3 (a checkpoint at step 2), then stop it as a crash would."""

    def stop_at_step_3(event):
        if event.kind == "train" and event.step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        trainer(
            **common,
            output_dir=checkpoints.parent / "first",
            checkpoint_dir=checkpoints,
            callback=stop_at_step_3,
        )


def _resumed(trainer, common: dict, checkpoints, name: str = "resumed"):
    """(the resumed run's result, its log messages)."""
    messages: list[str] = []

    def log(event):
        if event.message:
            messages.append(event.message)

    result = trainer(
        **common,
        output_dir=checkpoints.parent / name,
        checkpoint_dir=checkpoints,
        resume=True,
        callback=log,
    )
    return result, messages


def _resume_case(kind: str, base_model) -> tuple:
    """(trainer, its arguments): 6 steps, a checkpoint every 2, an epoch ending at step 5."""
    shared = {"max_steps": 6, "batch_size": 4, "checkpoint_every": 2, "max_length": 48}
    if kind == "sft":
        config = SFTConfig(**shared, learning_rate=1e-3)
        records = synthetic_demonstrations(24)
        return train_sft, {"config": config, "records": records, "base_model": base_model}
    config = RewardConfig(**shared, learning_rate=1e-3, normalize_to_demonstrations=False)
    records = synthetic_rankings(24, k=3, seed=5)
    return train_reward, {"config": config, "records": records, "base_model": base_model}


@pytest.mark.parametrize("kind", ["reward", "sft"])
def test_a_resumed_run_with_dropout_ends_with_the_weights_of_one_that_never_stopped(
    kind, dropout_model_dir, tmp_path
):
    """Dropout draws from the global generators, which more than the loop's steps use (each
    data loader draws a seed from it whenever it starts an iteration): each step draws from its
    own seed, so the steps after a resume draw what they drew in the run that never stopped."""
    trainer, common = _resume_case(kind, dropout_model_dir)
    whole = trainer(**common, output_dir=tmp_path / "whole")
    _interrupted_at_step_3(trainer, common, tmp_path / "checkpoints")
    resumed, messages = _resumed(trainer, common, tmp_path / "checkpoints")
    assert "resumed at step 2 of 6" in messages
    assert not [message for message in messages if "not repeat" in message]
    assert resumed.steps == whole.steps == 6
    assert resumed.history["loss/train"] == whole.history["loss/train"]
    expected = load_file(tmp_path / "whole" / "model.safetensors")
    actual = load_file(tmp_path / "resumed" / "model.safetensors")
    assert expected.keys() == actual.keys()
    assert all(torch.equal(actual[name], expected[name]) for name in expected)
    before = load_file(dropout_model_dir / "model.safetensors")
    assert not torch.equal(
        before["transformer.h.0.attn.c_attn.weight"], expected["transformer.h.0.attn.c_attn.weight"]
    )


def test_a_checkpoint_saved_before_steps_were_seeded_still_resumes_and_says_it_is_not_exact(
    dropout_model_dir, tmp_path
):
    trainer, common = _resume_case("reward", dropout_model_dir)
    checkpoints = tmp_path / "checkpoints"
    _interrupted_at_step_3(trainer, common, checkpoints)
    state_file = checkpoints / "step-00000002" / STATE_FILE
    older = json.loads(state_file.read_text())
    del older["seeded_steps"]
    state_file.write_text(json.dumps(older))
    resumed, messages = _resumed(trainer, common, checkpoints)
    assert resumed.steps == 6
    assert "resumed at step 2 of 6" in messages
    assert (
        "checkpoint step-00000002 was saved before each step drew from its own seed: the "
        "resumed steps do not repeat the random draws (dropout) of a run that never stopped"
    ) in messages


def test_learning_rate_warms_up_then_decays_to_its_floor():
    config = SFTConfig(learning_rate=1e-3, warmup_ratio=0.1, min_learning_rate_ratio=0.1)
    rates = [learning_rate_at(step, 100, config) for step in range(101)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert max(rates) == pytest.approx(1e-3)
    assert rates[100] == pytest.approx(1e-4)
    assert all(a >= b for a, b in itertools.pairwise(rates[9:]))


def test_config_from_dict_coerces_form_values_and_rejects_unknown_or_bad_ones():
    config = RewardConfig.from_dict({"learning_rate": "1e-4", "batch_size": "6", "max_steps": None})
    assert config.learning_rate == 1e-4 and config.batch_size == 6 and config.max_steps is None
    with pytest.raises(ConfigError) as error:
        RewardConfig.from_dict({"batch_size": 0, "mixed_precision": "fp8"})
    assert set(error.value.errors) == {"batch_size", "mixed_precision"}
    with pytest.raises(ConfigError, match="Unknown settings: warp"):
        SFTConfig.from_dict({"warp": 9})
    assert RewardConfig.from_dict({"weight_by_trust": "Yes"}).weight_by_trust is True
    assert (
        RewardConfig.from_dict({"normalize_to_demonstrations": "off"}).normalize_to_demonstrations
        is False
    )
    # Neither a yes nor a no: refused, not read as "no".
    with pytest.raises(ConfigError) as error:
        RewardConfig.from_dict({"weight_by_trust": "maybe", "normalize_to_demonstrations": 2})
    assert set(error.value.errors) == {"weight_by_trust", "normalize_to_demonstrations"}


def test_config_says_the_range_of_max_steps():
    """Too many steps read "must be a positive number of steps" (the train_* commands' answer
    to --max-steps too): the message is the range, at either end."""
    for steps in (0, MAX_STEPS + 1, 10**20):
        with pytest.raises(ConfigError) as error:
            RewardConfig.from_dict({"max_steps": steps})
        assert error.value.errors == {"max_steps": "Max steps must be between 1 and 10,000,000."}
    assert SFTConfig.from_dict({"max_steps": MAX_STEPS}).max_steps == MAX_STEPS


def test_config_refuses_a_seed_numpy_cannot_take_betas_past_one_and_numbers_not_finite():
    """Each once passed validation and failed the run it was recorded with (numpy refuses a
    seed outside 0..2**32-1, torch's AdamW a beta of 1 or more) or trained to NaN weights."""
    with pytest.raises(ConfigError) as error:
        SFTConfig.from_dict(
            {"seed": -5, "adam_beta1": 1.5, "weight_decay": "nan", "lora_alpha": "inf"}
        )
    assert set(error.value.errors) == {"seed", "adam_beta1", "weight_decay", "lora_alpha"}
    with pytest.raises(ConfigError) as error:
        RewardConfig.from_dict({"seed": 2**32, "adam_beta2": 1.0})
    assert set(error.value.errors) == {"seed", "adam_beta2"}
    assert SFTConfig.from_dict({"seed": 2**32 - 1, "adam_beta2": 0}).seed == 2**32 - 1
    with pytest.raises(ConfigError) as error:
        SFTConfig.from_dict({"adam_epsilon": 0.0})
    assert set(error.value.errors) == {"adam_epsilon"}


def test_gradient_accumulation_weighs_each_micro_batch_by_its_tokens(micro_model_dir, tmp_path):
    """Two demonstrations of different lengths: one step over both as two micro-batches
    trains exactly as one batch holding both (the token mean over the two, not the mean of
    each one's mean), and logs that loss (it once logged the last micro-batch's alone).

    Adam's epsilon is set far above the gradients, so that the step follows each gradient's
    size (a step of lr * g / (|g| + eps)): with the usual 1e-8 it follows the sign alone, which
    hides how the micro-batches are weighed and magnifies rounding in gradients near zero."""
    from sampler.training.data import SFTCollator, build_sft_data
    from sampler.training.losses import IGNORE_INDEX, token_cross_entropy
    from sampler.training.model import load_policy, load_tokenizer
    from sampler.training.sft import train_sft
    from sampler.training.synthetic import synthetic_demonstrations

    records = [{**r, "split": "train"} for r in synthetic_demonstrations(2, seed=3)]
    shared = {"max_steps": 1, "log_every": 1, "eval_every": 0, "max_length": 64}
    linear = {"learning_rate": 0.5, "adam_epsilon": 10.0, "warmup_ratio": 0.0}

    def trained(name: str, **config) -> tuple[dict, list]:
        result = train_sft(
            config=SFTConfig(**shared, **linear, **config),
            records=records,
            base_model=micro_model_dir,
            output_dir=tmp_path / name,
        )
        return load_file(tmp_path / name / "model.safetensors"), result.history["loss/train"]

    accumulated, accumulated_loss = trained(
        "accumulated", batch_size=1, gradient_accumulation_steps=2
    )
    together, together_loss = trained("together", batch_size=2)

    tokenizer = load_tokenizer(micro_model_dir)
    data = build_sft_data(tokenizer, records, max_length=64, test_fraction=0.0, seed=0)
    model = load_policy(micro_model_dir).eval()
    collate = SFTCollator(pad_id=tokenizer.pad_token_id)
    losses, tokens = [], []
    with torch.no_grad():
        for example in data.train:
            batch = collate([example])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            losses.append(token_cross_entropy(logits.logits, batch["labels"]).item())
            tokens.append(int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()))
    assert tokens[0] != tokens[1]
    token_mean = sum(loss * n for loss, n in zip(losses, tokens, strict=True)) / sum(tokens)
    assert accumulated_loss == [[1, pytest.approx(token_mean, abs=1e-5)]]
    assert together_loss == [[1, pytest.approx(token_mean, abs=1e-5)]]
    before = load_policy(micro_model_dir).state_dict()
    moved = max((together[name] - before[name]).abs().max().item() for name in together)
    assert moved > 1e-3
    for name, tensor in together.items():
        torch.testing.assert_close(accumulated[name], tensor, rtol=1e-5, atol=1e-9)


def test_a_run_with_no_data_says_the_filters_chose_none(micro_model_dir, tmp_path):
    from sampler.training.data import DataError
    from sampler.training.sft import train_sft

    with pytest.raises(DataError) as refused:
        train_sft(
            config=SFTConfig(max_steps=1),
            records=[],
            base_model=micro_model_dir,
            output_dir=tmp_path / "out",
        )
    assert str(refused.value) == (
        "No usable demonstration in the training split (no record was read: the data filters "
        "(or the file) chose none)."
    )


def test_a_reward_run_whose_data_half_holds_no_ranking_says_so(micro_model_dir, tmp_path):
    """A reward run on the second half (Training page, train_reward --data-half) of rankings
    that all fall in the first half failed saying no record was read, as if the filters had
    chosen none: the records were read, and the half left none of them out for training."""
    from sampler.training.data import DataError
    from sampler.training.records import record_half

    first_half = [r for r in synthetic_rankings(12, seed=0) if record_half(r) == "first"]
    assert first_half
    with pytest.raises(DataError) as refused:
        train_reward(
            config=RewardConfig(max_steps=1, data_half="second", normalize_to_demonstrations=False),
            records=iter(first_half),
            base_model=micro_model_dir,
            output_dir=tmp_path / "out",
        )
    assert str(refused.value) == (
        f"No usable ranking in the training split ({len(first_half)} records were read, and "
        "none of their conversations is in the second half this run trains on: train on every "
        "conversation or the first half, or rank more conversations)."
    )


def test_config_refuses_numbers_that_are_not_finite():
    """NaN passes every `x < 0` check: `--max-kl nan` turned the early stop off without a word
    (`kl > nan` is never true) and `--margin-per-rank nan` made the first loss NaN."""
    from sampler.training.ppo_config import PPOConfig

    with pytest.raises(ConfigError) as error:
        PPOConfig.from_dict({"max_kl": "nan", "gradient_clip": "inf", "weight_decay": "nan"})
    assert set(error.value.errors) == {"max_kl", "gradient_clip", "weight_decay"}
    assert error.value.errors["max_kl"] == "Stop past KL must be a finite number."
    with pytest.raises(ConfigError) as error:
        RewardConfig.from_dict({"margin_per_rank": float("nan"), "lora_alpha": float("inf")})
    assert set(error.value.errors) == {"margin_per_rank", "lora_alpha"}
    assert PPOConfig.from_dict({"max_kl": 0, "gradient_clip": 0.5}).max_kl == 0


class TokenValueScorer(torch.nn.Module):
    """A real, tiny reward scorer: a sequence's score is the sum of its tokens' values."""

    def __init__(self, vocabulary: int):
        super().__init__()
        self.values = torch.nn.Embedding(vocabulary, 1)
        torch.nn.init.normal_(self.values.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, input_ids, attention_mask):
        return (self.values(input_ids).squeeze(-1) * attention_mask).sum(-1)


def test_trust_weights_count_across_micro_batches_as_within_one_batch():
    """A ranking of trust 0.1 and one of trust 1.0, each its own micro-batch of one step: the
    step's objective is the trust-weighted mean over both, (0.1 l1 + l2) / 1.1, as when they
    share a batch. Each micro-batch's own weighted mean is its plain loss, so weighing the
    micro-batches by their ranking count gave (l1 + l2) / 2: trust had no effect at all."""
    import torch.nn.functional as F

    from sampler.training.data import RankingCollator, RankingExample
    from sampler.training.loop import _accumulated_step, make_accelerator
    from sampler.training.reward import RewardTask

    config = RewardConfig(weight_by_trust=True, normalize_to_demonstrations=False)
    examples = [
        RankingExample(candidates=[[1, 2], [3]], pairs=[(0, 1, 1)], groups=[[0], [1]], weight=0.1),
        RankingExample(candidates=[[4], [5, 6]], pairs=[(0, 1, 1)], groups=[[0], [1]], weight=1.0),
    ]
    collate = RankingCollator(pad_id=0)
    accelerator = make_accelerator(config)

    def gradient(window) -> torch.Tensor:
        scorer = TokenValueScorer(8)
        _accumulated_step(RewardTask(config), scorer, window, accelerator)
        return scorer.values.weight.grad.clone()

    scorer = TokenValueScorer(8)
    values = scorer.values.weight.squeeze(-1)
    first = -F.logsigmoid(values[1] + values[2] - values[3])
    second = -F.logsigmoid(values[4] - values[5] - values[6])
    ((0.1 * first + 1.0 * second) / 1.1).backward()
    by_hand = scorer.values.weight.grad

    torch.testing.assert_close(gradient([collate(examples)]), by_hand)
    torch.testing.assert_close(gradient([collate(examples[:1]), collate(examples[1:])]), by_hand)


def test_a_run_stopped_at_its_checkpoint_report_removes_no_other_checkpoint(
    micro_model_dir, tmp_path
):
    """A process that no longer holds its run (taken over after a stall) learns so at its
    next report: the one after it saves a checkpoint. It must not have removed, before that,
    the checkpoints the process that took the run over saved in the same folder."""
    train = partial(
        train_reward,
        config=RewardConfig(
            max_steps=4,
            batch_size=4,
            checkpoint_every=2,
            max_length=48,
            normalize_to_demonstrations=False,
        ),
        records=synthetic_rankings(12, k=3, seed=5),
        base_model=micro_model_dir,
        output_dir=tmp_path / "out",
    )
    stopped_at_its_checkpoint_report_keeps_others(train, tmp_path / "checkpoints")


def _checkpoint(folder, step: int, *, complete: bool = True):
    path = folder / f"step-{step:08d}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return path


def test_an_attempt_resumes_from_its_own_checkpoint_else_the_newest_complete_one_of_its_run(
    tmp_path,
):
    run = tmp_path / "run-1"
    mine, earlier, stalled = run / "attempt-c", run / "attempt-a", run / "attempt-b"
    _checkpoint(run, 1)  # saved before attempts had folders
    expected = _checkpoint(earlier, 4)
    _checkpoint(stalled, 6, complete=False)  # a worker stopped while it saved
    assert latest_checkpoint(mine) == expected
    # Its own, once it has one, even beside another attempt's newer one.
    own = _checkpoint(mine, 2)
    assert latest_checkpoint(mine) == own
    # A folder that is no attempt of a run reads only itself.
    assert latest_checkpoint(run / "elsewhere") is None


def test_a_saved_checkpoint_removes_the_other_attempts_checkpoints_up_to_its_step(tmp_path):
    run = tmp_path / "run-1"
    mine, earlier, stalled = run / "attempt-c", run / "attempt-a", run / "attempt-b"
    (run / "data.jsonl.gz").parent.mkdir(parents=True)
    (run / "data.jsonl.gz").write_bytes(b"rows")  # a run's data, beside its checkpoints
    _checkpoint(run, 1)  # saved before attempts had folders
    _checkpoint(earlier, 2)
    _checkpoint(earlier, 4, complete=False)  # its worker stopped while it saved
    newer = _checkpoint(stalled, 6)  # past this attempt's: not needless yet
    _checkpoint(mine, 2)
    kept = _checkpoint(mine, 4)
    main_process = SimpleNamespace(is_main_process=True)

    assert prune_checkpoints(main_process, kept) == 3
    assert sorted(path.relative_to(run).as_posix() for path in run.rglob("*")) == [
        "attempt-b",
        "attempt-b/step-00000006",
        "attempt-b/step-00000006/trainer_state.json",
        "attempt-c",
        "attempt-c/step-00000004",
        "attempt-c/step-00000004/trainer_state.json",
        "data.jsonl.gz",
    ]
    assert latest_checkpoint(mine) == kept
    # A folder that is no attempt of a run prunes only itself; other processes prune nothing.
    alone = _checkpoint(tmp_path / "checkpoints", 2)
    assert prune_checkpoints(main_process, _checkpoint(tmp_path / "checkpoints", 4)) == 0
    assert not alone.exists()
    assert prune_checkpoints(SimpleNamespace(is_main_process=False), kept) == 0
    assert newer.is_dir()


def test_an_attempt_that_started_over_removes_what_it_found_at_any_step_and_nothing_newer(
    tmp_path,
):
    run = tmp_path / "run-1"
    mine, earlier = run / "attempt-c", run / "attempt-a"
    main_process = SimpleNamespace(is_main_process=True, num_processes=1)
    _checkpoint(run, 1)  # saved before attempts had folders
    _checkpoint(earlier, 4)
    _checkpoint(earlier, 6, complete=False)  # its worker stopped while it saved
    folder, resume_from, abandoned = checkpoint_plan(main_process, mine, resume=False)
    assert (folder, resume_from, len(abandoned)) == (mine, None, 3)
    # A resumed run abandons nothing.
    assert checkpoint_plan(main_process, mine, resume=True)[1:] == (earlier / "step-00000004", [])
    # An attempt that took the run over from this one, after it started over, saved its own.
    later = _checkpoint(run / "attempt-d", 6)
    kept = _checkpoint(mine, 2)
    assert pruned_messages(SimpleNamespace(is_main_process=False), kept, abandoned) == []
    assert pruned_messages(main_process, kept, abandoned) == [
        "removed 3 checkpoints saved before this attempt started over"
    ]
    assert sorted(path.relative_to(run).as_posix() for path in run.rglob("step-*")) == [
        "attempt-c/step-00000002",
        "attempt-d/step-00000006",
    ]
    assert later.is_dir() and not earlier.exists()


def test_a_run_that_started_over_in_its_own_folder_keeps_the_checkpoint_it_saved(tmp_path):
    """A folder that is no attempt of a run: the checkpoint saved where one it found was."""
    folder = tmp_path / "checkpoints"
    main_process = SimpleNamespace(is_main_process=True, num_processes=1)
    _checkpoint(folder, 2)
    _checkpoint(folder, 4)
    _, _, abandoned = checkpoint_plan(main_process, folder, resume=False)
    kept = folder / "step-00000002"
    assert pruned_messages(main_process, kept, abandoned) == [
        "removed 1 checkpoint saved before this attempt started over"
    ]
    assert list(folder.iterdir()) == [kept]


def test_a_run_of_one_batch_per_epoch_says_so_in_the_singular(micro_model_dir, tmp_path):
    """The log's first line counts steps and batches, each in the right number."""
    messages: list[str] = []

    def log(event):
        if event.kind == "start":
            messages.append(event.message)

    config = SFTConfig(max_steps=1, batch_size=8, max_length=48, learning_rate=1e-3)
    train_sft(
        config=config,
        records=synthetic_demonstrations(4),
        base_model=micro_model_dir,
        output_dir=tmp_path / "out",
        callback=log,
    )
    assert messages == ["1 step, 1 batch per epoch"]


def test_the_curves_start_at_the_first_step_however_short_the_run(micro_model_dir, tmp_path):
    """A 6-step run logged every 5 steps drew its curves from step 5: step 1 is a point too
    (the average of itself), then every log_every steps and the last."""
    config = SFTConfig(max_steps=6, batch_size=2, max_length=48, log_every=5, eval_every=0)
    result = train_sft(
        config=config,
        records=synthetic_demonstrations(4),
        base_model=micro_model_dir,
        output_dir=tmp_path / "out",
    )
    for name in ("loss/train", "learning_rate"):
        assert [step for step, _ in result.history[name]] == [1, 5, 6], name
