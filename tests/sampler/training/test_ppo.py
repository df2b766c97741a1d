"""PPO: the tensor helpers against hand-computed values, and a short run on the micro model."""

import math
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from sampler.training.compare import ComparisonSettings, compare_policies
from sampler.training.config import RewardConfig
from sampler.training.model import RewardScorer, build_reward_model, load_policy, load_tokenizer
from sampler.training.ppo import (
    KLController,
    PPOState,
    PPOTrainer,
    build_value_head,
    clipped_policy_loss,
    clipped_value_loss,
    end_token_ids,
    gae,
    kl_per_token,
    masked_mean,
    masked_var,
    masked_whiten,
    token_rewards,
    train_ppo,
)
from sampler.training.ppo_config import PPOConfig
from sampler.training.reward import train_reward
from sampler.training.rollout import (
    encode_prompt,
    prompt_prefixes,
    response_mask_and_ends,
    sample_and_score,
)
from sampler.training.synthetic import WORDS
from tests.sampler.training.conftest import stopped_at_its_checkpoint_report_keeps_others

# ---- helpers ----------------------------------------------------------------------------------


def test_masked_mean_ignores_masked_entries():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert masked_mean(values, torch.tensor([1, 1, 0, 1])).item() == pytest.approx(7 / 3)


def test_masked_whiten_scales_to_unit_variance_and_can_keep_the_mean():
    values, mask = torch.tensor([2.0, 4.0, 6.0, 100.0]), torch.tensor([1, 1, 1, 0])
    # Masked mean 4, unbiased variance 4: (x - 4) / 2.
    assert masked_whiten(values, mask)[:3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)
    kept = masked_whiten(values, mask, shift_mean=False)[:3]
    assert kept.tolist() == pytest.approx([3.0, 4.0, 5.0], abs=1e-6)


def test_gae_by_hand_with_and_without_padding():
    advantages, returns = gae(
        torch.tensor([[0.0, 0.0, 1.0]]),
        torch.tensor([[0.5, 0.5, 0.5]]),
        torch.ones(1, 3),
        gamma=1.0,
        lam=0.5,
    )
    # delta = (0, 0, 0.5); A_2 = 0.5, A_1 = 0.25, A_0 = 0.125.
    assert advantages[0].tolist() == pytest.approx([0.125, 0.25, 0.5])
    assert returns[0].tolist() == pytest.approx([0.625, 0.75, 1.0])
    # The padded third position neither rewards nor bootstraps.
    advantages, returns = gae(
        torch.tensor([[0.0, 1.0, 5.0]]),
        torch.tensor([[0.5, 0.5, 9.0]]),
        torch.tensor([[1.0, 1.0, 0.0]]),
        gamma=1.0,
        lam=0.5,
    )
    assert advantages[0].tolist() == pytest.approx([0.25, 0.5, 0.0])
    assert returns[0].tolist() == pytest.approx([0.75, 1.0, 0.0])


def test_gae_with_discount():
    advantages, _ = gae(
        torch.tensor([[1.0, 1.0]]), torch.zeros(1, 2), torch.ones(1, 2), gamma=0.5, lam=1.0
    )
    assert advantages[0].tolist() == pytest.approx([1.5, 1.0])


def test_clipped_policy_loss_takes_the_pessimistic_side():
    # Ratio 1.5 on both tokens; advantage +1 is clipped at 1.2, advantage -1 is not.
    logprobs = torch.full((1, 2), math.log(1.5))
    loss, clipfrac, approx_kl = clipped_policy_loss(
        logprobs, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2), 0.2
    )
    assert loss.item() == pytest.approx((-1.2 + 1.5) / 2)
    assert clipfrac.item() == pytest.approx(0.5)
    assert approx_kl.item() == pytest.approx(0.5 * math.log(1.5) ** 2)


def test_clipped_value_loss_by_hand():
    # Moving 2.0 away from the old value: the unclipped error (1.0) is the larger one.
    loss, clipfrac = clipped_value_loss(
        torch.tensor([[2.0]]), torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), 0.5
    )
    assert (loss.item(), clipfrac.item()) == pytest.approx((0.5, 0.0))
    # Moving 0.2 with a 0.1 clip: the clipped value (0.1) is further from the return.
    loss, clipfrac = clipped_value_loss(
        torch.tensor([[0.2]]), torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), 0.1
    )
    assert (loss.item(), clipfrac.item()) == pytest.approx((0.5 * 0.81, 1.0))


