"""``train_reward``: rankings -> a reward model, with InstructGPT's K-wise loss.

Each ranking is one batch element: its K candidates go through the model once (K forward
passes) and the loss averages -log sigmoid(r_w - r_l) over the C(K,2) pairs its ordering
implies. Held-out pairwise accuracy is measured on conversations the model never saw.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from transformers import GenerationConfig

from sampler.training.config import RewardConfig
from sampler.training.data import (
    DataError,
    RankingCollator,
    build_ranking_data,
    demonstration_ids,
    pad_right,
)
from sampler.training.loop import ProgressCallback, RunResult, RunSetup, finish_run, fit
from sampler.training.losses import (
    centering_penalty,
    grouped_ranking_loss,
    pairwise_correct,
    pairwise_logistic_loss,
)
from sampler.training.model import (
    RewardScorer,
    apply_lora,
    build_reward_model,
    load_tokenizer,
    merge_lora,
    shift_reward_scores,
    turn_end_ids,
)
from sampler.training.records import in_half, none_in_half


class RewardTask:
    def __init__(self, config: RewardConfig):
        self.config = config

    def items(self, batch: dict[str, torch.Tensor]) -> float:
        """The rankings (the loss is a mean over them), or their summed trust weights when the
        mean is weighted by them."""
        if self.config.weight_by_trust:
            return float(batch["example_weights"].sum())
        return float(batch["num_elements"])

    def train_loss(self, module: nn.Module, batch: dict[str, torch.Tensor]):
        scores = module(batch["input_ids"], batch["attention_mask"])
        winners, losers = batch["winners"], batch["losers"]
        trust = batch["example_weights"] if self.config.weight_by_trust else None
        loss = grouped_ranking_loss(
            scores,
            winners,
            losers,
            batch["elements"],
            int(batch["num_elements"]),
            margins=self.config.margin_per_rank * batch["rank_distances"] + batch["pair_margins"],
            ties=(batch["tie_first"], batch["tie_second"], batch["tie_elements"]),
            tie_weight=self.config.tie_weight,
            element_weights=trust,
        )
        if self.config.center_rewards_coefficient:
            centering = centering_penalty(
                scores,
                winners,
                losers,
                batch["elements"],
                int(batch["num_elements"]),
                element_weights=trust,
            )
            loss = loss + self.config.center_rewards_coefficient * centering
        with torch.no_grad():
            metrics = {
                "accuracy/train": pairwise_correct(scores, winners, losers).mean(),
                "reward/mean": scores.mean(),
                "reward/margin": (scores[winners] - scores[losers]).mean(),
            }
        return loss, metrics

    @torch.no_grad()
    def evaluate(self, module: nn.Module, loader, accelerator: Accelerator) -> dict[str, float]:
        """Pairwise accuracy over all held-out pairs and the K-wise loss per ranking (no margin,
        no centring: comparable across settings)."""
        module.eval()
        totals = torch.zeros(4, dtype=torch.float64)
        for batch in loader:
            scores = module(batch["input_ids"], batch["attention_mask"])
            elements, count = batch["elements"], int(batch["num_elements"])
            per_pair = pairwise_logistic_loss(scores[batch["winners"]], scores[batch["losers"]])
            correct = pairwise_correct(scores, batch["winners"], batch["losers"])
            zeros = per_pair.new_zeros(count)
            pairs = zeros.index_add(0, elements, torch.ones_like(per_pair))
            # Per ranking: (its mean pair loss, correct pairs, pairs); gathered without the
            # duplicates Accelerate pads uneven shards with.
            per_ranking = torch.stack(
                [
                    zeros.index_add(0, elements, per_pair) / pairs.clamp(min=1),
                    zeros.index_add(0, elements, correct),
                    pairs,
                ],
                dim=1,
            )
            gathered = accelerator.gather_for_metrics(per_ranking).double().cpu()
            totals += torch.tensor(
                [gathered[:, 0].sum(), gathered[:, 1].sum(), gathered[:, 2].sum(), len(gathered)]
            )
        loss_sum, correct_sum, pair_count, rankings = totals.tolist()
        return {
            "loss/eval": loss_sum / max(1.0, rankings),
            "accuracy/eval": correct_sum / max(1.0, pair_count),
        }


@torch.no_grad()
def score_sequences(
    scorer: nn.Module, sequences: list[list[int]], *, pad_id: int, batch_size: int = 32
) -> torch.Tensor:
    """Scores of token sequences, (N,), on the scorer's device."""
    scorer.eval()
    device = next(scorer.parameters()).device
    scores = []
    for start in range(0, len(sequences), batch_size):
        ids, mask = pad_right(sequences[start : start + batch_size], pad_id=pad_id)
        scores.append(scorer(ids.to(device), mask.to(device)).float().cpu())
    return torch.cat(scores) if scores else torch.empty(0)


