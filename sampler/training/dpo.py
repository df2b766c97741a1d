"""``train_dpo``: rankings -> a policy, by Direct Preference Optimization, no reward model.

Each ranking is one batch element: its prompt is read once and its K candidates on top of it
(``preference.shared_prompt_logprobs``), by the policy and by the frozen reference (the version
the run starts from). With ``r_i = log pi(y_i|x) - log pi_ref(y_i|x)`` per candidate:

- **listwise** (default): the Plackett-Luce negative log-likelihood of the ranking under the
  scores ``beta * r_i``, tied groups unordered (``losses.listwise_dpo_loss``);
- **pairwise**: DPO's pair loss (sigmoid, label-smoothed, or IPO) averaged over every pair the
  ranking implies; ties give no pair.

Metrics follow TRL's DPOTrainer (``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
``rewards/accuracies`` over the implied pairs, with implicit reward ``beta * r``); held out:
``loss/eval`` and ``accuracy/eval`` (the share of implied pairs the implicit reward orders
right).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from sampler.training.config import DPOConfig
from sampler.training.data import (
    DataError,
    SplitData,
    completion_ids,
    fit_prompt_and_completion,
    prompt_ids,
    ranking_from_record,
    record_split,
    record_trust_weight,
)
from sampler.training.loop import ProgressCallback, RunResult, add_log_message, fit, save_output
from sampler.training.losses import dpo_pair_loss, implied_pairs, listwise_dpo_loss
from sampler.training.model import apply_lora, load_policy, load_tokenizer, turn_end_ids
from sampler.training.preference import (
    PromptCompletionCollator,
    PromptCompletions,
    SharedPromptPolicy,
)

# ---- data -------------------------------------------------------------------------------------


def ranking_completions(
    tokenizer, record: dict, *, max_length: int, end_ids: list[int], weight_by_trust: bool = False
) -> PromptCompletions | None:
    """A ranking (or pair) record as one prompt and its K completions, best-first groups."""
    parsed = ranking_from_record(record)
    if parsed is None:
        return None
    prompt, texts, groups = parsed
    prompt_tokens = prompt_ids(tokenizer, prompt)
    completions = [
        completion_ids(tokenizer, prompt, text, end_ids=end_ids, prompt_tokens=prompt_tokens)
        for text in texts
    ]
    longest = max(len(c) for c in completions)
    prompt_tokens, _ = fit_prompt_and_completion(
        prompt_tokens, [0] * longest, max_length=max_length
    )
    completions = [c[: max_length - len(prompt_tokens)] for c in completions]
    return PromptCompletions(
        prompt=prompt_tokens,
        completions=completions,
        groups=groups,
        weight=record_trust_weight(record) if weight_by_trust else 1.0,
    )


def build_dpo_data(
    tokenizer,
    records: Iterable[dict],
    *,
    max_length: int,
    test_fraction: float,
    seed: int,
    end_ids: list[int],
    weight_by_trust: bool = False,
) -> SplitData:
    data = SplitData()
    for record in records:
        data.stats["records"] += 1
        example = ranking_completions(
            tokenizer,
            record,
            max_length=max_length,
            end_ids=end_ids,
            weight_by_trust=weight_by_trust,
        )
        if example is None:
            data.stats["skipped"] += 1
            continue
        split = record_split(record, test_fraction=test_fraction, seed=seed)
        getattr(data, split).append(example)
        data.stats[f"rankings/{split}"] += 1
        data.stats[f"pairs/{split}"] += len(implied_pairs(example.groups))
        data.stats[f"candidates/{split}"] += len(example.completions)
    return data


# ---- the loss ---------------------------------------------------------------------------------


def ranking_losses(
    logratios: torch.Tensor, examples: list[PromptCompletions], config: DPOConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(mean loss over the batch's rankings, pair statistics) from log-ratios (N,) laid out
    as the collator lays out completions (each example's K in order)."""
    losses, weights, chosen, rejected = [], [], [], []
    offset = 0
    for example in examples:
        count = len(example.completions)
        ratios = logratios[offset : offset + count]
        offset += count
        pairs = implied_pairs(example.groups)
        if pairs:
            winners = torch.tensor([w for w, _, _ in pairs], device=ratios.device)
            losers = torch.tensor([lo for _, lo, _ in pairs], device=ratios.device)
            chosen.append(ratios[winners])
            rejected.append(ratios[losers])
        if config.mode == "listwise" or pairs:
            weights.append(example.weight if config.weight_by_trust else 1.0)
        if config.mode == "listwise":
            losses.append(
                listwise_dpo_loss(
                    ratios,
                    example.groups,
                    beta=config.beta,
                    label_smoothing=config.label_smoothing,
                )
            )
        elif pairs:
            losses.append(
                dpo_pair_loss(
                    ratios[winners],
                    ratios[losers],
                    beta=config.beta,
                    label_smoothing=config.label_smoothing,
                    loss_type=config.loss_type,
                ).mean()
            )
    if losses:
        weight = torch.tensor(weights, dtype=logratios.dtype, device=logratios.device)
        loss = (torch.stack(losses) * weight).sum() / weight.sum().clamp_min(1e-12)
    else:
        loss = logratios.sum() * 0.0
    chosen_rewards = config.beta * torch.cat(chosen).detach()
    rejected_rewards = config.beta * torch.cat(rejected).detach()
    return loss, {
        "chosen": chosen_rewards,
        "rejected": rejected_rewards,
        "correct": (chosen_rewards > rejected_rewards).float()
        + 0.5 * (chosen_rewards == rejected_rewards).float(),
    }


