"""One RLHF iteration on CPU, arm by arm, judged by what the policy was not optimised against.

Usage: .venv/bin/python bench/bench_loop.py [--seeds 0 1 2] [--arms sft best_of_4 ppo dpo]
       [--model DIR] [--rm-prompts 240] [--k 4] [--noise 0.5] [--ppo-steps 30]
       [--eval-prompts 100] [--threads 1]

Per seed:
1. Prompts: opening user turns of chitchat conversations (the `chitchat-dataset` package),
   split into ranking prompts, PPO prompts and held-out evaluation prompts.
2. Collect: the starting policy (default: the embedded chat model, "SFT") samples K replies
   per ranking prompt; a simulated trainer ranks them by a hidden rule plus Gaussian noise (sd
   ``--noise``). The rule: 1 for asking a question ("?"), 0.5 per warm word (at most 2).
3. Two reward models on disjoint halves of the rankings (by conversation): the **proxy** (first
   half), which best-of-4 and PPO optimise, and the **judge** (second half), which nothing
   optimises; listwise DPO trains on the proxy's half too, so every arm saw the same rankings.
4. Arms (``ARMS``; a new arm is a function from the seed's ``LoopContext`` to its replies):
   ``sft`` (the start policy), ``best_of_4`` (4 samples, the proxy's favourite), ``ppo``
   (against the proxy, KL penalty to the start), ``dpo`` (listwise, reference = the start).
5. On the held-out prompts, one reply per prompt and arm: the hidden-rule score (the "gold"
   reward), the judge's win rate against the start policy's replies (ties half), the KL to the
   start policy (nats per reply; best-of-n: the analytic log n - (n-1)/n), distinct-2 and mean
   length, each against the start policy's. A collapse warning is printed when an arm's
   distinct-2 falls below half of the start policy's.
Over seeds: mean and sample standard deviation.

``--active``: instead of the arms, what to rank (a project's ``selection`` option). The start
policy samples K replies for ``--active-prompts`` prompts once (generation dominates the time on
a CPU); every reply is read once by the frozen policy (mean of its last hidden state over the
reply: the features). Per seed, a shuffle of those prompts gives a candidate pool
(``--active-factor`` times the ranking budget ``--active-budget``) and ``--active-test``
held-out prompts, and the seed drives the labeler's noise, the start set and the heads. Both arms
start from the same ``--active-batch`` random rankings and add a batch per round; the ensemble
(``sampler.training.uncertainty``: 5 linear reward heads, bootstrap resamples) is refitted each
round. **random** ranks random pool tasks; **uncertainty** ranks the tasks with the largest
spread of the ensemble's pairwise preferences, with a random exploration share
(``--exploration``). Measured after each round: the ensemble mean's pairwise accuracy on the
held-out replies against the hidden rule (pairs it scores differently). Reported: both curves
(mean and sd over seeds), how many rankings uncertainty needs to reach random's final accuracy,
and the extra generation (replies sampled per ranking obtained).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import random
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sampler.embedded.data import load_conversations  # noqa: E402
from sampler.training.config import DPOConfig, RewardConfig  # noqa: E402
from sampler.training.data import reply_ids  # noqa: E402
from sampler.training.dpo import train_dpo  # noqa: E402
from sampler.training.model import (  # noqa: E402
    RewardScorer,
    build_reward_model,
    load_policy,
    load_tokenizer,
)
from sampler.training.ppo import end_token_ids, freeze, train_ppo  # noqa: E402
from sampler.training.ppo_config import PPOConfig  # noqa: E402
from sampler.training.records import in_half  # noqa: E402
from sampler.training.reward import train_reward  # noqa: E402
from sampler.training.rollout import encode_prompt, sample_and_score  # noqa: E402
from sampler.training.uncertainty import (  # noqa: E402
    RewardHeadEnsemble,
    pairwise_spread,
    select_uncertain,
)

DEFAULT_MODEL = ROOT / "assets" / "models" / "tandem-chitchat-tiny"
WARM_WORDS = frozenset(
    [
        "love",
        "loved",
        "fun",
        "great",
        "awesome",
        "nice",
        "glad",
        "happy",
        "cool",
        "haha",
        "enjoy",
        "enjoyed",
        "amazing",
    ]
)
MAX_NEW_TOKENS = 32
TEMPERATURE = 0.7
PROMPT_TOKENS = 128
BEST_OF = 4
METRICS = ("hidden", "judge_win", "kl", "distinct2", "length")


def warm_words(reply: str) -> int:
    return sum(word in WARM_WORDS for word in re.findall(r"[a-z']+", reply.lower()))


def hidden_score(reply: str) -> float:
    """The rule the simulated trainers follow (and nothing else sees)."""
    return float("?" in reply) + 0.5 * min(2, warm_words(reply))


def distinct_2(texts: list[str]) -> float:
    """Distinct word bigrams over all bigrams of the replies (Li et al. 2016)."""
    bigrams = [
        pair
        for text in texts
        for pair in zip(text.lower().split(), text.lower().split()[1:], strict=False)
    ]
    return len(set(bigrams)) / max(1, len(bigrams))


def opening_prompts(count: int, seed: int) -> list[list[dict]]:
    seen, prompts = set(), []
    for conversation in load_conversations(None):
        first = conversation.messages[0]["content"].strip()
        if first and first.lower() not in seen and len(first) < 300:
            seen.add(first.lower())
            prompts.append([{"role": "user", "content": first}])
    random.Random(seed).shuffle(prompts)
    if len(prompts) < count:
        raise SystemExit(f"only {len(prompts)} distinct opening turns")
    return prompts[:count]


class _NoScore(torch.nn.Module):
    def forward(self, sequence, mask):
        return torch.zeros(sequence.size(0))


def sample(policy, tokenizer, prompts, *, scorer=None, reference=None, per_prompt=1, seed=0):
    encoded = [
        encode_prompt(tokenizer, prompt, max_length=PROMPT_TOKENS)
        for prompt in prompts
        for _ in range(per_prompt)
    ]
    return sample_and_score(
        policy,
        tokenizer,
        encoded,
        scorer=scorer or _NoScore(),
        reference=reference,
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=TEMPERATURE,
        end_token_ids=end_token_ids(policy, tokenizer),
        seed=seed,
        batch_size=64,
    )


def simulated_rankings(prompts, texts, *, k: int, noise: float, seed: int, test_every: int):
    """One ranking per prompt by one simulated trainer: rule + N(0, noise), best first."""
    rng = random.Random(seed)
    records = []
    for index, prompt in enumerate(prompts):
        replies = texts[index * k : (index + 1) * k]
        noisy = [hidden_score(reply) + rng.gauss(0.0, noise) for reply in replies]
        order = sorted(range(k), key=lambda j: -noisy[j])
        records.append(
            {
                "conversation_id": index,
                "split": "test" if index % test_every == 0 else "train",
                "prompt": prompt,
                "candidates": [
                    {"candidate_id": index * k + j, "text": reply}
                    for j, reply in enumerate(replies)
                ],
                "ordering": [[index * k + j] for j in order],
            }
        )
    return records


@dataclass
class ArmReplies:
    """One reply per held-out prompt; ``kl`` per reply to the start policy where measured."""

    texts: list[str]
    lengths: list[float]
    kl: float | None
    note: str = ""


@dataclass
class LoopContext:
    """What one seed's arms share."""

    seed: int
    arguments: argparse.Namespace
    work: Path
    tokenizer: object
    reference: torch.nn.Module
    proxy_dir: Path
    proxy: torch.nn.Module
    rankings: list[dict]
    ppo_prompts: list[list[dict]]
    eval_prompts: list[list[dict]]
    timings: dict[str, float] = field(default_factory=dict)


