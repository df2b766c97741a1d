"""Shared by the preference benchmarks (reward model, DPO): rankings in the pair form that TRL's
trainers read, the settings both TRL trainers take from our config, and a quiet process."""

from __future__ import annotations

import logging
import warnings

import torch


def as_pairs(rankings: list[dict]) -> list[dict]:
    """Every implied pair of every ranking, in TRL's conversational prompt/chosen/rejected form."""
    pairs = []
    for record in rankings:
        texts = {c["candidate_id"]: c["text"] for c in record["candidates"]}
        ordering = record["ordering"]
        for rank, group in enumerate(ordering):
            for worse in ordering[rank + 1 :]:
                for winner in group:
                    for loser in worse:
                        pairs.append(
                            {
                                "prompt": record["prompt"],
                                "chosen": [{"role": "assistant", "content": texts[winner]}],
                                "rejected": [{"role": "assistant", "content": texts[loser]}],
                            }
                        )
    return pairs


def trl_arguments(config) -> dict:
    """TRL training arguments that match our run's ``config`` (one epoch, its optimiser and
    schedule shape, its max length and seed), without saving, logging or a progress bar; the
    GPU when there is one."""
    return {
        "num_train_epochs": 1,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": "cosine",
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.gradient_clip,
        "max_length": config.max_length,
        "seed": config.seed,
        "report_to": "none",
        "save_strategy": "no",
        "logging_strategy": "no",
        "disable_tqdm": True,
        "use_cpu": not torch.cuda.is_available(),
        "bf16": False,
        "dataloader_num_workers": 0,
    }


def quiet_process(threads: int) -> str:
    """``threads`` CPU threads and no library warnings, logs or progress bars (the printed table
    is the output); returns the device, as the table's header shows it."""
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    return "cuda" if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads"
