"""The training loop both kinds of run share, in named steps, on Accelerate.

The same code runs on CPU, one GPU, or many processes under ``accelerate launch``: Accelerate
places the model, shards the data loaders, wraps the model for DDP and autocasts for bf16.
What differs between SFT and the reward model (the loss, the evaluation) is a ``Task``.

Checkpoints are Accelerate states (weights, optimizer, RNG) plus ``trainer_state.json`` (step,
config, curves). Resuming restores them and skips the batches already seen, so a resumed run
trains on the same batches in the same order as one that never stopped. Each step draws its
random numbers (dropout) from a seed of its own (``seed_step``), so they are the same too: the
generators a checkpoint restores have also been drawn from by what the loop did besides its
steps, and not at the same points in a resumed run (a data loader draws a seed whenever it
starts an iteration: at an epoch's start in one run, right after the restore in the other).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, broadcast_object_list, set_seed
from torch import nn
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from sampler.training.config import TrainingConfig
from sampler.training.data import SplitData
from sampler.training.model import load_tokenizer, merge_lora, turn_end_ids
from sampler.training.optim import make_optimizer

STATE_FILE = "trainer_state.json"
# Written next to the saved model: how it was trained, readable without the database.
INFO_FILE = "tandem_training.json"
CHECKPOINT_PREFIX = "step-"
# The folder of one attempt of a run (one claim or takeover of it) among the run's checkpoints.
ATTEMPT_PREFIX = "attempt-"
# In a checkpoint's state file: the run drew each step's random numbers from the step's seed.
# Older checkpoints lack it; they resume, but their resumed steps draw other numbers.
SEEDED_STEPS = "seeded_steps"


@dataclass
class ProgressEvent:
    """What the loop reports. ``history`` is the live curves dict: read it, do not keep it."""

    kind: str  # "start", "train", "eval", "checkpoint", "message" or "end"
    step: int
    total_steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""
    history: dict[str, list[list[float]]] = field(default_factory=dict)
    is_main_process: bool = True


ProgressCallback = Callable[[ProgressEvent], None]


class Task(Protocol):
    def train_loss(
        self, module: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss to minimise (a mean over the batch's items) and detached per-batch metrics
        (named ``<metric>/train``)."""

    def items(self, batch: dict[str, torch.Tensor]) -> float:
        """What a micro-batch weighs in a step: how many items ``train_loss`` averages over, or
        their summed weights when its mean is weighted (by trust)."""

    def evaluate(self, module: nn.Module, loader, accelerator: Accelerator) -> dict[str, float]:
        """Held-out metrics (named ``<metric>/eval``), gathered over all processes."""