def test_kl_estimators():
    logprobs, reference = torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0])
    assert kl_per_token(logprobs, reference, "k1").tolist() == pytest.approx([1.0, -1.0])
    k3 = kl_per_token(logprobs, reference, "k3")
    assert k3.tolist() == pytest.approx([math.exp(-1), math.exp(1) - 2])
    assert bool((k3 >= 0).all())


def test_score_lands_on_the_last_reply_token_not_after_it():
    rewards, non_score = token_rewards(
        torch.ones(1, 3), torch.tensor([2.0]), torch.tensor([[1.0, 1.0, 0.0]]), kl_coef=0.1
    )
    assert non_score[0].tolist() == pytest.approx([-0.1, -0.1, 0.0])
    assert rewards[0].tolist() == pytest.approx([-0.1, 1.9, 0.0])


def test_reply_mask_ends_at_the_first_end_of_turn_token():
    tokens = torch.tensor([[5, 1, 0, 1], [5, 6, 7, 8]])
    mask, has_end = response_mask_and_ends(tokens, [1])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert has_end.tolist() == [True, False]


def test_adaptive_kl_coefficient_moves_towards_the_target_and_a_fixed_one_stays():
    adaptive = KLController(0.1, adaptive=True, target=6.0, horizon=100)
    adaptive.update(12.0, replies=10)  # error clipped to 0.2
    assert adaptive.value == pytest.approx(0.1 * 1.02)
    adaptive.update(3.0, replies=10)  # error -0.5 clipped to -0.2
    assert adaptive.value == pytest.approx(0.1 * 1.02 * 0.98)
    fixed = KLController(0.1, adaptive=False, target=6.0, horizon=100)
    fixed.update(100.0, replies=10)
    assert fixed.value == 0.1


def test_prompts_are_the_prefixes_ending_in_a_user_turn():
    roles = ["user", "assistant", "user", "assistant"]
    turns = [{"role": role, "content": str(index)} for index, role in enumerate(roles)]
    assert prompt_prefixes({"messages": turns}) == [turns[:1], turns[:3]]
    assert prompt_prefixes({"prompt": turns[:3], "candidates": []}) == [turns[:3]]
    assert prompt_prefixes({"prompt": turns[:2]}) == []


def test_a_pair_in_trls_standard_form_gives_its_string_prompt_as_the_users_turn():
    """The reward model trains on such a pair file; PPO found no prompt in the same file."""
    record = {"prompt": "what colour?", "chosen": "blue", "rejected": "no"}
    assert prompt_prefixes(record) == [[{"role": "user", "content": "what colour?"}]]
    assert prompt_prefixes({"prompt": "", "chosen": "a", "rejected": "b"}) == []


def test_config_rejects_bad_settings():
    from sampler.training.config import ConfigError

    with pytest.raises(ConfigError) as error:
        PPOConfig.from_dict({"kl_estimator": "k2", "minibatches": 99, "batch_size": 4})
    assert set(error.value.errors) == {"kl_estimator", "minibatches"}


def test_config_refuses_settings_ppo_would_ignore():
    from sampler.training.config import ConfigError

    # The controller multiplies the coefficient: from 0 it stays 0 whatever the KL, so the
    # KL tracked nothing (here 100 nats against a target of 6).
    stuck = KLController(0.0, adaptive=True, target=6.0, horizon=10)
    stuck.update(100.0, replies=10)
    assert stuck.value == 0.0
    with pytest.raises(ConfigError) as error:
        PPOConfig.from_dict({"adaptive_kl": True, "kl_coef": 0})
    assert set(error.value.errors) == {"kl_coef"}
    # Every PPO step is one curve point; a log_every of 5 changed nothing.
    with pytest.raises(ConfigError) as error:
        PPOConfig.from_dict({"log_every": 5})
    assert set(error.value.errors) == {"log_every"}
    assert PPOConfig.from_dict({"kl_coef": 0}).kl_coef == 0  # a fixed 0: no KL penalty


def test_value_head_starts_from_the_reward_head_when_sizes_match(micro_model_dir):
    policy = load_policy(micro_model_dir)
    reward = build_reward_model(micro_model_dir, load_tokenizer(micro_model_dir))
    head, how = build_value_head(policy, reward, "reward_head")
    assert how == "reward_head" and torch.equal(head.weight, reward.score.weight)
    head, how = build_value_head(policy, reward, "zeros")
    assert how == "zeros" and not head.weight.any()