def replies_of(policy, context: LoopContext) -> ArmReplies:
    samples = sample(
        policy,
        context.tokenizer,
        context.eval_prompts,
        reference=context.reference,
        seed=10_000 + context.seed,
    )
    return ArmReplies(
        texts=samples.texts,
        lengths=samples.lengths.float().tolist(),
        kl=samples.kl.mean().item(),
    )


def arm_sft(context: LoopContext) -> ArmReplies:
    return replies_of(context.reference, context)


def arm_best_of_4(context: LoopContext) -> ArmReplies:
    samples = sample(
        context.reference,
        context.tokenizer,
        context.eval_prompts,
        scorer=context.proxy,
        per_prompt=BEST_OF,
        seed=10_000 + context.seed,
    )
    scores = samples.scores.view(-1, BEST_OF)
    best = scores.argmax(-1) + torch.arange(len(context.eval_prompts)) * BEST_OF
    return ArmReplies(
        texts=[samples.texts[i] for i in best.tolist()],
        lengths=samples.lengths.float()[best].tolist(),
        # The KL of best-of-n to its base policy is at most log n - (n - 1) / n.
        kl=math.log(BEST_OF) - (BEST_OF - 1) / BEST_OF,
        note="analytic bound",
    )


def arm_ppo(context: LoopContext) -> ArmReplies:
    arguments = context.arguments
    result = train_ppo(
        config=PPOConfig(
            max_steps=arguments.ppo_steps,
            batch_size=arguments.batch_size,
            learning_rate=arguments.learning_rate,
            kl_coef=arguments.kl_coef,
            max_kl=arguments.max_kl,
            max_new_tokens=MAX_NEW_TOKENS,
            temperature=TEMPERATURE,
            max_length=PROMPT_TOKENS,
            eval_every=0,
            eval_prompts=8,
            checkpoint_every=0,
            seed=context.seed,
        ),
        prompts=[{"messages": p, "split": "train"} for p in context.ppo_prompts],
        base_model=context.arguments.model,
        reward_model=context.proxy_dir,
        output_dir=context.work / "ppo",
    )
    replies = replies_of(freeze(load_policy(result.output_dir)), context)
    if result.metrics.get("stopped_early"):
        replies.note = "stopped early (max_kl)"
    return replies


