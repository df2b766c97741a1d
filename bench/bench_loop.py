"""One RLHF iteration on CPU, with simulated trainers whose preference is a hidden rule.

Usage: .venv/bin/python bench/bench_loop.py [--model DIR] [--rm-prompts 400] [--k 4]
       [--noise 0.5] [--ppo-steps 60] [--batch-size 32] [--eval-prompts 200] [--threads 1]

1. Prompts: the opening user turns of chitchat conversations (shipped with `chitchat-dataset`),
   split three ways: reward-model prompts, PPO prompts, held-out evaluation prompts.
2. Collect: the policy (default: the embedded tiny chat model) samples K replies per prompt;
   each simulated trainer ranks them by the hidden rule plus Gaussian noise (sd ``--noise``).
   The hidden rule: a reply scores 1 for asking the other person a question ("?") plus 0.5 per
   warm word ("love", "fun", "great", ...; at most 2 counted).
3. ``train_reward`` learns a reward model from those rankings (K-wise loss); its held-out
   pairwise accuracy is printed next to the noisy labels' own accuracy against the rule.
4. ``train_ppo`` optimises the policy against that reward model (KL penalty to the start).
5. On the held-out prompts, before and after PPO: the hidden rule's mean score (the "gold"
   reward the RM only approximates), the question and warm-word rates, the RM score, the
   reply length and end-of-turn rate, and the KL of the new policy to the reference.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sampler.embedded.data import load_conversations  # noqa: E402
from sampler.training.config import RewardConfig  # noqa: E402
from sampler.training.losses import implied_pairs  # noqa: E402
from sampler.training.model import (  # noqa: E402
    RewardScorer,
    build_reward_model,
    load_policy,
    load_tokenizer,
)
from sampler.training.ppo import end_token_ids, freeze, train_ppo  # noqa: E402
from sampler.training.ppo_config import PPOConfig  # noqa: E402
from sampler.training.reward import train_reward  # noqa: E402
from sampler.training.rollout import encode_prompt, sample_and_score  # noqa: E402

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


def warm_words(reply: str) -> int:
    return sum(word in WARM_WORDS for word in re.findall(r"[a-z']+", reply.lower()))


def hidden_score(reply: str) -> float:
    """The rule the simulated trainers follow (and nothing else sees)."""
    return float("?" in reply) + 0.5 * min(2, warm_words(reply))


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


def label_accuracy(records) -> float:
    """How often the noisy labels agree with the rule on held-out pairs (rule ties: half):
    what a reward model that learned the rule exactly would score on them."""
    correct = pairs = 0.0
    for record in records:
        if record["split"] != "test":
            continue
        texts = {c["candidate_id"]: c["text"] for c in record["candidates"]}
        ids = [group[0] for group in record["ordering"]]
        for winner, loser, _ in implied_pairs([[i] for i in range(len(ids))]):
            better, worse = hidden_score(texts[ids[winner]]), hidden_score(texts[ids[loser]])
            correct += 1.0 if better > worse else 0.5 if better == worse else 0.0
            pairs += 1
    return correct / max(1.0, pairs)


def report(name: str, samples) -> dict[str, float]:
    texts = samples.texts
    return {
        "name": name,
        "hidden": sum(map(hidden_score, texts)) / len(texts),
        "question": sum("?" in t for t in texts) / len(texts),
        "warm": sum(warm_words(t) > 0 for t in texts) / len(texts),
        "rm": samples.scores.mean().item(),
        "length": samples.lengths.float().mean().item(),
        "eos": samples.has_end.float().mean().item(),
        "kl": samples.kl.mean().item() if samples.kl is not None else 0.0,
        "examples": texts[:4],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rm-prompts", type=int, default=400)
    parser.add_argument("--ppo-prompts", type=int, default=1000)
    parser.add_argument("--eval-prompts", type=int, default=200)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--rm-epochs", type=float, default=2.0)
    parser.add_argument("--rm-learning-rate", type=float, default=1e-4)
    parser.add_argument("--ppo-steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--kl-coef", type=float, default=0.05)
    parser.add_argument("--max-kl", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    torch.manual_seed(arguments.seed)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    started = time.monotonic()

    tokenizer = load_tokenizer(arguments.model)
    reference = freeze(load_policy(arguments.model))
    total = arguments.rm_prompts + arguments.ppo_prompts + arguments.eval_prompts
    prompts = opening_prompts(total, arguments.seed)
    rm_prompts = prompts[: arguments.rm_prompts]
    ppo_prompts = prompts[arguments.rm_prompts : arguments.rm_prompts + arguments.ppo_prompts]
    eval_prompts = prompts[arguments.rm_prompts + arguments.ppo_prompts :]

    # 2. Collect: K replies per prompt, ranked by simulated trainers.
    clock = time.monotonic()
    collected = sample(reference, tokenizer, rm_prompts, per_prompt=arguments.k, seed=1)
    rankings = simulated_rankings(
        rm_prompts,
        collected.texts,
        k=arguments.k,
        noise=arguments.noise,
        seed=arguments.seed,
        test_every=5,
    )
    ceiling = label_accuracy(rankings)
    print(
        f"collect: {len(rankings)} rankings of K={arguments.k} replies "
        f"({time.monotonic() - clock:.0f} s); labels agree with the rule on "
        f"{ceiling:.3f} of held-out pairs (noise sd {arguments.noise})"
    )

    with tempfile.TemporaryDirectory() as scratch:
        # 3. Reward model.
        clock = time.monotonic()
        reward = train_reward(
            config=RewardConfig(
                learning_rate=arguments.rm_learning_rate,
                epochs=arguments.rm_epochs,
                batch_size=8,
                max_length=PROMPT_TOKENS + MAX_NEW_TOKENS,
                eval_every=0,
                seed=arguments.seed,
            ),
            records=rankings,
            base_model=arguments.model,
            output_dir=Path(scratch) / "rm",
        )
        print(
            f"train_reward: held-out pairwise accuracy {reward.metrics['accuracy/eval']:.3f} "
            f"(labels vs rule: {ceiling:.3f}; chance 0.5), {reward.steps} steps, "
            f"{time.monotonic() - clock:.0f} s"
        )
        scorer = freeze(RewardScorer(build_reward_model(reward.output_dir, tokenizer)))
        before = report(
            "before PPO",
            sample(reference, tokenizer, eval_prompts, scorer=scorer, reference=reference, seed=2),
        )

        # 4. PPO against the reward model.
        clock = time.monotonic()
        config = PPOConfig(
            max_steps=arguments.ppo_steps,
            batch_size=arguments.batch_size,
            learning_rate=arguments.learning_rate,
            kl_coef=arguments.kl_coef,
            max_kl=arguments.max_kl,
            max_new_tokens=MAX_NEW_TOKENS,
            temperature=TEMPERATURE,
            max_length=PROMPT_TOKENS,
            eval_every=0,
            eval_prompts=32,
            seed=arguments.seed,
        )
        result = train_ppo(
            config=config,
            prompts=[{"messages": p, "split": "train"} for p in ppo_prompts],
            base_model=arguments.model,
            reward_model=reward.output_dir,
            output_dir=Path(scratch) / "ppo",
        )
        history = result.history
        print(
            f"train_ppo: {result.steps} steps of {arguments.batch_size} replies, "
            f"{time.monotonic() - clock:.0f} s; last step: reward "
            f"{history['objective/rlhf_reward'][-1][1]:.3f}, score "
            f"{history['objective/scores'][-1][1]:.3f}, KL {history['objective/kl'][-1][1]:.2f}"
            + (f"; {result.metrics['stopped_early']}" if result.metrics["stopped_early"] else "")
        )
        trained = freeze(load_policy(Path(scratch) / "ppo"))
        after = report(
            "after PPO",
            sample(trained, tokenizer, eval_prompts, scorer=scorer, reference=reference, seed=2),
        )

    print(f"\nheld-out prompts: {len(eval_prompts)}, one reply each, temperature {TEMPERATURE}")
    print(
        f"{'':>11} {'hidden':>7} {'asks ?':>7} {'warm':>6} {'RM':>7} {'length':>7} "
        f"{'ends':>5} {'KL':>6}"
    )
    for row in (before, after):
        print(
            f"{row['name']:>11} {row['hidden']:7.3f} {row['question']:7.2f} {row['warm']:6.2f} "
            f"{row['rm']:7.3f} {row['length']:7.1f} {row['eos']:5.2f} {row['kl']:6.2f}"
        )
    for index, prompt in enumerate(eval_prompts[:4]):
        print(f"\nuser: {prompt[-1]['content'][:100]}")
        print(f"  before: {before['examples'][index]}\n  after:  {after['examples'][index]}")
    gain = after["hidden"] - before["hidden"]
    print(
        f"\nhidden-rule score: {before['hidden']:.3f} -> {after['hidden']:.3f} "
        f"({gain:+.3f}, {100 * gain / max(1e-9, before['hidden']):+.0f}%); "
        f"KL to the reference {after['kl']:.2f} nats per reply (bound {arguments.max_kl}); "
        f"total {time.monotonic() - started:.0f} s on {arguments.threads} thread(s)"
    )


if __name__ == "__main__":
    main()
