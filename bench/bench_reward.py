"""Reward-model training: our K-wise trainer vs TRL's RewardTrainer on the same rankings as pairs.

Usage: .venv/bin/python bench/bench_reward.py [--model DIR | --shape micro|tiny] [--rankings 400]
       [--k 4 8] [--threads 1] [--seeds 3]

For each K: synthetic rankings (rule "the longer reply wins", 10 % of rankings reversed, so the
held-out ceiling is about 90 %) are trained for one epoch (a) by ``train_reward`` (each ranking
one batch element, K forward passes for its C(K,2) comparisons) and (b) by TRL's RewardTrainer
on the same training rankings expanded into all their pairs (2 forward passes per comparison).
Both get the same model, learning rate, schedule shape and comparisons per optimizer step.
Prints training comparisons per second of each (loop time only: no loading or tokenising),
the ratio, and the held-out pairwise accuracy of each, measured by the same code; over several
seeds (data, split, initialisation), the median speed and the mean accuracy.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _preference import as_pairs, quiet_process, trl_arguments  # noqa: E402 - needs the bench folder on sys.path

from sampler.embedded.build import new_model  # noqa: E402
from sampler.embedded.config import ModelShape  # noqa: E402
from sampler.training.config import RewardConfig  # noqa: E402
from sampler.training.data import build_ranking_data, pad_right  # noqa: E402
from sampler.training.losses import pairwise_correct  # noqa: E402
from sampler.training.model import RewardScorer, build_reward_model, load_tokenizer  # noqa: E402
from sampler.training.reward import train_reward  # noqa: E402
from sampler.training.synthetic import synthetic_rankings  # noqa: E402

NOISE = 0.1
MAX_LENGTH = 128


def tiny_model(micro_dir: Path, out: Path) -> Path:
    """The shipped default's shape (``ModelShape``: 4 layers x 256) with the micro tokenizer,
    random weights: compute per token like the real tiny model, built in a second."""
    tokenizer = load_tokenizer(micro_dir)
    new_model(ModelShape(), tokenizer, seed=0).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@torch.no_grad()
def held_out_accuracy(model, tokenizer, test_examples) -> float:
    """Pairwise accuracy over all held-out implied pairs, same scorer for both trainers."""
    scorer = RewardScorer(model).eval()
    correct = total = 0.0
    for example in test_examples:
        ids, mask = pad_right(example.candidates, pad_id=tokenizer.pad_token_id)
        scores = scorer(ids.to(model.device), mask.to(model.device)).cpu()
        winners = torch.tensor([w for w, _, _ in example.pairs])
        losers = torch.tensor([loser for _, loser, _ in example.pairs])
        correct += pairwise_correct(scores, winners, losers).sum().item()
        total += len(example.pairs)
    return correct / total


def run_ours(model_dir, train_records, config: RewardConfig, out: Path):
    from transformers import AutoModelForSequenceClassification

    result = train_reward(
        config=config, records=train_records, base_model=model_dir, output_dir=out
    )
    model = AutoModelForSequenceClassification.from_pretrained(out)
    return result.seconds, model


def run_trl(model_dir, train_records, config: RewardConfig, k: int, out: Path):
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    tokenizer = load_tokenizer(model_dir)
    torch.manual_seed(config.seed)
    model = build_reward_model(model_dir, tokenizer)
    pairs_per_ranking = math.comb(k, 2)
    arguments = TRLRewardConfig(
        output_dir=str(out),
        # The same comparisons per optimizer step as ours: B rankings = B * C(K,2) pairs.
        per_device_train_batch_size=config.batch_size * pairs_per_ranking,
        warmup_steps=int(config.warmup_ratio * math.ceil(len(train_records) / config.batch_size)),
        **trl_arguments(config),
    )
    trainer = RewardTrainer(
        model=model,
        args=arguments,
        train_dataset=Dataset.from_list(as_pairs(train_records)),
        processing_class=tokenizer,
    )
    trainer.remove_callback(PrinterCallback)  # its end-of-training dict would break the table
    output = trainer.train()
    return output.metrics["train_runtime"], trainer.model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="A policy directory (default: built here).")
    parser.add_argument("--shape", choices=("micro", "tiny"), default="micro")
    parser.add_argument("--rankings", type=int, default=400, help="Per K (train + held out).")
    parser.add_argument("--k", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--batch-size", type=int, default=4, help="Rankings per step.")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--seeds", type=int, default=3, help="Runs per K: median speed, mean accuracy."
    )
    arguments = parser.parse_args()
    device = quiet_process(arguments.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-reward-"))
    model_dir = arguments.model
    if not model_dir:
        from sampler.embedded.build import build_micro_model

        model_dir = build_micro_model(work / "micro", seed=0)
        if arguments.shape == "tiny":
            model_dir = tiny_model(model_dir, work / "tiny")
    tokenizer = load_tokenizer(model_dir)
    print(f"model {model_dir} ({arguments.shape if not arguments.model else 'given'}), {device}")
    print(
        f"{arguments.rankings} rankings per K, rule 'longer reply wins', {NOISE:.0%} reversed; "
        f"1 epoch, {arguments.batch_size} rankings (= their pairs) per step, "
        f"lr {arguments.learning_rate}; {arguments.seeds} seeds: median speed, mean accuracy"
    )
    header = (
        f"{'K':>2} {'train pairs':>11} {'ours cmp/s':>11} {'TRL cmp/s':>10} {'ratio':>6} "
        f"{'ours acc':>9} {'TRL acc':>8} {'ceiling':>8}"
    )
    print(header)
    for k in arguments.k:
        rates: dict[str, list[float]] = {"ours": [], "trl": []}
        accuracies: dict[str, list[float]] = {"ours": [], "trl": []}
        ceilings, comparisons = [], 0
        for seed in range(arguments.seeds):
            # Each seed: new rankings, split, head initialisation and batch order.
            records = synthetic_rankings(
                arguments.rankings, k=k, rule="length", noise=NOISE, seed=1000 * k + seed
            )
            train_records = [r for r in records if r["split"] == "train"]
            held_out = [r for r in records if r["split"] == "test"]
            ceilings.append(sum(r["rule_agrees"] for r in held_out) / len(held_out))
            test_examples = build_ranking_data(
                tokenizer, held_out, max_length=MAX_LENGTH, test_fraction=0.0, seed=0
            ).test
            comparisons = sum(math.comb(k, 2) for _ in train_records)
            config = RewardConfig(
                learning_rate=arguments.learning_rate,
                batch_size=arguments.batch_size,
                max_length=MAX_LENGTH,
                eval_every=0,
                checkpoint_every=0,
                normalize_to_demonstrations=False,
                seed=seed,
            )
            seconds, model = run_ours(model_dir, train_records, config, work / f"ours-{k}-{seed}")
            rates["ours"].append(comparisons / seconds)
            accuracies["ours"].append(held_out_accuracy(model, tokenizer, test_examples))
            seconds, model = run_trl(model_dir, train_records, config, k, work / f"trl-{k}-{seed}")
            rates["trl"].append(comparisons / seconds)
            accuracies["trl"].append(
                held_out_accuracy(model.cpu().float(), tokenizer, test_examples)
            )
        ours_rate, trl_rate = (statistics.median(rates[name]) for name in ("ours", "trl"))
        ours_accuracy, trl_accuracy = (statistics.mean(accuracies[n]) for n in ("ours", "trl"))
        print(
            f"{k:>2} {comparisons:>11} {ours_rate:>11.0f} {trl_rate:>10.0f} "
            f"{ours_rate / trl_rate:>5.2f}x {ours_accuracy:>9.3f} {trl_accuracy:>8.3f} "
            f"{statistics.mean(ceilings):>8.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