def arm_dpo(context: LoopContext) -> ArmReplies:
    arguments = context.arguments
    result = train_dpo(
        config=DPOConfig(
            learning_rate=arguments.dpo_learning_rate,
            epochs=arguments.dpo_epochs,
            batch_size=4,
            beta=arguments.beta,
            mode="listwise",
            max_length=PROMPT_TOKENS + MAX_NEW_TOKENS,
            eval_every=0,
            checkpoint_every=0,
            seed=context.seed,
        ),
        records=context.rankings,
        base_model=context.arguments.model,
        output_dir=context.work / "dpo",
    )
    return replies_of(freeze(load_policy(result.output_dir)), context)


# The arms, in table order. Another arm (e.g. active selection of what to rank) adds itself
# here: a function of the seed's LoopContext returning one reply per held-out prompt.
ARMS: dict[str, Callable[[LoopContext], ArmReplies]] = {
    "sft": arm_sft,
    "best_of_4": arm_best_of_4,
    "ppo": arm_ppo,
    "dpo": arm_dpo,
}


def train_scorer(rankings, *, half: str, arguments, seed: int, out: Path) -> Path:
    result = train_reward(
        config=RewardConfig(
            learning_rate=arguments.rm_learning_rate,
            epochs=arguments.rm_epochs,
            batch_size=8,
            max_length=PROMPT_TOKENS + MAX_NEW_TOKENS,
            eval_every=0,
            checkpoint_every=0,
            normalize_to_demonstrations=False,
            data_half=half,
            seed=seed,
        ),
        records=rankings,
        base_model=arguments.model,
        output_dir=out,
    )
    accuracy = result.metrics.get("accuracy/eval")
    print(f"  reward model ({half} half): held-out accuracy {accuracy:.3f}", flush=True)
    return out


