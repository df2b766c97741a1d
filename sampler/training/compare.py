"""Head-to-head of two policies: one reply each to the same prompts, judged by reward models.

The win rate of A is the share of prompts where A's reply scores higher (ties count half).
Both policies sample with the same settings and seed; each reward model reads each reply at its
end-of-turn token, as in training. Several reward models judge as an ensemble: each one's scores
are standardised over all the replies it read, then averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sampler.training.model import RewardScorer, build_reward_model, load_policy, load_tokenizer
from sampler.training.ppo import end_token_ids, freeze
from sampler.training.rollout import (
    ScoredSamples,
    check_same_tokenizer,
    encode_prompt,
    sample_and_score,
)

EXAMPLES = 3


@dataclass
class ComparisonSettings:
    max_new_tokens: int = 48
    # PPO's sampling temperature by default: the policies are judged as they were trained.
    temperature: float = 0.7
    seed: int = 0
    max_prompt_tokens: int = 192
    batch_size: int = 32


@torch.no_grad()
def compare_policies(
    *,
    policy_a: str | Path,
    policy_b: str | Path,
    reward_model: str | Path | list[str | Path],
    prompts: list[list[dict]],
    settings: ComparisonSettings | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """Win rate of ``policy_a`` over ``policy_b`` on ``prompts`` by the reward model's scores
    (or an ensemble's), with mean scores, lengths and end-of-turn rates of each, a few examples
    and every (prompt, reply A, reply B) as ``items``."""
    settings = settings or ComparisonSettings()
    if not prompts:
        raise ValueError("There are no prompts to compare the policies on.")
    judges = reward_model if isinstance(reward_model, list) else [reward_model]
    reward_model = judges[0]
    reward_tokenizer = load_tokenizer(reward_model)
    scorer = freeze(RewardScorer(build_reward_model(reward_model, reward_tokenizer))).to(device)
    sides = {}
    for side, path in (("a", policy_a), ("b", policy_b)):
        tokenizer = load_tokenizer(path)
        check_same_tokenizer(tokenizer, reward_tokenizer)
        policy = freeze(load_policy(path)).to(device)
        encoded = [
            encode_prompt(tokenizer, messages, max_length=settings.max_prompt_tokens)
            for messages in prompts
        ]
        sides[side] = sample_and_score(
            policy,
            tokenizer,
            encoded,
            scorer=scorer,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            end_token_ids=end_token_ids(policy, tokenizer),
            seed=settings.seed,
            batch_size=settings.batch_size,
        )
        del policy
    a, b = sides["a"], sides["b"]
    if len(judges) > 1:
        a.scores, b.scores = _ensemble_scores(judges, prompts, a.texts, b.texts, device)
    return _verdict(prompts, judges=len(judges), a=a, b=b)


@dataclass
class Reply:
    """A sampled reply as any generation backend returns it."""

    text: str
    token_count: int
    finished: bool


@torch.no_grad()
def judge_replies(
    *,
    reward_model: str | Path | list[str | Path],
    prompts: list[list[dict]],
    replies_a: list[Reply],
    replies_b: list[Reply],
    device: str | torch.device = "cpu",
    batch_size: int = 32,
) -> dict:
    """``compare_policies``'s verdict on replies sampled elsewhere (by any backend): each reply
    is re-tokenised with the judge's tokenizer and scored at its end-of-turn token, as in
    training; several judges are an ensemble of standardised scores."""
    from sampler.training.data import reply_ids
    from sampler.training.reward import score_sequences

    if not prompts:
        raise ValueError("There are no prompts to compare the policies on.")
    judges = reward_model if isinstance(reward_model, list) else [reward_model]
    texts_a, texts_b = [r.text for r in replies_a], [r.text for r in replies_b]
    if len(judges) > 1:
        scores_a, scores_b = _ensemble_scores(judges, prompts, texts_a, texts_b, device)
    else:
        tokenizer = load_tokenizer(judges[0])
        scorer = freeze(RewardScorer(build_reward_model(judges[0], tokenizer))).to(device)
        sequences = [
            reply_ids(tokenizer, prompt, text)
            for texts in (texts_a, texts_b)
            for prompt, text in zip(prompts, texts, strict=True)
        ]
        scores = score_sequences(
            scorer, sequences, pad_id=tokenizer.pad_token_id, batch_size=batch_size
        ).cpu()
        scores_a, scores_b = scores[: len(prompts)], scores[len(prompts) :]
    a, b = (
        ScoredSamples(
            texts=texts,
            scores=side_scores,
            lengths=torch.tensor([float(r.token_count) for r in replies], dtype=torch.float),
            has_end=torch.tensor([float(r.finished) for r in replies], dtype=torch.float),
        )
        for texts, side_scores, replies in (
            (texts_a, scores_a, replies_a),
            (texts_b, scores_b, replies_b),
        )
    )
    return _verdict(prompts, judges=len(judges), a=a, b=b)


def _verdict(prompts: list[list[dict]], *, judges: int, a: ScoredSamples, b: ScoredSamples) -> dict:
    """Wins, ties and the win rate of side ``a``, each side's means, a few examples and every
    (prompt, reply A, reply B) as ``items``."""
    wins_a = int((a.scores > b.scores).sum())
    wins_b = int((a.scores < b.scores).sum())
    ties = len(prompts) - wins_a - wins_b
    return {
        "prompts": len(prompts),
        "wins_a": wins_a,
        "wins_b": wins_b,
        "ties": ties,
        "win_rate_a": (wins_a + 0.5 * ties) / len(prompts),
        "score_a": a.scores.mean().item(),
        "score_b": b.scores.mean().item(),
        "length_a": a.lengths.float().mean().item(),
        "length_b": b.lengths.float().mean().item(),
        "eos_rate_a": a.has_end.float().mean().item(),
        "eos_rate_b": b.has_end.float().mean().item(),
        "examples": [
            {
                "prompt": prompts[index][-1]["content"],
                "a": a.texts[index],
                "b": b.texts[index],
                "score_a": a.scores[index].item(),
                "score_b": b.scores[index].item(),
            }
            for index in range(min(EXAMPLES, len(prompts)))
        ],
        "judges": judges,
        "items": [
            {"prompt": prompts[index], "a": a.texts[index], "b": b.texts[index]}
            for index in range(len(prompts))
        ],
    }


@torch.no_grad()
def _ensemble_scores(judges, prompts, texts_a, texts_b, device) -> tuple[torch.Tensor, ...]:
    """Each judge's scores of both sides, standardised over the 2N replies, averaged."""
    from sampler.training.data import reply_ids
    from sampler.training.reward import score_sequences

    total = torch.zeros(2 * len(prompts))
    for path in judges:
        tokenizer = load_tokenizer(path)
        scorer = freeze(RewardScorer(build_reward_model(path, tokenizer))).to(device)
        sequences = [
            reply_ids(tokenizer, prompt, text)
            for texts in (texts_a, texts_b)
            for prompt, text in zip(prompts, texts, strict=True)
        ]
        scores = score_sequences(scorer, sequences, pad_id=tokenizer.pad_token_id).cpu()
        total += (scores - scores.mean()) / scores.std().clamp(min=1e-6)
    total /= len(judges)
    return total[: len(prompts)], total[len(prompts) :]
