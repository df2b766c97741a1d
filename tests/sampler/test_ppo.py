"""PPO: the tensor helpers against hand-computed values, and a short run on the micro model."""

import math
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from sampler.training.config import RewardConfig
from sampler.training.model import RewardScorer, build_reward_model, load_policy, load_tokenizer
from sampler.training.ppo import (
    KLController,
    build_value_head,
    clipped_policy_loss,
    clipped_value_loss,
    end_token_ids,
    gae,
    kl_per_token,
    masked_mean,
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


def test_config_rejects_bad_settings():
    from sampler.training.config import ConfigError

    with pytest.raises(ConfigError) as error:
        PPOConfig.from_dict({"kl_estimator": "k2", "minibatches": 99, "batch_size": 4})
    assert set(error.value.errors) == {"kl_estimator", "minibatches"}


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


@pytest.fixture(autouse=True)
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
            learning_rate=3e-3, epochs=8, batch_size=8, max_length=96, eval_every=0
        ),
        records=records,
        base_model=micro_model_dir,
        output_dir=out,
    )
    assert result.metrics["accuracy/eval"] > 0.85
    return out


def test_short_ppo_raises_the_reward_of_fresh_samples_with_finite_kl_and_replies_still_end(
    micro_model_dir, tmp_path
):
    tokenizer = load_tokenizer(micro_model_dir)
    keyword_id = tokenizer(" the", add_special_tokens=False)["input_ids"][0]
    prompts = _prompts(240)
    reward_dir = _trivial_reward_model(micro_model_dir, tmp_path / "rm", prompts, keyword_id)
    scorer = RewardScorer(build_reward_model(reward_dir, tokenizer)).eval()
    reference = load_policy(micro_model_dir).eval()
    held_out = [encode_prompt(tokenizer, p, max_length=64) for p in prompts[::5]]

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
    after = fresh(tmp_path / "ppo")

    assert result.steps == 12 and not result.metrics["stopped_early"]
    assert after.scores.mean() > before.scores.mean() + 1.0, (
        before.summary("x"),
        after.summary("x"),
    )
    kl = after.kl.mean().item()
    assert math.isfinite(kl) and 0 < kl < PPOConfig.max_kl
    assert all(math.isfinite(v) for _, v in result.history["objective/kl"])
    # Still ends its turn (the missing end-of-turn penalty at work).
    assert after.has_end.float().mean() >= before.has_end.float().mean() - 0.1
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


def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_policy(
    micro_model_dir, tmp_path
):
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