@dataclass
class LoopState:
    step: int = 0
    # Curves by metric name: [[step, value], ...]; what the Training page plots.
    history: dict[str, list[list[float]]] = field(default_factory=dict)
    # Sums of the training metrics since the last curve point (this process's own values).
    window: dict[str, float] = field(default_factory=dict)
    window_steps: int = 0

    def record(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.history.setdefault(name, []).append([step, float(value)])


@dataclass
class LoopResult:
    steps: int
    total_steps: int
    history: dict[str, list[list[float]]]
    final_metrics: dict[str, float]
    seconds: float
    # The step a resumed run started from (None: from the start, or not reported).
    resumed_from_step: int | None = None


@dataclass
class RunResult:
    """What a finished run hands back: flat final metrics, curves and the data it used."""

    output_dir: Path
    metrics: dict[str, float | int | str | None]
    history: dict[str, list[list[float]]]
    data: dict[str, int]
    steps: int
    # Wall time of the optimisation loop (evaluations included), without loading or saving.
    seconds: float = 0.0


@dataclass(frozen=True)
class RunSetup:
    """What a trainer's entry point is asked besides its data and starting model: the config,
    where the trained model goes, where checkpoints go (and whether to resume from the latest,
    or start over: ``checkpoint_plan``) and whom to report progress to. ``fit`` and
    ``finish_run`` read it."""

    config: TrainingConfig
    output_dir: str | Path
    checkpoint_dir: str | Path | None = None
    resume: bool = False
    callback: ProgressCallback | None = None

    def log(self, message: str) -> None:
        add_log_message(self.callback, message)


# ---- setup ------------------------------------------------------------------------------------


def load_examples(
    config: TrainingConfig,
    base_model: str | Path,
    build: Callable[..., SplitData],
    records: Iterable[dict],
    *,
    with_turn_ends: bool = False,
    **options,
) -> tuple[PreTrainedTokenizerBase, SplitData]:
    """A trainer's first steps: seed every generator from ``config.seed`` (before anything
    draws), load ``base_model``'s tokenizer and build the run's examples with ``build``
    (``build_sft_data`` and the like) from ``records``, cut to the config's ``max_length`` and
    split by its ``test_fraction`` and ``seed``; ``options`` go to ``build`` as they are, and
    ``with_turn_ends`` adds ``end_ids``: the tokens that end the model's turn."""
    set_seed(config.seed)
    tokenizer = load_tokenizer(base_model)
    if with_turn_ends:
        options["end_ids"] = turn_end_ids(base_model, tokenizer)
    data = build(
        tokenizer,
        records,
        max_length=config.max_length,
        test_fraction=config.test_fraction,
        seed=config.seed,
        **options,
    )
    return tokenizer, data


def process_state() -> PartialState:
    """This process's place among the training processes: the only one, or one of those
    ``accelerate launch`` or ``torchrun`` started. On a machine with no accelerator they join
    over gloo on the CPU (Accelerate needs ``cpu=True`` to see them there). A process group it
    joins is left when the process exits (``_leave_process_group``)."""
    state = PartialState(cpu=not torch.accelerator.is_available())
    global _leaving_registered
    if not _leaving_registered and torch.distributed.is_initialized():
        atexit.register(_leave_process_group)
        _leaving_registered = True
    return state


_leaving_registered = False


def _leave_process_group() -> None:
    """Destroy the process group before the interpreter tears down: left to the interpreter,
    gloo's threads can be destroyed still running, which aborts the process ("terminate called
    without an active exception") after its work succeeded."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def make_accelerator(config: TrainingConfig) -> Accelerator:
    process_state()  # the process group first: the Accelerator below joins it
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # Accelerate keeps one AcceleratorState per process; a worker that ran another training job
    # (or a trainer of another library) earlier would make this one's settings an error. Reset
    # it, but keep the process group (PartialState), so `accelerate launch` still works.
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(
        mixed_precision=precision,
        # The loop accumulates gradients itself (``_accumulated_step``), weighing micro-batches
        # by their items; Accelerate's own would weigh each micro-batch the same.
        gradient_accumulation_steps=1,
        # A seeded sampler: epoch e has the same order on every process, run and resume.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
    )


def steps_per_epoch(config: TrainingConfig, batches_per_epoch: int) -> int:
    return max(1, math.ceil(batches_per_epoch / config.gradient_accumulation_steps))


def total_steps_for(config: TrainingConfig, batches_per_epoch: int) -> int:
    if config.max_steps:
        return config.max_steps
    return max(1, math.ceil(config.epochs * steps_per_epoch(config, batches_per_epoch)))


def step_seed(seed: int, step: int, *, salt: int = 0, process_index: int = 0) -> int:
    """The seed of one step's random draws (``salt`` tells apart the draws of one step), from
    the run's seed, the step and the process alone, so a resumed run draws what a run that
    never stopped drew; the processes draw apart (their dropout masks differ)."""
    return (seed * 1_000_003 + step * 7919 + salt) % (2**63) + process_index * 104_729


def seed_step(config: TrainingConfig, step: int, accelerator: Accelerator) -> None:
    """Seed every generator a step draws from (Python's, NumPy's, torch's on the CPU and on
    each accelerator) for ``step``: dropout draws from them, not from a generator of its own.
    NumPy takes 32-bit seeds."""
    seed = step_seed(config.seed, step, process_index=accelerator.process_index)
    set_seed(seed % 2**32)


def learning_rate_at(step: int, total_steps: int, config: TrainingConfig) -> float:
    """Linear warmup, then cosine decay to ``min_learning_rate_ratio`` of the peak."""
    warmup = int(config.warmup_ratio * total_steps)
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    floor = config.min_learning_rate_ratio
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


# ---- checkpoints ------------------------------------------------------------------------------


def _complete_checkpoints(folder: Path) -> list[Path]:
    """The checkpoints in ``folder`` with their state file (saved to the end)."""
    if not folder.is_dir():
        return []
    return [
        path
        for path in folder.glob(f"{CHECKPOINT_PREFIX}*")
        if path.is_dir() and (path / STATE_FILE).is_file()
    ]


def _checkpoint_step(path: Path) -> int:
    return int(path.name.removeprefix(CHECKPOINT_PREFIX))


def latest_checkpoint(checkpoint_dir: str | Path | None) -> Path | None:
    """The checkpoint to resume from, or None: the newest complete one (with its state file)
    in ``checkpoint_dir``.

    A folder named ``attempt-*`` is one attempt of a run (each claim or takeover of the run
    saves into its own, so a worker that lost the run cannot overwrite the checkpoints of the
    one that took it over): with no checkpoint of its own, it resumes from the newest complete
    one of the run's other attempts (the ``attempt-*`` folders beside it) or of the run's
    folder itself (where checkpoints went before attempts had folders)."""
    if checkpoint_dir is None:
        return None
    folder = Path(checkpoint_dir)
    if own := _complete_checkpoints(folder):
        return max(own, key=_checkpoint_step)
    if not folder.name.startswith(ATTEMPT_PREFIX):
        return None
    others = _complete_checkpoints(folder.parent) + [
        checkpoint
        for attempt in folder.parent.glob(f"{ATTEMPT_PREFIX}*")
        if attempt != folder
        for checkpoint in _complete_checkpoints(attempt)
    ]
    # At the same step, the one saved last.
    return max(
        others,
        key=lambda path: (_checkpoint_step(path), (path / STATE_FILE).stat().st_mtime_ns),
        default=None,
    )


def checkpoint_plan(
    accelerator: Accelerator, checkpoint_dir: str | Path | None, resume: bool
) -> tuple[Path | None, Path | None, list[Path]]:
    """Where this run saves its checkpoints, which one it resumes from (or None) and, when it
    starts over instead (``resume`` False), the checkpoints of the run it found (``abandoned``:
    every one ``latest_checkpoint`` reads, complete or not, at any step): the main process's
    choice, for every process. Accelerate saves and loads a state together, into one folder,
    and only the main process knows which attempt of the run it is.

    A run that starts over resumes from none of them and removes them all once it has saved
    a checkpoint of its own (``pruned_messages``), not before: stopped before then, it leaves
    the run as it found it, resumable from the newest of them."""
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    plan = [
        folder,
        latest_checkpoint(folder) if resume else None,
        [] if resume else _run_checkpoints(folder),
    ]
    if accelerator.num_processes > 1:
        broadcast_object_list(plan)
    return plan[0], plan[1], plan[2]


def _run_checkpoints(checkpoint_dir: Path | None) -> list[Path]:
    """Every checkpoint folder, complete or not, that ``latest_checkpoint(checkpoint_dir)``
    reads: its own, and for one attempt of a run the run's other attempts' and the run
    folder's."""
    if checkpoint_dir is None:
        return []
    holders = [checkpoint_dir]
    if checkpoint_dir.name.startswith(ATTEMPT_PREFIX):
        holders += [checkpoint_dir.parent, *checkpoint_dir.parent.glob(f"{ATTEMPT_PREFIX}*")]
    return sorted(
        {
            path
            for holder in holders
            if holder.is_dir()
            for path in holder.glob(f"{CHECKPOINT_PREFIX}*")
            if _step_of(path) is not None
        }
    )


def start_message(total_steps: int, batches_per_epoch: int) -> str:
    """What the log says as a run starts from step 0: its length."""
    steps = f"{total_steps} step{'s' if total_steps != 1 else ''}"
    batches = f"{batches_per_epoch} batch{'es' if batches_per_epoch != 1 else ''}"
    return f"{steps}, {batches} per epoch"


def started_over_message(abandoned: list[Path]) -> str:
    newest = max(abandoned, key=lambda path: _step_of(path) or 0)
    count = len(abandoned)
    return (
        f"started over: {count} checkpoint{'s' if count != 1 else ''} saved before "
        f"({newest.name} the newest): not resumed from, removed once this attempt has saved "
        "one of its own"
    )


def save_checkpoint(
    accelerator: Accelerator, checkpoint_dir: Path, state: LoopState, config: TrainingConfig
) -> Path:
    """Weights, optimizer and RNG (Accelerate), then the state file last: a checkpoint without
    one is incomplete and ignored. The older ones stay until ``prune_checkpoints``."""
    path = Path(checkpoint_dir) / f"{CHECKPOINT_PREFIX}{state.step:08d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        payload = {
            "step": state.step,
            "config": config.as_dict(),
            "history": state.history,
            "window": state.window,
            "window_steps": state.window_steps,
            SEEDED_STEPS: True,
        }
        (path / STATE_FILE).write_text(json.dumps(payload))
    accelerator.wait_for_everyone()
    return path