def normalize_to_demonstrations(
    scorer: RewardScorer,
    tokenizer,
    demonstrations: Iterable[dict],
    config: RewardConfig,
    *,
    end_ids: list[int] | None = None,
) -> dict[str, float | int | str | None]:
    """Shift the model's scores so that demonstrations score mean 0 (InstructGPT before RL).

    Raises ``DataError`` when no demonstration has an assistant turn: a run asked to normalise
    never finishes without it, whether its data came from a file or the database."""
    sequences = []
    for record in demonstrations:
        ids = demonstration_ids(
            tokenizer, record.get("messages") or [], max_length=config.max_length, end_ids=end_ids
        )
        if ids is not None:
            sequences.append(ids)
        if len(sequences) >= config.normalization_samples:
            break
    if not sequences:
        raise DataError(
            "No demonstration to normalise the scores on: give demonstrations, or set "
            "normalize_to_demonstrations to no."
        )
    before = score_sequences(scorer, sequences, pad_id=tokenizer.pad_token_id).mean().item()
    try:
        where = shift_reward_scores(scorer.model, before)
    except ValueError:
        # No bias to carry the shift (e.g. RMSNorm and a bias-free head): report the offset so
        # that users of the model can subtract it, rather than fail a finished run.
        return {"reward/offset": before, "reward/offset_applied_to": None}
    after = score_sequences(scorer, sequences, pad_id=tokenizer.pad_token_id).mean().item()
    return {
        "reward/offset": before,
        "reward/offset_applied_to": where,
        "reward/demonstration_mean": after,
        "reward/normalized_on": len(sequences),
    }


def train_reward(
    *,
    config: RewardConfig,
    records: Iterable[dict],
    base_model: str | Path,
    output_dir: str | Path,
    demonstrations: Iterable[dict] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    callback: ProgressCallback | None = None,
) -> RunResult:
    """Train a reward model from ``base_model``'s backbone and save it to ``output_dir``.

    ``records``: exported ``rankings`` (or ``pairs``) records. ``demonstrations``: exported
    ``demonstrations`` records for the final mean-0 shift; with ``normalize_to_demonstrations``
    they are required (None or none usable is a ``DataError``, before any training).
    """
    if config.normalize_to_demonstrations and demonstrations is None:
        raise DataError(
            "normalize_to_demonstrations needs demonstrations (an export's records); pass them "
            "or turn it off."
        )
    set_seed(config.seed)
    tokenizer = load_tokenizer(base_model)
    end_ids = turn_end_ids(base_model, tokenizer)
    read = Counter()
    data = build_ranking_data(
        tokenizer,
        in_half(records, config.data_half, read=read),
        max_length=config.max_length,
        test_fraction=config.test_fraction,
        seed=config.seed,
        end_ids=end_ids,
        weight_by_trust=config.weight_by_trust,
    )
    if not data.train:
        # Records read but none in the half: the filters did choose some, the half none.
        reason = (
            none_in_half(read["records"], config.data_half)
            if read["records"] and not data.stats
            else data.summary()
        )
        raise DataError(f"No usable ranking in the training split ({reason}).")
    setup = RunSetup(config, output_dir, checkpoint_dir, resume, callback)
    setup.log(f"data: {data.describe()}")
    if not data.test:
        setup.log("no held-out rankings: accuracy/eval will not be reported")
    model = apply_lora(build_reward_model(base_model, tokenizer), config, task="reward")
    scorer = RewardScorer(model)
    result, scorer, accelerator = fit(
        task=RewardTask(config),
        module=scorer,
        data=data,
        collate=RankingCollator(pad_id=tokenizer.pad_token_id),
        setup=setup,
    )
    output_dir = Path(output_dir)
    extra_metrics: dict = {}
    if accelerator.is_main_process:
        # Merged first: the shift below lands in the weights that are saved and served.
        scorer.model, lora = merge_lora(scorer.model, output_dir)
        if lora is not None:
            extra_metrics["lora"] = lora
        if config.normalize_to_demonstrations:
            normalized = normalize_to_demonstrations(
                scorer, tokenizer, demonstrations, config, end_ids=end_ids
            )
            extra_metrics.update(normalized)
            setup.log(f"normalisation: {normalized}")
        extra_metrics["data_half"] = config.data_half
    # Saved to pad on the right: stock GPT-2 counts positions from the padded edge, so a
    # left-padded batch would score differently from the app (and from the same text unpadded).
    tokenizer.padding_side = "right"
    run = finish_run(
        scorer.model, tokenizer, setup, data, result, accelerator, extra_metrics=extra_metrics
    )
    if accelerator.is_main_process:
        # A reward model saves no generation config of its own; this one keeps the end-of-turn
        # ids it was trained to read its score at, so that whoever scores with it
        # (``turn_end_ids`` on its directory) cuts a conversation where training did.
        GenerationConfig(eos_token_id=end_ids).save_pretrained(output_dir)
    return run