def run_seed(seed: int, arguments, arms: list[str]) -> dict[str, dict[str, float]]:
    """Every asked arm's metrics for one seed (data, splits, models and sampling seeded)."""
    torch.manual_seed(seed)
    clock = time.monotonic()
    tokenizer = load_tokenizer(arguments.model)
    reference = freeze(load_policy(arguments.model))
    total = arguments.rm_prompts + arguments.ppo_prompts + arguments.eval_prompts
    prompts = opening_prompts(total, seed)
    rm_prompts = prompts[: arguments.rm_prompts]
    ppo_prompts = prompts[arguments.rm_prompts : arguments.rm_prompts + arguments.ppo_prompts]
    eval_prompts = prompts[arguments.rm_prompts + arguments.ppo_prompts :]
    collected = sample(reference, tokenizer, rm_prompts, per_prompt=arguments.k, seed=seed + 1)
    rankings = simulated_rankings(
        rm_prompts, collected.texts, k=arguments.k, noise=arguments.noise, seed=seed, test_every=5
    )
    work = Path(tempfile.mkdtemp(prefix=f"bench-loop-{seed}-"))
    train = {"arguments": arguments, "seed": seed}
    proxy_dir = train_scorer(rankings, half="first", out=work / "proxy", **train)
    judge_dir = train_scorer(rankings, half="second", out=work / "judge", **train)

    context = LoopContext(
        seed=seed,
        arguments=arguments,
        work=work,
        tokenizer=tokenizer,
        reference=reference,
        proxy_dir=proxy_dir,
        proxy=freeze(RewardScorer(build_reward_model(proxy_dir, tokenizer))),
        rankings=list(in_half(rankings, "first")),
        ppo_prompts=ppo_prompts,
        eval_prompts=eval_prompts,
    )
    judge = freeze(RewardScorer(build_reward_model(judge_dir, tokenizer)))
    baseline = arm_sft(context) if "sft" not in arms else None
    results: dict[str, dict[str, float]] = {}
    replies_by_arm: dict[str, ArmReplies] = {}
    for name in arms:
        started = time.monotonic()
        replies_by_arm[name] = ARMS[name](context)
        context.timings[name] = time.monotonic() - started
    baseline = replies_by_arm.get("sft", baseline)
    baseline_scores = judge_scores(judge, tokenizer, eval_prompts, baseline.texts)
    for name, replies in replies_by_arm.items():
        scores = judge_scores(judge, tokenizer, eval_prompts, replies.texts)
        if name == "sft":
            # Against a fresh draw of the same policy, not against itself.
            other = sample(reference, tokenizer, eval_prompts, seed=20_000 + seed).texts
            scores_other = judge_scores(judge, tokenizer, eval_prompts, other)
            win = win_rate(scores, scores_other)
        else:
            win = win_rate(scores, baseline_scores)
        results[name] = {
            "hidden": statistics.mean(map(hidden_score, replies.texts)),
            "judge_win": win,
            "kl": replies.kl if replies.kl is not None else float("nan"),
            "distinct2": distinct_2(replies.texts),
            "length": statistics.mean(replies.lengths),
            "note": replies.note,
            "example": replies.texts[0],
        }
    results["_reference"] = {"distinct2": distinct_2(baseline.texts)}
    print(
        f"seed {seed}: {time.monotonic() - clock:.0f} s ("
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in context.timings.items())
        + ")",
        flush=True,
    )
    return results


@torch.no_grad()
def judge_scores(judge, tokenizer, prompts, texts) -> torch.Tensor:
    from sampler.training.data import pad_right, reply_ids

    sequences = [
        reply_ids(tokenizer, prompt, text)[-(PROMPT_TOKENS + MAX_NEW_TOKENS) :]
        for prompt, text in zip(prompts, texts, strict=True)
    ]
    scores = []
    for start in range(0, len(sequences), 64):
        ids, mask = pad_right(sequences[start : start + 64], pad_id=tokenizer.pad_token_id)
        scores.append(judge(ids, mask))
    return torch.cat(scores)


