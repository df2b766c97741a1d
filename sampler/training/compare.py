"""Head-to-head of two policies: one reply each to the same prompts, judged by reward models.

The win rate of A is the share of prompts where A's reply scores higher (ties count half).
Both policies sample with the same settings and seed; each reward model reads each reply where
it stopped: at its end-of-turn token, as in training, or at its last token when the length limit
cut it (no end-of-turn token is made up for it). Several reward models judge as an ensemble:
each one's scores are standardised over all the replies it read, then averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sampler.training.model import (
    RewardScorer,
    build_reward_model,
    load_policy,
    load_tokenizer,
    turn_end_ids,
)
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
        replies = [
            Reply(text=text, token_count=0, finished=bool(ended))
            for side in (a, b)
            for text, ended in zip(side.texts, side.has_end.tolist(), strict=True)
        ]
        a.scores, b.scores = _ensemble_scores(judges, prompts, replies, device)
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
    is re-tokenised with the judge's tokenizer and scored where it stopped, as in sampling (at
    its end-of-turn token; a reply cut by the length limit at its last token, with no end it
    never wrote); several judges are an ensemble of standardised scores."""
    from sampler.training.reward import score_sequences

    if not prompts:
        raise ValueError("There are no prompts to compare the policies on.")
    judges = reward_model if isinstance(reward_model, list) else [reward_model]
    texts_a, texts_b = [r.text for r in replies_a], [r.text for r in replies_b]
    replies = [*replies_a, *replies_b]
    if len(judges) > 1:
        scores_a, scores_b = _ensemble_scores(judges, prompts, replies, device)
    else:
        tokenizer = load_tokenizer(judges[0])
        scorer = freeze(RewardScorer(build_reward_model(judges[0], tokenizer))).to(device)
        scores = score_sequences(
            scorer,
            _judged_sequences(tokenizer, turn_end_ids(judges[0], tokenizer), prompts, replies),
            pad_id=tokenizer.pad_token_id,
            batch_size=batch_size,
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
def _judged_sequences(
    tokenizer, end_ids: list[int], prompts: list[list[dict]], replies: list[Reply]
) -> list:
    """Prompt + reply ids as a judge scores them: side A's replies then side B's (each side in
    prompt order), cut after the judge's end-of-turn token as its training cut them
    (``turn_end_ids``); a reply that did not end its turn has no end-of-turn token appended."""
    from sampler.training.data import reply_ids

    ends = set(end_ids)
    sequences = []
    for index, reply in enumerate(replies):
        ids = reply_ids(tokenizer, prompts[index % len(prompts)], reply.text, end_ids=end_ids)
        if not reply.finished and ids and ids[-1] in ends:
            ids = ids[:-1]
        sequences.append(ids)
    return sequences


def _ensemble_scores(judges, prompts, replies: list[Reply], device) -> tuple[torch.Tensor, ...]:
    """Each judge's scores of both sides (``replies``: A's then B's), standardised over the 2N
    replies, averaged."""
    from sampler.training.reward import score_sequences

    total = torch.zeros(2 * len(prompts))
    for path in judges:
        tokenizer = load_tokenizer(path)
        scorer = freeze(RewardScorer(build_reward_model(path, tokenizer))).to(device)
        sequences = _judged_sequences(tokenizer, turn_end_ids(path, tokenizer), prompts, replies)
        scores = score_sequences(scorer, sequences, pad_id=tokenizer.pad_token_id).cpu()
        total += (scores - scores.mean()) / scores.std().clamp(min=1e-6)
    total /= len(judges)
    return total[: len(prompts)], total[len(prompts) :]
