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

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from sampler.training.config import DPOConfig
from sampler.training.data import (
    DataError,
    SplitData,
    build_ranking_data,
    completion_ids,
    fit_prompt_and_completion,
    prompt_ids,
    ranking_from_record,
    record_trust_weight,
)
from sampler.training.loop import (
    ProgressCallback,
    RunResult,
    RunSetup,
    finish_run,
    fit,
    load_examples,
)
from sampler.training.losses import dpo_pair_loss, implied_pairs, listwise_dpo_loss
from sampler.training.preference import (
    PromptCompletionCollator,
    PromptCompletions,
    ReferenceTask,
    policy_and_reference,
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


def _count_completions(stats: Counter, example: PromptCompletions, split: str) -> None:
    stats[f"rankings/{split}"] += 1
    stats[f"pairs/{split}"] += len(implied_pairs(example.groups))
    stats[f"candidates/{split}"] += len(example.completions)


def build_dpo_data(tokenizer, records: Iterable[dict], **options) -> SplitData:
    """Ranking (or pair) records as DPO's examples (``ranking_completions``) by split;
    ``options``: those of ``build_ranking_data`` (``max_length``, ``test_fraction``, ``seed``,
    ``end_ids``, ``weight_by_trust``)."""
    return build_ranking_data(
        tokenizer,
        records,
        make_example=ranking_completions,
        count=_count_completions,
        **options,
    )


# ---- the loss ---------------------------------------------------------------------------------


def _pair_correct(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """1 where the implicit reward orders a pair right, 1/2 where it ties, else 0."""
    return (chosen > rejected).float() + 0.5 * (chosen == rejected).float()


def ranking_losses(
    logratios: torch.Tensor, examples: list[PromptCompletions], config: DPOConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(mean loss over the batch's rankings, pair statistics) from log-ratios (N,) laid out
    as the collator lays out completions (each example's K in order). ``rows`` (R, 4) has per
    ranking: its loss (unweighted, detached), whether it has one, its pairs ordered right and
    its pairs: what an evaluation sums over processes."""
    losses, weights, chosen, rejected, rows = [], [], [], [], []
    offset = 0
    for example in examples:
        count = len(example.completions)
        ratios = logratios[offset : offset + count]
        offset += count
        pairs = implied_pairs(example.groups)
        right = ratios.new_zeros(())
        if pairs:
            winners = torch.tensor([w for w, _, _ in pairs], device=ratios.device)
            losers = torch.tensor([lo for _, lo, _ in pairs], device=ratios.device)
            chosen.append(ratios[winners])
            rejected.append(ratios[losers])
            right = _pair_correct(ratios[winners].detach(), ratios[losers].detach()).sum()
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
        has_loss = config.mode == "listwise" or bool(pairs)
        rows.append(
            torch.stack(
                [
                    losses[-1].detach() if has_loss else ratios.new_zeros(()),
                    ratios.new_tensor(float(has_loss)),
                    right.to(ratios.dtype),
                    ratios.new_tensor(float(len(pairs))),
                ]
            )
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
        "correct": _pair_correct(chosen_rewards, rejected_rewards),
        "rows": torch.stack(rows),
    }


class DPOTask(ReferenceTask):
    """The loss of a batch of rankings against a frozen reference. IPO reads each reply's
    log-probs averaged over its tokens (as TRL does), so that its target gap 1 / (2 beta) means
    the same for short and long replies; DPO reads them summed."""

    def items(self, batch: dict) -> float:
        """The rankings, or their summed trust weights when the loss's mean is weighted."""
        if self.config.weight_by_trust:
            return float(sum(example.weight for example in batch["examples"]))
        return float(len(batch["examples"]))

    def ratios(self, module: nn.Module, batch: dict) -> torch.Tensor:
        ratios = self.logratios(module, batch)
        if self.config.loss_type == "ipo":
            ratios = ratios / batch["completion_mask"].sum(-1).clamp(min=1).to(ratios.dtype)
        return ratios

    def train_loss(self, module: nn.Module, batch: dict):
        loss, stats = ranking_losses(self.ratios(module, batch), batch["examples"], self.config)
        metrics = {
            "rewards/chosen": stats["chosen"].mean(),
            "rewards/rejected": stats["rejected"].mean(),
            "rewards/margins": (stats["chosen"] - stats["rejected"]).mean(),
            "rewards/accuracies": stats["correct"].mean(),
        }
        return loss, metrics

    @torch.no_grad()
    def evaluate(self, module: nn.Module, loader, accelerator: Accelerator) -> dict[str, float]:
        """The mean loss per held-out ranking (unweighted: comparable across settings) and the
        share of implied pairs ordered right, over every held-out ranking once (not the ones
        Accelerate repeats to even out shards)."""
        module.eval()
        totals = torch.zeros(4, dtype=torch.float64)
        for batch in loader:
            _, stats = ranking_losses(self.ratios(module, batch), batch["examples"], self.config)
            totals += accelerator.gather_for_metrics(stats["rows"]).double().sum(0).cpu()
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
    tokenizer, data = load_examples(
        config,
        base_model,
        build_dpo_data,
        records,
        with_turn_ends=True,
        weight_by_trust=config.weight_by_trust,
    )
    if not data.train:
        raise DataError(f"No usable ranking in the training split ({data.summary()}).")
    setup = RunSetup(config, output_dir, checkpoint_dir, resume, callback)
    setup.log(f"data: {data.describe()}")
    module, reference = policy_and_reference(base_model, config)
    task = DPOTask(config, reference)
    result, module, accelerator = fit(
        task=task,
        module=module,
        data=data,
        collate=PromptCompletionCollator(pad_id=tokenizer.pad_token_id),
        setup=setup,
        before_train=task.place_reference,
    )
    return finish_run(module.model, tokenizer, setup, data, result, accelerator)