def _step_of(path: Path) -> int | None:
    """The step a checkpoint folder's name gives, or None for another name."""
    step = path.name.removeprefix(CHECKPOINT_PREFIX)
    return int(step) if path.name.startswith(CHECKPOINT_PREFIX) and step.isdigit() else None


def _remove(folder: Path) -> None:
    """Set ``folder`` aside in one rename, then remove it: a process still writing into it (a
    worker that lost its run, saving before its report stops it) writes into the set-aside
    copy or fails, and never leaves a checkpoint that looks complete but misses files."""
    aside = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.leftover")
    try:
        folder.rename(aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def prune_checkpoints(accelerator: Accelerator, kept: Path) -> int:
    """Remove the checkpoints that ``kept``, saved whole, makes needless for resuming: the
    older ones in its own folder and, when that folder is one attempt of a run
    (``attempt-*``), the run's other attempts' checkpoints (and those in the run's folder
    itself) at its step or before, the one this attempt resumed from among them; an attempt
    folder left empty goes too. Returns how many of the other attempts' were removed.

    Called once ``kept`` was saved (its state file written last) and reported: a save that
    failed raised before, and a process that no longer holds its run (taken over after a
    stall) is stopped by that report first. Checkpoints of other attempts past ``kept``'s step
    stay: the worker that took the run over from this one, stalled right after its report,
    resumed from ``kept`` or later and saves past it."""
    if not accelerator.is_main_process:
        return 0
    for older in kept.parent.glob(f"{CHECKPOINT_PREFIX}*"):
        if older != kept:
            shutil.rmtree(older, ignore_errors=True)
    attempt, step = kept.parent, _step_of(kept)
    if not attempt.name.startswith(ATTEMPT_PREFIX) or step is None:
        return 0
    removed = 0
    for holder in [attempt.parent, *attempt.parent.glob(f"{ATTEMPT_PREFIX}*")]:
        if holder == attempt or not holder.is_dir():
            continue
        needless = [
            path
            for path in holder.glob(f"{CHECKPOINT_PREFIX}*")
            if (saved_at := _step_of(path)) is not None and saved_at <= step
        ]
        for checkpoint in needless:
            _remove(checkpoint)
        removed += len(needless)
        if needless and holder != attempt.parent:
            with contextlib.suppress(OSError):  # not empty: a newer checkpoint, or a leftover
                holder.rmdir()
    return removed


def pruned_message(removed: int, kept: Path) -> str:
    return (
        f"removed {removed} checkpoint{'s' if removed != 1 else ''} of the run's other "
        f"attempts, at {kept.name} or before"
    )


def remove_abandoned(accelerator: Accelerator, abandoned: list[Path], kept: Path) -> int:
    """Remove the checkpoints a run that started over found (``checkpoint_plan``), at any step,
    but ``kept`` (its own, saved over one of them in a folder it shares with them); an attempt
    folder left empty goes too. Returns how many were removed. Called, as
    ``prune_checkpoints``, once ``kept`` was saved whole and reported. Only those it found go:
    an attempt that took the run over from this one later saves into a folder of its own."""
    if not accelerator.is_main_process:
        return 0
    removed = 0
    for checkpoint in abandoned:
        if checkpoint != kept and checkpoint.is_dir():
            _remove(checkpoint)
            removed += 1
    for holder in {checkpoint.parent for checkpoint in abandoned} - {kept.parent}:
        if holder.name.startswith(ATTEMPT_PREFIX):
            with contextlib.suppress(OSError):  # not empty: a leftover
                holder.rmdir()
    return removed


def pruned_messages(accelerator: Accelerator, kept: Path, abandoned: list[Path]) -> list[str]:
    """Once ``kept`` was saved whole and reported: remove what a run that started over found
    (``remove_abandoned``; nothing for a resumed run), then ``prune_checkpoints``. Returns
    what the run's log says of it."""
    messages = []
    if removed := remove_abandoned(accelerator, abandoned, kept):
        messages.append(
            f"removed {removed} checkpoint{'s' if removed != 1 else ''} saved before this "
            "attempt started over"
        )
    if removed := prune_checkpoints(accelerator, kept):
        messages.append(pruned_message(removed, kept))
    return messages


def load_checkpoint(accelerator: Accelerator, path: Path) -> tuple[LoopState, bool]:
    """The loop's state at ``path`` and whether its run seeded each step (``SEEDED_STEPS``):
    if not, the resumed steps draw other random numbers than the run that saved it did."""
    accelerator.load_state(str(path))
    payload = json.loads((path / STATE_FILE).read_text())
    state = LoopState(
        step=int(payload["step"]),
        history=payload["history"],
        window=payload.get("window", {}),
        window_steps=int(payload.get("window_steps", 0)),
    )
    return state, bool(payload.get(SEEDED_STEPS))


def not_exact_message(checkpoint: Path) -> str:
    return (
        f"checkpoint {checkpoint.name} was saved before each step drew from its own seed: the "
        "resumed steps do not repeat the random draws (dropout) of a run that never stopped"
    )


# ---- the loop ---------------------------------------------------------------------------------


def _set_learning_rate(optimizer, learning_rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate


def _batches(accelerator: Accelerator, loader, *, epoch: int, skip: int):
    loader.set_epoch(epoch)
    return accelerator.skip_first_batches(loader, skip) if skip else loader


def _windows(batches, size: int):
    """The batches in runs of ``size``: one optimizer step each (the last of an epoch may be
    shorter)."""
    window = []
    for batch in batches:
        window.append(batch)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


def _accumulated_step(task: Task, module: nn.Module, window: list, accelerator: Accelerator):
    """The gradients of one optimizer step over ``window``'s micro-batches (and every
    process's): each task's loss is a mean over its batch's items (tokens, rankings,
    examples), so each micro-batch's counts by its share of the step's items. The step's
    objective is then the mean over all its items, whatever the accumulation, the processes or
    a shorter last window; a mean of per-micro-batch means would weigh the items of a small
    micro-batch more. A task whose mean is weighted (by trust) counts its summed weights, so
    the step's objective is the weighted mean over all its items: counted by number, a
    micro-batch of one item would weigh the same whatever its weight.
    Returns the step's metrics, weighted alike (this process's)."""
    counts = [float(task.items(batch)) for batch in window]
    total = torch.tensor([sum(counts)], dtype=torch.float64, device=accelerator.device)
    total = accelerator.reduce(total, reduction="sum").item()  # one collective per step
    # Weights may sum below 1; with all of them 0 every loss is 0 too (nothing to scale).
    total = total if total > 0 else 1.0
    # DDP averages the processes' gradients: the sum over every item is num_processes x that.
    processes = accelerator.num_processes
    sums: dict[str, torch.Tensor | float] = {}
    for index, batch in enumerate(window):
        last = index == len(window) - 1
        # Gradients are synchronised once, at the step's last micro-batch.
        with contextlib.nullcontext() if last else accelerator.no_sync(module):
            loss, metrics = task.train_loss(module, batch)
            # Exactly 1 for one micro-batch on one process: the loss as the task gave it.
            accelerator.backward(loss * (counts[index] * processes / total))
        for name, value in {"loss/train": loss, **metrics}.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else value
            sums[name] = sums.get(name, 0.0) + value * counts[index]
    mine = sum(counts) if sum(counts) > 0 else 1.0
    return {name: float(value) / mine for name, value in sums.items()}


def _mean_over_processes(accelerator: Accelerator, sums: dict[str, float], count: int):
    names = sorted(sums)
    values = torch.tensor([sums[n] / count for n in names], device=accelerator.device)
    values = accelerator.reduce(values, reduction="mean")
    return dict(zip(names, values.tolist(), strict=True))


def train(
    *,
    task: Task,
    module: nn.Module,
    optimizer,
    train_loader,
    eval_loader,
    accelerator: Accelerator,
    config: TrainingConfig,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    callback: ProgressCallback | None = None,
) -> LoopResult:
    """Run the optimisation; ``module``, ``optimizer`` and loaders come from
    ``accelerator.prepare``. Returns the curves and the final held-out metrics."""
    started = time.monotonic()
    batches_per_epoch = len(train_loader)
    if batches_per_epoch == 0:
        raise ValueError("The training data loader is empty.")
    per_epoch = steps_per_epoch(config, batches_per_epoch)
    total_steps = total_steps_for(config, batches_per_epoch)

    def report(kind: str, state: LoopState, metrics=None, message: str = "") -> None:
        main = accelerator.is_main_process
        report_progress(callback, kind, state, total_steps, main, metrics, message)

    state, resumed_from = LoopState(), None
    checkpoint_dir, checkpoint, abandoned = checkpoint_plan(accelerator, checkpoint_dir, resume)
    if checkpoint is not None:
        state, seeded = load_checkpoint(accelerator, checkpoint)
        resumed_from = state.step
        if not seeded:
            report("message", state, message=not_exact_message(checkpoint))
    report(
        "start",
        state,
        message=(
            f"resumed at step {state.step} of {total_steps}"
            if resumed_from is not None
            else start_message(total_steps, batches_per_epoch)
        ),
    )
    if abandoned:
        report("message", state, message=started_over_message(abandoned))

    module.train()
    accumulate = config.gradient_accumulation_steps
    while state.step < total_steps:
        epoch, step_in_epoch = divmod(state.step, per_epoch)
        skip = step_in_epoch * accumulate
        for window in _windows(
            _batches(accelerator, train_loader, epoch=epoch, skip=skip), accumulate
        ):
            learning_rate = learning_rate_at(state.step, total_steps, config)
            _set_learning_rate(optimizer, learning_rate)
            seed_step(config, state.step, accelerator)
            step_metrics = _accumulated_step(task, module, window, accelerator)
            accelerator.clip_grad_norm_(module.parameters(), config.gradient_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            state.step += 1
            if not math.isfinite(step_metrics["loss/train"]):
                raise FloatingPointError(
                    f"the training loss became {step_metrics['loss/train']} at step {state.step}"
                )
            for name, value in step_metrics.items():
                state.window[name] = state.window.get(name, 0.0) + value
            state.window_steps += 1
            # Step 1 too: the curves start where the run does (a run shorter than log_every
            # steps once drew its whole curve from its last step or two).
            if state.step == 1 or state.step % config.log_every == 0 or state.step == total_steps:
                averaged = _mean_over_processes(accelerator, state.window, state.window_steps)
                state.record(state.step, {**averaged, "learning_rate": learning_rate})
                state.window, state.window_steps = {}, 0
            report("train", state, {**step_metrics, "learning_rate": learning_rate})

            is_last = state.step >= total_steps
            if eval_loader is not None and (
                is_last or (config.eval_every and state.step % config.eval_every == 0)
            ):
                evaluated = task.evaluate(module, eval_loader, accelerator)
                module.train()
                state.record(state.step, evaluated)
                report("eval", state, evaluated)
            if (
                checkpoint_dir is not None
                and config.checkpoint_every
                and state.step % config.checkpoint_every == 0
                and not is_last
            ):
                path = save_checkpoint(accelerator, checkpoint_dir, state, config)
                report("checkpoint", state, message=f"checkpoint {path.name}")
                for message in pruned_messages(accelerator, path, abandoned):
                    report("message", state, message=message)
                abandoned = []
            if is_last:
                break

    final = {
        name: points[-1][1]
        for name, points in state.history.items()
        if name.endswith("/eval") and points and points[-1][0] == state.step
    }
    report("end", state, final)
    return LoopResult(
        steps=state.step,
        total_steps=total_steps,
        history=state.history,
        final_metrics=final,
        resumed_from_step=resumed_from,
        seconds=time.monotonic() - started,
    )


def fit(
    *,
    task: Task,
    module: nn.Module,
    data: SplitData,
    collate: Callable[[list], dict[str, torch.Tensor]],
    setup: RunSetup,
    eval_examples: list | None = None,
    before_train: Callable[[Accelerator], object] | None = None,
) -> tuple[LoopResult, nn.Module, Accelerator]:
    """Data loaders, optimizer and Accelerate around ``train`` on ``data.train``, evaluated on
    ``eval_examples`` (default: ``data.test``); returns the unwrapped module.

    ``before_train(accelerator)`` places what the task holds besides the module (a frozen
    reference model) once the device is known."""
    config, train_examples = setup.config, data.train
    if eval_examples is None:
        eval_examples = data.test
    if not train_examples:
        raise ValueError("There is nothing to train on.")
    accelerator = make_accelerator(config)
    if before_train is not None:
        before_train(accelerator)
    optimizer = make_optimizer(module, config, eps=config.adam_epsilon)
    train_loader = DataLoader(
        train_examples, batch_size=config.batch_size, shuffle=True, collate_fn=collate
    )
    eval_loader = (
        DataLoader(eval_examples, batch_size=config.batch_size, shuffle=False, collate_fn=collate)
        if eval_examples
        else None
    )
    prepared_module, optimizer, train_loader = accelerator.prepare(module, optimizer, train_loader)
    if eval_loader is not None:
        eval_loader = accelerator.prepare(eval_loader)
    result = train(
        task=task,
        module=prepared_module,
        optimizer=optimizer,
        train_loader=train_loader,
        eval_loader=eval_loader,
        accelerator=accelerator,
        config=config,
        checkpoint_dir=Path(setup.checkpoint_dir) if setup.checkpoint_dir else None,
        resume=setup.resume,
        callback=setup.callback,
    )
    accelerator.wait_for_everyone()
    return result, accelerator.unwrap_model(prepared_module), accelerator


def report_progress(
    callback: ProgressCallback | None,
    kind: str,
    state,
    total_steps: int,
    is_main_process: bool,
    metrics: dict | None = None,
    message: str = "",
) -> None:
    """One event about ``state`` (a loop's state: its ``step`` and live ``history``)."""
    if callback is not None:
        callback(
            ProgressEvent(
                kind=kind,
                step=state.step,
                total_steps=total_steps,
                metrics=metrics or {},
                message=message,
                history=state.history,
                is_main_process=is_main_process,
            )
        )


def add_log_message(callback: ProgressCallback | None, message: str, *, main: bool = True) -> None:
    if callback is not None:
        callback(
            ProgressEvent(
                kind="message", step=0, total_steps=0, message=message, is_main_process=main
            )
        )


def save_output(model, tokenizer, output_dir: Path, info: dict) -> dict | None:
    """Save a model users load with stock ``from_pretrained``: LoRA merged (its adapter kept
    beside, see ``merge_lora``), weights and config in float32 whatever trained them (a float16
    checkpoint loads as float16 with dtype "auto" and trains to NaN or "mixed dtype" errors in
    TRL), and the tokenizer. Returns the LoRA record or None."""
    output_dir.mkdir(parents=True, exist_ok=True)
    model, lora = merge_lora(model, output_dir)
    if lora is not None:
        info = {**info, "lora": lora}
    model.to(torch.float32)
    model.config.dtype = torch.float32
    model.save_pretrained(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    (output_dir / INFO_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return lora


def finish_run(
    model,
    tokenizer,
    setup: RunSetup,
    data: SplitData,
    result: LoopResult,
    accelerator: Accelerator,
    *,
    extra_metrics: dict | None = None,
    extra_info: dict | None = None,
) -> RunResult:
    """Save the trained ``model`` to ``setup.output_dir`` (``save_output``, on the main process;
    the others wait for it) with what trained it (``extra_info`` too), and hand back the run's
    result: the final held-out metrics, the step count, ``extra_metrics`` and the LoRA record,
    when there is one."""
    config, output_dir = setup.config, Path(setup.output_dir)
    metrics: dict = {**result.final_metrics, "steps": result.steps, **(extra_metrics or {})}
    if accelerator.is_main_process:
        info = {
            "kind": config.kind,
            "config": config.as_dict(),
            **(extra_info or {}),
            "metrics": metrics,
            "data": data.describe(),
        }
        lora = save_output(model, tokenizer, output_dir, info)
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