class DPOTask:
    """The loss of a batch of rankings against a frozen reference (read on the same shared
    prompt passes, without gradients)."""

    def __init__(self, config: DPOConfig, reference: nn.Module):
        self.config = config
        self.reference = reference

    def logratios(self, module: nn.Module, batch: dict) -> torch.Tensor:
        policy_logps = module(batch)
        with torch.no_grad():
            reference_logps = self.reference(batch)
        return policy_logps - reference_logps

    def train_loss(self, module: nn.Module, batch: dict):
        loss, stats = ranking_losses(self.logratios(module, batch), batch["examples"], self.config)
        metrics = {
            "rewards/chosen": stats["chosen"].mean(),
            "rewards/rejected": stats["rejected"].mean(),
            "rewards/margins": (stats["chosen"] - stats["rejected"]).mean(),
            "rewards/accuracies": stats["correct"].mean(),
        }
        return loss, metrics

    @torch.no_grad()
    def evaluate(self, module: nn.Module, loader, accelerator: Accelerator) -> dict[str, float]:
        module.eval()
        totals = torch.zeros(4, dtype=torch.float64)
        for batch in loader:
            loss, stats = ranking_losses(
                self.logratios(module, batch), batch["examples"], self.config
            )
            rankings = len(batch["examples"])
            values = torch.tensor(
                [
                    loss.item() * rankings,
                    rankings,
                    stats["correct"].sum().item(),
                    stats["correct"].numel(),
                ],
                dtype=torch.float64,
                device=accelerator.device,
            )
            totals += accelerator.reduce(values, reduction="sum").cpu()
        loss_sum, rankings, correct, pairs = totals.tolist()
        return {
            "loss/eval": loss_sum / max(1.0, rankings),
            "accuracy/eval": correct / max(1.0, pairs),
        }


# ---- entry point ------------------------------------------------------------------------------


def train_dpo(
    *,
    config: DPOConfig,
    records: Iterable[dict],
    base_model: str | Path,
    output_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    callback: ProgressCallback | None = None,
) -> RunResult:
    """DPO from the policy at ``base_model`` (also the frozen reference) on ranking or pair
    records; the new policy is saved to ``output_dir``."""
    set_seed(config.seed)
    tokenizer = load_tokenizer(base_model)
    data = build_dpo_data(
        tokenizer,
        records,
        max_length=config.max_length,
        test_fraction=config.test_fraction,
        seed=config.seed,
        end_ids=turn_end_ids(base_model, tokenizer),
        weight_by_trust=config.weight_by_trust,
    )
    if not data.train:
        raise DataError(f"No usable ranking in the training split ({data.describe()}).")
    add_log_message(callback, f"data: {data.describe()}")
    policy = load_policy(base_model)
    # Dropout off: the policy and the reference must read the same text the same way at step 0
    # (every log-ratio starts at 0, as DPO assumes).
    policy.eval()
    reference = SharedPromptPolicy(load_policy(base_model)).eval().requires_grad_(False)
    module = SharedPromptPolicy(apply_lora(policy, config))
    result, module, accelerator = fit(
        task=DPOTask(config, reference),
        module=module,
        train_examples=data.train,
        eval_examples=data.test,
        collate=PromptCompletionCollator(pad_id=tokenizer.pad_token_id),
        config=config,
        checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
        resume=resume,
        callback=callback,
        before_train=lambda accelerator: reference.to(accelerator.device),
    )
    metrics: dict = {**result.final_metrics, "steps": result.steps}
    output_dir = Path(output_dir)
    if accelerator.is_main_process:
        lora = save_output(
            module.model,
            tokenizer,
            output_dir,
            {
                "kind": "dpo",
                "config": config.as_dict(),
                "metrics": metrics,
                "data": data.describe(),
            },
        )
        if lora is not None:
            metrics["lora"] = lora
    accelerator.wait_for_everyone()
    return RunResult(
        output_dir=output_dir,
        metrics=metrics,
        history=result.history,
        data=data.describe(),
        steps=result.steps,
        seconds=result.seconds,
    )