def win_rate(scores: torch.Tensor, against: torch.Tensor) -> float:
    return ((scores > against).float() + 0.5 * (scores == against).float()).mean().item()


def summarise(per_seed: list[dict], arms: list[str]) -> None:
    def cell(values: list[float]) -> str:
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return f"{'—':>15}"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):>8.3f} ± {spread:<5.3f}"

    print(f"\n{len(per_seed)} seed(s); mean ± sample sd over seeds; held-out prompts")
    print(f"{'arm':>10} " + " ".join(f"{name:>15}" for name in METRICS))
    reference_distinct = statistics.mean(seed["_reference"]["distinct2"] for seed in per_seed)
    for arm in arms:
        print(
            f"{arm:>10} "
            + " ".join(cell([seed[arm][metric] for seed in per_seed]) for metric in METRICS)
        )
    print(
        "hidden: the rule's mean score; judge_win: win rate against the start policy by the "
        "reward model trained on the other half of the rankings; kl: nats per reply to the "
        "start policy (best_of_4: the analytic bound); distinct2 and length (tokens) against "
        f"the start policy's distinct2 {reference_distinct:.3f}"
    )
    for arm in arms:
        mean_distinct = statistics.mean(seed[arm]["distinct2"] for seed in per_seed)
        if mean_distinct < 0.5 * reference_distinct:
            print(
                f"COLLAPSE WARNING: {arm}'s distinct-2 {mean_distinct:.3f} is below half the "
                f"start policy's {reference_distinct:.3f}"
            )
        notes = {seed[arm]["note"] for seed in per_seed if seed[arm]["note"]}
        if notes:
            print(f"{arm}: {'; '.join(sorted(notes))}")
    print("\nexamples (seed of the first run, first held-out prompt):")
    for arm in arms:
        print(f"  {arm:>10}: {per_seed[0][arm]['example'][:100]}")


# ---- active selection -------------------------------------------------------------------------


