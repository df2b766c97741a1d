"""DPO on rankings: our listwise trainer vs TRL's DPOTrainer on the pairs the rankings imply.

Usage: .venv/bin/python bench/bench_dpo.py [--model DIR] [--rankings 300] [--k 5]
       [--rule length|keyword] [--seeds 2] [--threads 1]

Synthetic rankings of K replies (default 5: the source and 4 alternatives, the app's default)
whose order follows a known rule (``length``: the longer reply wins, a total order;
``keyword``: replies with the keyword win, the rest tie), 10 % of rankings reversed. One epoch,
the same model (default: the embedded chat model), learning rate, beta and rankings per step:
(a) ``train_dpo`` listwise (each ranking one batch element: its prompt read once, its K
candidates on top; Plackett-Luce with tied groups), (b) TRL's DPOTrainer on every implied pair
of the same training rankings (prompt/chosen/rejected, conversational), as many pairs per step
as the rankings hold. Both compute the reference on the fly. One process. Prints implied pairs
per second of training (loop time only) and the held-out implicit-reward accuracy (share of
held-out implied pairs that beta * log(pi / pi_ref) orders right), measured by the same code
for both; over seeds: median speed, mean accuracy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _preference import as_pairs, quiet_process, trl_arguments  # noqa: E402 - needs the bench folder on sys.path

from sampler.training.config import DPOConfig  # noqa: E402
from sampler.training.dpo import build_dpo_data, ranking_losses, train_dpo  # noqa: E402
from sampler.training.model import load_policy, load_tokenizer, turn_end_ids  # noqa: E402
from sampler.training.preference import (  # noqa: E402
    PromptCompletionCollator,
    SharedPromptPolicy,
)
from sampler.training.synthetic import synthetic_rankings  # noqa: E402

DEFAULT_MODEL = ROOT / "assets" / "models" / "tandem-chitchat-tiny"
NOISE = 0.1
MAX_LENGTH = 128


@torch.no_grad()
def held_out_accuracy(policy_dir, reference_dir, tokenizer, examples, beta: float) -> float:
    """Share of held-out implied pairs ordered right by beta * log(pi / pi_ref)."""
    policy = SharedPromptPolicy(load_policy(policy_dir)).eval()
    reference = SharedPromptPolicy(load_policy(reference_dir)).eval()
    collate = PromptCompletionCollator(pad_id=tokenizer.pad_token_id)
    config = DPOConfig(beta=beta)
    correct = total = 0.0
    for start in range(0, len(examples), 8):
        batch = collate(examples[start : start + 8])
        ratios = policy(batch) - reference(batch)
        _, stats = ranking_losses(ratios, batch["examples"], config)
        correct += stats["correct"].sum().item()
        total += stats["correct"].numel()
    return correct / max(1.0, total)


def run_ours(model_dir, train_records, config: DPOConfig, out: Path) -> float:
    result = train_dpo(config=config, records=train_records, base_model=model_dir, output_dir=out)
    return result.seconds


def run_trl(model_dir, train_records, config: DPOConfig, pairs_per_step: int, out: Path) -> float:
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    tokenizer = load_tokenizer(model_dir)
    torch.manual_seed(config.seed)
    pairs = as_pairs(train_records)
    steps = max(1, len(pairs) // pairs_per_step)
    arguments = TRLDPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=pairs_per_step,
        warmup_steps=int(config.warmup_ratio * steps),
        beta=config.beta,
        **trl_arguments(config),
    )
    trainer = DPOTrainer(
        model=load_policy(model_dir),
        args=arguments,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
    )
    trainer.remove_callback(PrinterCallback)
    output = trainer.train()
    trainer.model.float().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return output.metrics["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rankings", type=int, default=300, help="Per seed (train + held out).")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--rule", choices=("length", "keyword"), default="length")
    parser.add_argument("--batch-size", type=int, default=4, help="Rankings per step.")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    arguments = parser.parse_args()
    device = quiet_process(arguments.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    tokenizer = load_tokenizer(arguments.model)
    print(f"model {arguments.model}, {device}")
    print(
        f"{arguments.rankings} rankings of K={arguments.k} per seed, rule {arguments.rule!r}, "
        f"{NOISE:.0%} reversed; 1 epoch, {arguments.batch_size} rankings (= their implied "
        f"pairs) per step, lr {arguments.learning_rate}, beta {arguments.beta}; "
        f"{arguments.seeds} seeds: median speed, mean accuracy"
    )
    rates: dict[str, list[float]] = {"ours": [], "trl": []}
    accuracies: dict[str, list[float]] = {"ours": [], "trl": []}
    ceilings, implied = [], 0
    for seed in range(arguments.seeds):
        records = synthetic_rankings(
            arguments.rankings, k=arguments.k, rule=arguments.rule, noise=NOISE, seed=500 + seed
        )
        train_records = [r for r in records if r["split"] == "train"]
        held_out = [r for r in records if r["split"] == "test"]
        ceilings.append(sum(r["rule_agrees"] for r in held_out) / len(held_out))
        test_examples = build_dpo_data(
            tokenizer,
            held_out,
            max_length=MAX_LENGTH,
            test_fraction=0.0,
            seed=0,
            end_ids=turn_end_ids(arguments.model, tokenizer),
        ).test
        pairs_per_ranking = len(as_pairs(train_records[:1]))
        implied = len(as_pairs(train_records))
        config = DPOConfig(
            learning_rate=arguments.learning_rate,
            batch_size=arguments.batch_size,
            beta=arguments.beta,
            max_length=MAX_LENGTH,
            eval_every=0,
            checkpoint_every=0,
            mode="listwise",
            seed=seed,
        )
        seconds = run_ours(arguments.model, train_records, config, work / f"ours-{seed}")
        rates["ours"].append(implied / seconds)
        accuracies["ours"].append(
            held_out_accuracy(
                work / f"ours-{seed}", arguments.model, tokenizer, test_examples, arguments.beta
            )
        )
        seconds = run_trl(
            arguments.model,
            train_records,
            config,
            arguments.batch_size * pairs_per_ranking,
            work / f"trl-{seed}",
        )
        rates["trl"].append(implied / seconds)
        accuracies["trl"].append(
            held_out_accuracy(
                work / f"trl-{seed}", arguments.model, tokenizer, test_examples, arguments.beta
            )
        )
        print(
            f"seed {seed}: ours {rates['ours'][-1]:.1f} pairs/s, acc {accuracies['ours'][-1]:.3f}"
            f"; TRL {rates['trl'][-1]:.1f} pairs/s, acc {accuracies['trl'][-1]:.3f}",
            flush=True,
        )
    ours_rate, trl_rate = (statistics.median(rates[name]) for name in ("ours", "trl"))
    ours_accuracy, trl_accuracy = (statistics.mean(accuracies[n]) for n in ("ours", "trl"))
    print(
        f"\n{'K':>2} {'train pairs':>11} {'ours pairs/s':>12} {'TRL pairs/s':>11} {'ratio':>6} "
        f"{'ours acc':>9} {'TRL acc':>8} {'ceiling':>8}"
    )
    print(
        f"{arguments.k:>2} {implied:>11} {ours_rate:>12.1f} {trl_rate:>11.1f} "
        f"{ours_rate / trl_rate:>5.2f}x {ours_accuracy:>9.3f} {trl_accuracy:>8.3f} "
        f"{statistics.mean(ceilings):>8.3f}"
    )


if __name__ == "__main__":
    main()
