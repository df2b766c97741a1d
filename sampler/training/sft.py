"""``train_sft``: demonstrations -> a new policy, loss on assistant tokens only.

The assistant's end-of-turn token is part of what it learns (the chat template's
``{% generation %}`` span includes it), so the fine-tuned policy still knows when to stop.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from sampler.training.config import SFTConfig
from sampler.training.data import DataError, SFTCollator, build_sft_data
from sampler.training.loop import (
    ProgressCallback,
    RunResult,
    RunSetup,
    finish_run,
    fit,
    load_examples,
)
from sampler.training.losses import IGNORE_INDEX, token_cross_entropy, token_cross_entropy_rows
from sampler.training.model import CausalLM, apply_lora, load_policy


def _next_token_correct(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, counted) labelled tokens of each row (B,): greedy next-token accuracy on the
    replies."""
    targets = labels[:, 1:]
    counted = targets != IGNORE_INDEX
    correct = (logits[:, :-1].argmax(-1) == targets) & counted
    return correct.sum(-1), counted.sum(-1)


class SFTTask:
    def items(self, batch: dict[str, torch.Tensor]) -> int:
        """The labelled tokens (the loss is their mean)."""
        return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())

    def train_loss(self, module: nn.Module, batch: dict[str, torch.Tensor]):
        logits = module(batch["input_ids"], batch["attention_mask"])
        loss = token_cross_entropy(logits, batch["labels"])
        with torch.no_grad():
            correct, counted = _next_token_correct(logits, batch["labels"])
        return loss, {"accuracy/train": correct.sum().float() / counted.sum().clamp(min=1)}

    @torch.no_grad()
    def evaluate(self, module: nn.Module, loader, accelerator: Accelerator) -> dict[str, float]:
        """Token-weighted held-out loss and next-token accuracy on the assistant's tokens, over
        every held-out example once (not the ones Accelerate repeats to even out shards)."""
        module.eval()
        totals = torch.zeros(3, dtype=torch.float64)
        for batch in loader:
            logits = module(batch["input_ids"], batch["attention_mask"])
            rows = token_cross_entropy_rows(logits, batch["labels"])
            correct, _ = _next_token_correct(logits, batch["labels"])
            per_example = torch.cat([rows, correct.unsqueeze(1).to(rows.dtype)], dim=1)
            totals += accelerator.gather_for_metrics(per_example).double().sum(0).cpu()
        loss_sum, tokens, correct_sum = totals.tolist()
        return {
            "loss/eval": loss_sum / max(1.0, tokens),
            "accuracy/eval": correct_sum / max(1.0, tokens),
        }


def train_sft(
    *,
    config: SFTConfig,
    records: Iterable[dict],
    base_model: str | Path,
    output_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    callback: ProgressCallback | None = None,
) -> RunResult:
    """Fine-tune the policy at ``base_model`` on demonstrations; save it to ``output_dir``."""
    tokenizer, data = load_examples(
        config, base_model, build_sft_data, records, learn_origins=config.learn_origins
    )
    if not data.train:
        raise DataError(f"No usable demonstration in the training split ({data.summary()}).")
    setup = RunSetup(config, output_dir, checkpoint_dir, resume, callback)
    setup.log(f"data: {data.describe()}")
    result, module, accelerator = fit(
        task=SFTTask(),
        module=CausalLM(apply_lora(load_policy(base_model), config)),
        data=data,
        collate=SFTCollator(pad_id=tokenizer.pad_token_id),
        setup=setup,
    )
    return finish_run(module.model, tokenizer, setup, data, result, accelerator)