@torch.no_grad()
def reply_features(policy, tokenizer, prompts, texts, *, k: int, batch_size: int = 64):
    """(N, hidden) features: the frozen policy's last hidden state averaged over each reply's
    tokens (prompt + reply read once, as a small reward head on a frozen backbone would)."""
    rows = []
    for index, text in enumerate(texts):
        prompt = prompts[index // k]
        full = reply_ids(tokenizer, prompt, text)[-PROMPT_TOKENS - MAX_NEW_TOKENS :]
        reply = len(tokenizer(text, add_special_tokens=False)["input_ids"]) or 1
        rows.append((full, min(reply + 1, len(full))))
    features = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        reply_mask = torch.zeros((len(chunk), width))
        for row, (sequence, reply) in enumerate(chunk):
            ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = 1
            reply_mask[row, len(sequence) - reply : len(sequence)] = 1
        hidden = policy(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        last = hidden.hidden_states[-1]
        pooled = (last * reply_mask.unsqueeze(-1)).sum(1) / reply_mask.sum(1, keepdim=True)
        features.append(pooled)
    features = torch.cat(features)
    # Standardised on all replies: the heads' steps then mean the same for every feature.
    return (features - features.mean(0)) / features.std(0).clamp_min(1e-6)


def noisy_ordering(texts: list[str], rows: list[int], *, noise: float, rng: random.Random):
    """A simulated trainer's ranking of one task: rows (feature indices), best first."""
    noisy = {row: hidden_score(texts[row]) + rng.gauss(0.0, noise) for row in rows}
    return [[row] for row in sorted(rows, key=lambda row: -noisy[row])]


def held_out_accuracy(scores: torch.Tensor, texts: list[str], tasks: list[list[int]]) -> float:
    """Pairwise accuracy of ``scores`` (N,) against the hidden rule on the held-out tasks."""
    right = total = 0
    for rows in tasks:
        for first, second in itertools.combinations(rows, 2):
            truth = hidden_score(texts[first]) - hidden_score(texts[second])
            if truth == 0:
                continue
            total += 1
            right += (scores[first] - scores[second]).item() * truth > 0
    return right / max(1, total)


@dataclass
class ActiveData:
    texts: list[str]
    features: torch.Tensor
    tasks: list[list[int]]


def active_data(arguments) -> ActiveData:
    """K replies per prompt from the start policy, and their features (sampled once)."""
    torch.manual_seed(0)
    tokenizer = load_tokenizer(arguments.model)
    policy = freeze(load_policy(arguments.model))
    k = arguments.k
    prompts = opening_prompts(arguments.active_prompts, 0)
    texts = sample(policy, tokenizer, prompts, per_prompt=k, seed=1).texts
    features = reply_features(policy, tokenizer, prompts, texts, k=k)
    tasks = [list(range(index * k, (index + 1) * k)) for index in range(len(prompts))]
    return ActiveData(texts=texts, features=features, tasks=tasks)


def run_active(seed: int, arguments, data: ActiveData) -> dict[str, list[float]]:
    """Accuracy after each round for the random and the uncertainty arm (same seed data)."""
    torch.manual_seed(seed)
    budget, batch = arguments.active_budget, arguments.active_batch
    pool_size = budget * arguments.active_factor
    if pool_size + arguments.active_test > len(data.tasks):
        raise SystemExit("--active-prompts must cover the pool and the held-out prompts")
    texts, features = data.texts, data.features
    shuffled = random.Random(seed).sample(data.tasks, pool_size + arguments.active_test)
    pool, held_out = shuffled[:pool_size], shuffled[pool_size:]
    rng = random.Random(seed)
    start = rng.sample(range(pool_size), batch)
    curves: dict[str, list[float]] = {}
    for arm in ("random", "uncertainty"):
        arm_rng = random.Random(seed * 1000 + 7)
        labeler = random.Random(seed * 1000 + 11)
        ranked = list(start)
        orderings = {
            t: noisy_ordering(texts, pool[t], noise=arguments.noise, rng=labeler) for t in ranked
        }
        curve = []
        while True:
            ensemble = RewardHeadEnsemble(members=arguments.active_members).fit(
                features, [orderings[t] for t in ranked], seed=seed + len(ranked)
            )
            scores = ensemble.scores(features)
            curve.append(held_out_accuracy(scores.mean(0), texts, held_out))
            if len(ranked) >= budget:
                break
            left = [t for t in range(pool_size) if t not in orderings]
            if arm == "random":
                chosen = arm_rng.sample(left, batch)
            else:
                spreads = [pairwise_spread(scores[:, pool[t]].tolist()) for t in left]
                picked = select_uncertain(
                    spreads, batch, exploration_share=arguments.exploration, rng=arm_rng
                )
                chosen = [left[index] for index in picked]
            for t in chosen:
                orderings[t] = noisy_ordering(texts, pool[t], noise=arguments.noise, rng=labeler)
            ranked += chosen
        curves[arm] = curve
    return curves


def rankings_to_reach(curve: list[float], target: float, batch: int) -> int | None:
    for round_index, accuracy in enumerate(curve):
        if accuracy >= target:
            return batch * (round_index + 1)
    return None


def summarise_active(per_seed: list[dict[str, list[float]]], arguments) -> None:
    batch, budget = arguments.active_batch, arguments.active_budget
    counts = [batch * (index + 1) for index in range(len(per_seed[0]["random"]))]
    print("\nheld-out pairwise accuracy (vs the hidden rule), mean ± sd over seeds")
    print(f"{'rankings':>9} {'random':>16} {'uncertainty':>16}")
    for index, count in enumerate(counts):
        cells = []
        for arm in ("random", "uncertainty"):
            values = [seed[arm][index] for seed in per_seed]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        print(f"{count:>9} {cells[0]:>16} {cells[1]:>16}")
    mean_random = [statistics.mean(s["random"][i] for s in per_seed) for i in range(len(counts))]
    mean_uncertain = [
        statistics.mean(s["uncertainty"][i] for s in per_seed) for i in range(len(counts))
    ]
    needed = rankings_to_reach(mean_uncertain, mean_random[-1], batch)
    per_seed_needed = [
        rankings_to_reach(s["uncertainty"], s["random"][-1], batch) for s in per_seed
    ]
    shown = [f"{n / budget:.0%}" if n else "not reached" for n in per_seed_needed]
    print(
        f"\nrandom's final accuracy {mean_random[-1]:.3f} at {budget} rankings; "
        "uncertainty reaches "
        + (f"it at {needed} ({needed / budget:.0%} of the rankings)" if needed else "it not at all")
        + f" on the mean curve; per seed: {', '.join(shown)} (target <= 70%)"
    )
    factor = arguments.active_factor
    print(
        f"generation: random samples {arguments.k} replies per ranking; uncertainty "
        f"{arguments.k * factor} ({factor}x: a pool {factor} times the budget is sampled and "
        "scored, and only the chosen tasks are ranked)"
    )


def parser() -> argparse.ArgumentParser:
    """The harness's options; other benches that reuse it take the same ``--seeds``."""
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    options.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    options.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    options.add_argument("--rm-prompts", type=int, default=240)
    options.add_argument("--ppo-prompts", type=int, default=600)
    options.add_argument("--eval-prompts", type=int, default=100)
    options.add_argument("--k", type=int, default=4)
    options.add_argument("--noise", type=float, default=0.5)
    options.add_argument("--rm-epochs", type=float, default=2.0)
    options.add_argument("--rm-learning-rate", type=float, default=1e-4)
    options.add_argument("--ppo-steps", type=int, default=30)
    options.add_argument("--batch-size", type=int, default=16)
    options.add_argument("--learning-rate", type=float, default=3e-5)
    options.add_argument("--kl-coef", type=float, default=0.05)
    options.add_argument("--max-kl", type=float, default=10.0)
    options.add_argument("--dpo-learning-rate", type=float, default=5e-5)
    options.add_argument("--dpo-epochs", type=float, default=2.0)
    options.add_argument("--beta", type=float, default=0.1)
    options.add_argument("--threads", type=int, default=1)
    options.add_argument("--active", action="store_true", help="Uncertainty vs random selection.")
    options.add_argument("--active-prompts", type=int, default=600)
    options.add_argument("--active-budget", type=int, default=120)
    options.add_argument("--active-batch", type=int, default=10)
    options.add_argument("--active-factor", type=int, default=3)
    options.add_argument("--active-test", type=int, default=100)
    options.add_argument("--active-members", type=int, default=5)
    options.add_argument("--exploration", type=float, default=0.25)
    return options


def main(argv=None) -> None:
    arguments = parser().parse_args(argv)
    torch.set_num_threads(arguments.threads)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    started = time.monotonic()
    if arguments.active:
        data = active_data(arguments)
        print(f"sampled and read {len(data.texts)} replies in {time.monotonic() - started:.0f} s")
        summarise_active([run_active(seed, arguments, data) for seed in arguments.seeds], arguments)
        print(f"\ntotal {time.monotonic() - started:.0f} s on {arguments.threads} thread(s)")
        return
    per_seed = [run_seed(seed, arguments, arguments.arms) for seed in arguments.seeds]
    summarise(per_seed, arguments.arms)
    print(f"\ntotal {time.monotonic() - started:.0f} s on {arguments.threads} thread(s)")


if __name__ == "__main__":
    main()