# ---- a short run on the micro model ----------------------------------------------------------

MAX_NEW_TOKENS = 24
TEMPERATURE = 0.7


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _NoScore(torch.nn.Module):
    def forward(self, sequence, mask):
        return torch.zeros(sequence.size(0))


def _prompts(count: int) -> list[list[dict]]:
    rng = random.Random(0)
    return [
        [{"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(2, 6))) + "?"}]
        for _ in range(count)
    ]


def _trivial_reward_model(micro_model_dir: Path, out: Path, prompts, keyword_id: int) -> Path:
    """A reward model trained in seconds on a trivial rule: replies (sampled from the micro
    policy itself) that hold the keyword token more often rank higher."""
    tokenizer, policy = load_tokenizer(micro_model_dir), load_policy(micro_model_dir).eval()
    encoded = [encode_prompt(tokenizer, p, max_length=64) for p in prompts for _ in range(4)]
    samples = sample_and_score(
        policy,
        tokenizer,
        encoded,
        scorer=_NoScore(),
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=TEMPERATURE,
        end_token_ids=end_token_ids(policy, tokenizer),
        seed=1,
        batch_size=64,
    )

    def hits(text: str) -> int:
        return tokenizer(" " + text, add_special_tokens=False)["input_ids"].count(keyword_id)

    records = []
    for index, prompt in enumerate(prompts):
        texts = samples.texts[4 * index : 4 * index + 4]
        counts = [hits(text) for text in texts]
        groups = [
            [10 * index + j for j in range(4) if counts[j] == level]
            for level in sorted(set(counts), reverse=True)
        ]
        records.append(
            {
                "conversation_id": index,
                "split": "test" if index % 5 == 0 else "train",
                "prompt": prompt,
                "candidates": [
                    {"candidate_id": 10 * index + j, "text": t} for j, t in enumerate(texts)
                ],
                "ordering": groups,
            }
        )
    result = train_reward(
        config=RewardConfig(
            learning_rate=3e-3,
            epochs=8,
            batch_size=8,
            max_length=96,
            eval_every=0,
            normalize_to_demonstrations=False,
        ),
        records=records,
        base_model=micro_model_dir,
        output_dir=out,
    )
    assert result.metrics["accuracy/eval"] > 0.85
    return out


@dataclass
class ShortRun:
    tokenizer: object
    prompts: list
    reward_dir: Path
    output_dir: Path
    result: object


@pytest.fixture(scope="module")
def short_run(micro_model_dir, tmp_path_factory) -> ShortRun:
    """12 PPO steps of the micro policy against a reward model that likes the token " the"."""
    tmp_path = tmp_path_factory.mktemp("short-ppo")
    tokenizer = load_tokenizer(micro_model_dir)
    keyword_id = tokenizer(" the", add_special_tokens=False)["input_ids"][0]
    prompts = _prompts(240)
    reward_dir = _trivial_reward_model(micro_model_dir, tmp_path / "rm", prompts, keyword_id)
    result = train_ppo(
        config=PPOConfig(
            max_steps=12,
            batch_size=16,
            learning_rate=1e-3,
            max_new_tokens=MAX_NEW_TOKENS,
            temperature=TEMPERATURE,
            eval_every=0,
            eval_prompts=16,
        ),
        prompts=[
            {"messages": p, "split": "test" if i % 5 == 0 else "train"}
            for i, p in enumerate(prompts)
        ],
        base_model=micro_model_dir,
        reward_model=reward_dir,
        output_dir=tmp_path / "ppo",
    )
    return ShortRun(tokenizer, prompts, reward_dir, tmp_path / "ppo", result)


def test_short_ppo_raises_the_reward_of_fresh_samples_with_finite_kl_and_replies_still_end(
    micro_model_dir, short_run
):
    tokenizer, result = short_run.tokenizer, short_run.result
    scorer = RewardScorer(build_reward_model(short_run.reward_dir, tokenizer)).eval()
    reference = load_policy(micro_model_dir).eval()
    held_out = [encode_prompt(tokenizer, p, max_length=64) for p in short_run.prompts[::5]]

    def fresh(path: Path):
        policy = AutoModelForCausalLM.from_pretrained(str(path)).eval()  # stock loading
        return sample_and_score(
            policy,
            tokenizer,
            held_out,
            scorer=scorer,
            reference=reference,
            max_new_tokens=MAX_NEW_TOKENS,
            temperature=TEMPERATURE,
            end_token_ids=end_token_ids(policy, tokenizer),
            seed=7,
        )

    before = fresh(micro_model_dir)
    after = fresh(short_run.output_dir)

    assert result.steps == 12 and not result.metrics["stopped_early"]
    assert after.scores.mean() > before.scores.mean() + 1.0, (
        before.summary("x"),
        after.summary("x"),
    )
    kl = after.kl.mean().item()
    assert math.isfinite(kl) and 0 < kl < PPOConfig.max_kl
    assert all(math.isfinite(v) for _, v in result.history["objective/kl"])
    # Still ends its turn (the missing end-of-turn penalty at work). The start policy ends
    # about half its replies, so the relative check is not trivial; the floor is what the
    # penalty buys (measured: 0.46 -> 0.92 with it, 0.52 with missing_eos_penalty=0).
    before_rate, after_rate = before.has_end.float().mean(), after.has_end.float().mean()
    assert 0.2 < before_rate < 0.75, before.summary("x")
    assert after_rate >= before_rate - 0.1
    assert after_rate >= 0.75, (before.summary("x"), after.summary("x"))
    for name in (
        "objective/rlhf_reward",
        "policy/entropy",
        "response/length",
        "policy/clipfrac",
        "loss/value",
        "loss/policy",
        "eval/scores",
    ):
        assert name in result.history, name
    # TRL's meaning: the reward is the penalised score plus the KL term, step by step.
    history = result.history
    for (_, reward), (_, score), (_, non_score), (_, raw) in zip(
        history["objective/rlhf_reward"],
        history["objective/scores"],
        history["objective/non_score_reward"],
        history["objective/raw_scores"],
        strict=True,
    ):
        assert reward == pytest.approx(score + non_score, abs=1e-4)
        assert raw >= score - 1e-6  # the penalty only lowers it


def test_comparison_prefers_the_ppo_policy_that_the_reward_model_scores_higher(
    micro_model_dir, short_run
):
    held_out = short_run.prompts[::5]  # 48 prompts PPO never trained on
    settings = ComparisonSettings(max_new_tokens=MAX_NEW_TOKENS, temperature=TEMPERATURE, seed=7)
    common = {"reward_model": short_run.reward_dir, "prompts": held_out, "settings": settings}
    trained_first = compare_policies(
        policy_a=short_run.output_dir, policy_b=micro_model_dir, **common
    )
    wins_a, wins_b, ties = (trained_first[k] for k in ("wins_a", "wins_b", "ties"))
    assert trained_first["prompts"] == 48 and wins_a + wins_b + ties == 48
    assert trained_first["win_rate_a"] == pytest.approx((wins_a + 0.5 * ties) / 48)
    assert trained_first["win_rate_a"] >= 0.75, trained_first
    assert trained_first["score_a"] > trained_first["score_b"] + 1.0
    # The same seed gives each policy the same replies in either order: the mirror image.
    start_first = compare_policies(
        policy_a=micro_model_dir, policy_b=short_run.output_dir, **common
    )
    assert (start_first["wins_a"], start_first["wins_b"]) == (wins_b, wins_a)
    assert start_first["win_rate_a"] == pytest.approx(1 - trained_first["win_rate_a"])


# ---- the trainer's parts on a random reward model ----------------------------------------------


@pytest.fixture(scope="module")
def random_reward_dir(micro_model_dir, tmp_path_factory) -> Path:
    """A reward model on the micro backbone with a random (seeded) head."""
    out = tmp_path_factory.mktemp("random-rm")
    tokenizer = load_tokenizer(micro_model_dir)
    torch.manual_seed(0)
    reward = build_reward_model(micro_model_dir, tokenizer)
    reward.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _trainer(micro_model_dir, reward_dir, **config) -> PPOTrainer:
    defaults = {"batch_size": 4, "max_new_tokens": 8, "learning_rate": 1e-3}
    return PPOTrainer(
        config=PPOConfig(**{**defaults, **config}),
        base_model=micro_model_dir,
        reward_model=reward_dir,
    )


def _prompt_ids(trainer: PPOTrainer, count: int) -> list[list[int]]:
    return [encode_prompt(trainer.tokenizer, p, max_length=64) for p in _prompts(count)]


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def test_missing_end_of_turn_penalty_lowers_only_unfinished_replies_scored_at_their_last_token(
    micro_model_dir, random_reward_dir, monkeypatch
):
    trainer = _trainer(
        micro_model_dir,
        random_reward_dir,
        batch_size=16,
        max_new_tokens=16,
        missing_eos_penalty=2.5,
    )
    prompts = _prompt_ids(trainer, 16)
    rollout = trainer.rollout(prompts, step=0)
    ended, unfinished = rollout.has_end, ~rollout.has_end
    assert ended.any() and unfinished.any(), rollout.has_end  # both kinds in the batch
    assert torch.equal(rollout.scores, rollout.raw_scores - 2.5 * unfinished.float())

    replies = rollout.sequence[:, rollout.context_length :]
    lengths = rollout.reply_mask.sum(-1)
    last = lengths - 1
    rows = torch.arange(replies.size(0))
    # A finished reply's last masked token is its end-of-turn token, padded after it; an
    # unfinished one runs to max_new_tokens.
    assert all(int(t) in trainer.end_token_ids for t in replies[rows[ended], last[ended]])
    assert bool((last[unfinished] == replies.size(1) - 1).all())
    for row in rows[ended].tolist():
        assert bool((replies[row, lengths[row] :] == trainer.tokenizer.pad_token_id).all())
    # The reward model's score is the one it gives each row alone, without left or right pads.
    for row in range(replies.size(0)):
        ids = rollout.sequence[row][rollout.mask[row].bool()].unsqueeze(0)
        alone = trainer.scorer(ids, torch.ones_like(ids))
        assert alone.item() == pytest.approx(rollout.raw_scores[row].item(), abs=1e-5), row

    # The penalised score lands on that last token (the end-of-turn token), never on a pad.
    captured = {}

    def spy(kl, scores, mask, *, kl_coef):
        captured["scores"] = scores
        captured["rewards"], captured["non_score"] = token_rewards(
            kl, scores, mask, kl_coef=kl_coef
        )
        return captured["rewards"], captured["non_score"]

    monkeypatch.setattr("sampler.training.ppo.token_rewards", spy)
    trainer.advantages(rollout)
    assert torch.equal(captured["scores"], rollout.scores)
    placed = captured["rewards"] - captured["non_score"]
    expected = torch.zeros_like(placed)
    expected[rows, last] = rollout.scores
    torch.testing.assert_close(placed, expected)

    # missing_eos_penalty=0 turns it off: the same (seeded) rollout keeps the raw scores.
    trainer.config.missing_eos_penalty = 0.0
    again = trainer.rollout(prompts, step=0)
    assert torch.equal(again.has_end, rollout.has_end)
    assert torch.equal(again.scores, again.raw_scores)


def test_a_rollout_past_max_kl_stops_the_run_and_is_not_trained_on(
    micro_model_dir, random_reward_dir, tmp_path
):
    # The first rollout has KL 0 (policy == reference); after one update k3 (never negative)
    # is above a tiny bound, so the second rollout stops the run before its update.
    prompts = [{"messages": p, "split": "train"} for p in _prompts(16)]
    common = {"batch_size": 4, "max_new_tokens": 8, "learning_rate": 1e-3, "kl_estimator": "k3"}
    messages = []
    stopped = train_ppo(
        config=PPOConfig(max_steps=4, max_kl=1e-6, **common),
        prompts=prompts,
        base_model=micro_model_dir,
        reward_model=random_reward_dir,
        output_dir=tmp_path / "stopped",
        callback=lambda event: messages.append(event.message) if event.kind == "message" else None,
    )
    assert stopped.steps == 1 and stopped.metrics["total_steps"] == 4
    assert "max_kl" in stopped.metrics["stopped_early"]
    assert any("stopped early before step 2" in m for m in messages), messages
    first, second = stopped.history["objective/kl"]
    assert first == [1, pytest.approx(0.0, abs=1e-7)] and second[0] == 2 and second[1] > 1e-6
    assert len(stopped.history["loss/policy"]) == 1  # one update, not two
    assert stopped.metrics["objective/kl"] == second[1]  # the KL that stopped it

    one_step = train_ppo(
        config=PPOConfig(max_steps=1, max_kl=0, **common),
        prompts=prompts,
        base_model=micro_model_dir,
        reward_model=random_reward_dir,
        output_dir=tmp_path / "one-step",
    )
    assert one_step.steps == 1 and not one_step.metrics["stopped_early"]
    kept, expected = load_policy(tmp_path / "stopped"), load_policy(tmp_path / "one-step")
    start = load_policy(micro_model_dir).state_dict()
    expected_state = expected.state_dict()
    assert any(not torch.equal(start[n], expected_state[n]) for n in start)  # it did learn
    assert all(torch.equal(kept.state_dict()[n], expected_state[n]) for n in expected_state)


def test_short_ppo_changes_the_policy_and_leaves_the_reference_and_reward_model_untouched(
    micro_model_dir, random_reward_dir
):
    trainer = _trainer(micro_model_dir, random_reward_dir, max_steps=2)
    policy_before, reference_before = _snapshot(trainer.policy), _snapshot(trainer.reference)
    scorer_before = _snapshot(trainer.scorer)
    # A separate object with its own storage, not a view of the policy's weights.
    policy_pointers = {p.data_ptr() for p in trainer.policy.parameters()}
    assert not policy_pointers & {p.data_ptr() for p in trainer.reference.parameters()}
    assert not any(p.requires_grad for p in trainer.reference.parameters())

    state, total, _ = trainer.train(_prompt_ids(trainer, 8), [])

    assert state.step == total == 2 and not state.stopped_early
    policy_after = trainer.policy.state_dict()
    assert any(not torch.equal(policy_before[n], policy_after[n]) for n in policy_before)
    reference_after = trainer.reference.state_dict()
    assert all(torch.equal(reference_before[n], reference_after[n]) for n in reference_before)
    start = load_policy(micro_model_dir).state_dict()
    assert all(torch.equal(start[n], reference_after[n]) for n in start)
    scorer_after = trainer.scorer.state_dict()
    assert all(torch.equal(scorer_before[n], scorer_after[n]) for n in scorer_before)


def test_each_ppo_epoch_takes_exactly_the_minibatches_asked_for(
    micro_model_dir, random_reward_dir, monkeypatch
):
    """4 replies in 3 minibatches: sizes 2, 1, 1, so 3 optimizer steps per epoch (slices of
    ceil(4 / 3) = 2 made 2 steps, and 4 replies in 3 minibatches trained as in 2)."""
    trainer = _trainer(
        micro_model_dir, random_reward_dir, batch_size=4, minibatches=3, ppo_epochs=2
    )
    rollout = trainer.rollout(_prompt_ids(trainer, 4), step=0)
    advantages, returns, _ = trainer.advantages(rollout)
    sizes = []
    forward = trainer.module.forward

    def counting(sequence, mask, context_length):
        sizes.append(sequence.size(0))
        return forward(sequence, mask, context_length)

    monkeypatch.setattr(trainer.module, "forward", counting)
    trainer.update(rollout, advantages, returns, step=0)
    assert sorted(sizes) == [1, 1, 1, 1, 2, 2]


def _run_recording_gae_rewards(trainer: PPOTrainer, monkeypatch) -> tuple[PPOState, list]:
    seen = []

    def spy(rewards, values, mask, **kwargs):
        seen.append((rewards.clone(), mask.clone()))
        return gae(rewards, values, mask, **kwargs)

    monkeypatch.setattr("sampler.training.ppo.gae", spy)
    state, _, _ = trainer.train(_prompt_ids(trainer, 12), [])
    return state, seen


def test_adaptive_kl_moves_the_coefficient_each_step_and_whitened_rewards_have_unit_variance(
    micro_model_dir, random_reward_dir, monkeypatch
):
    # KL far below target_kl: the error clips at -0.2, so each step of 4 replies multiplies
    # the coefficient by 1 - 0.2 * 4 / kl_horizon = 0.92.
    trainer = _trainer(
        micro_model_dir,
        random_reward_dir,
        max_steps=3,
        kl_coef=0.05,
        adaptive_kl=True,
        target_kl=6.0,
        kl_horizon=10,
        whiten_rewards=True,
    )
    state, seen = _run_recording_gae_rewards(trainer, monkeypatch)
    assert state.step == 3
    assert all(kl < 0.8 * 6.0 for _, kl in state.history["objective/kl"])
    coefficients = [value for _, value in state.history["objective/kl_coef"]]
    assert coefficients == pytest.approx([0.05, 0.05 * 0.92, 0.05 * 0.92**2])
    assert trainer.kl.value == pytest.approx(0.05 * 0.92**3)
    assert all(math.isfinite(v) for _, v in state.history["loss/policy"])
    # Whitening (scale only, the mean kept) reached the rewards GAE saw at every step.
    assert len(seen) == 3
    for rewards, mask in seen:
        assert masked_var(rewards, mask).item() == pytest.approx(1.0, abs=1e-3)


def test_fixed_kl_coefficient_stays_and_unwhitened_rewards_keep_their_scale(
    micro_model_dir, random_reward_dir, monkeypatch
):
    trainer = _trainer(micro_model_dir, random_reward_dir, max_steps=3, kl_coef=0.05)
    state, seen = _run_recording_gae_rewards(trainer, monkeypatch)
    assert state.step == 3
    assert [value for _, value in state.history["objective/kl_coef"]] == pytest.approx([0.05] * 3)
    assert trainer.kl.value == 0.05
    # Without whitening the variance is the scores' own, far from 1 (so the check above bites).
    assert all(abs(masked_var(r, m).item() - 1.0) > 0.1 for r, m in seen)


@pytest.mark.parametrize("base", ["micro_model_dir", "dropout_model_dir"])
def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_policy(base, request, tmp_path):
    """Sampling draws from generators seeded by step, and dropout stays off (a policy with
    dropout 0.3 too): the resumed steps sample and update as the run that never stopped."""
    micro_model_dir = request.getfixturevalue(base)
    tokenizer = load_tokenizer(micro_model_dir)
    torch.manual_seed(0)
    reward = build_reward_model(micro_model_dir, tokenizer)
    reward.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    prompts = [{"messages": p, "split": "train"} for p in _prompts(20)]
    config = PPOConfig(
        max_steps=4, batch_size=4, max_new_tokens=8, learning_rate=1e-3, checkpoint_every=2
    )
    common = {"config": config, "prompts": prompts, "base_model": micro_model_dir}
    straight = train_ppo(**common, reward_model=tmp_path / "rm", output_dir=tmp_path / "a")

    class Interrupted(Exception):
        pass

    def interrupt_at_step_3(event):
        if event.kind == "train" and event.step == 3:
            raise Interrupted

    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(Interrupted):
        train_ppo(
            **common,
            reward_model=tmp_path / "rm",
            output_dir=tmp_path / "b",
            checkpoint_dir=checkpoints,
            callback=interrupt_at_step_3,
        )
    assert [path.name for path in checkpoints.iterdir()] == ["step-00000002"]
    resumed = train_ppo(
        **common,
        reward_model=tmp_path / "rm",
        output_dir=tmp_path / "b",
        checkpoint_dir=checkpoints,
        resume=True,
    )
    assert resumed.history["objective/kl"] == straight.history["objective/kl"]
    a, b = load_policy(tmp_path / "a").state_dict(), load_policy(tmp_path / "b").state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_ppo_stopped_at_its_checkpoint_report_removes_no_other_checkpoint(
    micro_model_dir, random_reward_dir, tmp_path
):
    """As the shared loop: a process taken over after a stall, stopped by the report after its
    checkpoint, has not removed the checkpoints of the process that took the run over."""
    train = partial(
        train_ppo,
        config=PPOConfig(max_steps=3, batch_size=4, max_new_tokens=4, checkpoint_every=1),
        prompts=[{"messages": p, "split": "train"} for p in _prompts(8)],
        base_model=micro_model_dir,
        reward_model=random_reward_dir,
        output_dir=tmp_path / "out",
    )
    stopped_at_its_checkpoint_report_keeps_others(train, tmp_path / "checkpoints")


def test_a_batch_smaller_than_the_default_minibatches_is_refused_naming_batch_size():
    from sampler.training.config import ConfigError

    with pytest.raises(ConfigError) as error:
        PPOConfig.from_dict({"batch_size": 1})
    assert error.value.errors == {
        "minibatches": "Batch size * Samples per prompt (1 * 1 = 1 reply a rollout batch) must "
        "be at least the Minibatches (2, the default): each minibatch takes at least one reply; "
        "raise the Batch size or the Samples per prompt, or lower the Minibatches."
    }
    with pytest.raises(ConfigError) as error:
        PPOConfig.from_dict({"minibatches": 0})
    assert error.value.errors == {"minibatches": "Minibatches must be at least 1."}
