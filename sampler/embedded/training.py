"""Language-model pre-training of the embedded model on packed conversation text.

Loss is on every token, user and assistant turns alike: both are human chit-chat, and for a model
this small the extra signal matters more than specialising on one side.
"""

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from sampler.embedded.config import TrainingConfig
from sampler.training.optim import make_optimizer


@dataclass
class TrainingResult:
    steps: int
    tokens_seen: int
    train_loss: float
    validation_loss: float | None
    seconds: float
    history: list[dict[str, float]]


def token_stream(texts: Iterable[str], tokenizer) -> torch.Tensor:
    """All texts, tokenized and concatenated into one 1-D tensor.

    Rendered conversations start with a role marker and end with the end-of-turn token, so they
    can be laid end to end without separators.
    """
    ids: list[int] = []
    for encoding in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        ids.extend(encoding)
    return torch.tensor(ids, dtype=torch.long)


def sample_batch(
    stream: torch.Tensor, *, batch_size: int, block_size: int, generator: torch.Generator
) -> torch.Tensor:
    """``batch_size`` random windows of ``block_size`` tokens: (batch_size, block_size)."""
    starts = torch.randint(0, len(stream) - block_size + 1, (batch_size,), generator=generator)
    return torch.stack([stream[start : start + block_size] for start in starts.tolist()])


def fixed_blocks(stream: torch.Tensor, *, block_size: int) -> torch.Tensor:
    """Non-overlapping windows, for a validation loss that is the same set at every evaluation."""
    count = len(stream) // block_size
    return stream[: count * block_size].view(count, block_size)


def learning_rate_at(step: int, config: TrainingConfig) -> float:
    """Linear warmup, then cosine decay to ``min_learning_rate_ratio`` of the peak."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    decay_steps = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    floor = config.min_learning_rate_ratio
    return config.learning_rate * (floor + (1.0 - floor) * cosine)


def language_model_loss(model: nn.Module, blocks: torch.Tensor) -> torch.Tensor:
    # `labels=input_ids`: the model shifts them internally to predict token t+1 from tokens <= t.
    return model(input_ids=blocks, labels=blocks).loss


@torch.no_grad()
def evaluate(model: nn.Module, blocks: torch.Tensor, *, batch_size: int) -> float:
    """Mean loss over ``blocks`` (equal-length windows, so a mean of batch means is exact)."""
    model.eval()
    total, batches = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start : start + batch_size]
        total += language_model_loss(model, batch).item() * len(batch)
        batches += len(batch)
    model.train()
    return total / max(1, batches)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    *,
    learning_rate: float,
    gradient_clip: float,
) -> float:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
    loss = language_model_loss(model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), gradient_clip)
    optimizer.step()
    return loss.item()


def train(
    model: nn.Module,
    *,
    train_stream: torch.Tensor,
    validation_stream: torch.Tensor | None,
    config: TrainingConfig,
    seed: int,
    progress: bool = True,
) -> TrainingResult:
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(model, config)
    validation_blocks = (
        fixed_blocks(validation_stream, block_size=config.block_size)
        if validation_stream is not None and len(validation_stream) >= config.block_size
        else None
    )
    # Periodic evaluations use a fixed prefix of the held-out blocks; the final one uses all.
    periodic_blocks = (
        validation_blocks[: config.eval_batches * config.batch_size]
        if validation_blocks is not None
        else None
    )
    history: list[dict[str, float]] = []
    recent_losses: list[float] = []
    started = time.monotonic()
    model.train()
    bar = tqdm(range(config.steps), disable=not progress, desc="train", unit="step")
    for step in bar:
        learning_rate = learning_rate_at(step, config)
        batch = sample_batch(
            train_stream,
            batch_size=config.batch_size,
            block_size=config.block_size,
            generator=generator,
        )
        loss = train_step(
            model,
            optimizer,
            batch,
            learning_rate=learning_rate,
            gradient_clip=config.gradient_clip,
        )
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss} at step {step}")
        recent_losses = [*recent_losses[-49:], loss]
        is_eval_step = config.eval_interval and (step + 1) % config.eval_interval == 0
        if is_eval_step and periodic_blocks is not None:
            record = {
                "step": step + 1,
                "loss/train": sum(recent_losses) / len(recent_losses),
                "loss/validation": evaluate(model, periodic_blocks, batch_size=config.batch_size),
                "learning_rate": learning_rate,
                "seconds": time.monotonic() - started,
            }
            history.append(record)
            bar.write(
                f"step {record['step']}: train {record['loss/train']:.3f}"
                f" validation {record['loss/validation']:.3f}"
            )
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{learning_rate:.2e}", refresh=False)
    bar.close()
    validation_loss = (
        evaluate(model, validation_blocks, batch_size=config.batch_size)
        if validation_blocks is not None
        else None
    )
    return TrainingResult(
        steps=config.steps,
        tokens_seen=config.steps * config.batch_size * config.block_size,
        train_loss=sum(recent_losses) / len(recent_losses) if recent_losses else float("nan"),
        validation_loss=validation_loss,
        seconds=time.monotonic() - started,
        history=history,
    )
