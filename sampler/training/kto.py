"""``train_kto``: single replies marked desirable or undesirable -> a policy (KTO).

Records are TRL's unpaired form: ``prompt`` (messages, or a string: the user's turn),
``completion`` (the reply: text or an assistant message list), ``label`` (true: desirable),
plus what the app adds: ``source`` (thumbs_up, thumbs_down, reports, flags) and
``model_version`` (the version that wrote the reply, kept on each example and counted in the
run's data).

Per step (Ethayarajh et al. 2024, as TRL's KTOTrainer): r = log pi(y|x) - log pi_ref(y|x) for
each example; the reference point z0 is the batch's KL estimate, the mean of the same ratio
over mismatched pairs (each example's reply after the next example's prompt; under several
processes, over every process's pairs), clamped at 0 and not differentiated; loss
lambda_D (1 - sigmoid(beta (r - z0))) for desirable examples and
lambda_U (1 - sigmoid(beta (z0 - r))) for undesirable ones. lambda_D follows from the counts
(``losses.kto_weights``) unless set. Every prompt is read once per step for both its own and
its mismatched reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from sampler.training.config import KTOConfig
from sampler.training.data import (
    DataError,
    SplitData,
    completion_ids,
    fit_prompt_and_completion,
    prompt_ids,
)
from sampler.training.loop import (
    ProgressCallback,
    RunResult,
    RunSetup,
    finish_run,
    fit,
    load_examples,
)
from sampler.training.losses import kto_loss, kto_weights
from sampler.training.preference import (
    PromptCompletionCollator,
    PromptCompletions,
    ReferenceTask,
    policy_and_reference,
)
from sampler.training.records import kto_label_problem, prompt_messages, record_split


def _completion_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(
            str(message.get("content", ""))
            for message in value
            if isinstance(message, dict) and message.get("role") == "assistant"
        )
    raise DataError("A KTO record's `completion` is text or a list of assistant messages.")


def kto_example(
    tokenizer, record: dict, *, max_length: int, end_ids: list[int]
) -> PromptCompletions:
    try:
        prompt = prompt_messages(record["prompt"])
        label = record["label"]
        text = _completion_text(record["completion"])
    except (KeyError, TypeError) as error:
        raise DataError(
            "A KTO record needs `prompt` (messages), `completion` and `label`."
        ) from error
    if problem := kto_label_problem(record):
        raise DataError(problem)
    prompt_tokens = prompt_ids(tokenizer, prompt)
    completion = completion_ids(
        tokenizer, prompt, text, end_ids=end_ids, prompt_tokens=prompt_tokens
    )
    prompt_tokens, completion = fit_prompt_and_completion(
        prompt_tokens, completion, max_length=max_length
    )
    return PromptCompletions(
        prompt=prompt_tokens,
        completions=[completion],
        desirable=[label],
        versions=[record.get("model_version")],
    )


def build_kto_data(
    tokenizer,
    records: Iterable[dict],
    *,
    max_length: int,
    test_fraction: float,
    seed: int,
    end_ids: list[int],
    sources: tuple[str, ...] = (),
) -> SplitData:
    """Examples by split; records whose ``source`` is not among ``sources`` (when both are
    given) are left out."""
    data = SplitData()
    for record in records:
        data.stats["records"] += 1
        source = record.get("source")
        if sources and source is not None and source not in sources:
            data.stats["skipped/source"] += 1
            continue
        example = kto_example(tokenizer, record, max_length=max_length, end_ids=end_ids)
        split = record_split(record, test_fraction=test_fraction, seed=seed)
        getattr(data, split).append(example)
        kind = "desirable" if example.desirable[0] else "undesirable"
        data.stats[f"{kind}/{split}"] += 1
        if source:
            data.stats[f"source/{source}"] += 1
        data.stats[f"version/{example.versions[0] or 'unknown'}"] += 1
    return data


def batch_flags(examples: list[PromptCompletions], device) -> torch.Tensor:
    return torch.tensor([e.desirable[0] for e in examples], dtype=torch.bool, device=device)


class KTOTask(ReferenceTask):
    def __init__(self, config: KTOConfig, reference: nn.Module, weights: tuple[float, float]):
        super().__init__(config, reference)
        self.desirable_weight, self.undesirable_weight = weights
        self.last_reference_point = torch.zeros(())
        self.accelerator: Accelerator | None = None

    def place_reference(self, accelerator: Accelerator) -> None:
        super().place_reference(accelerator)
        # z0 is estimated over every process's mismatched pairs (as TRL gathers it).
        self.accelerator = accelerator

    def parts(self, module: nn.Module, batch: dict, *, training: bool = True):
        """(log-ratios of the examples (B,), the detached KL reference point z0, flags); an
        estimate from held-out data (``training`` false) is not kept for later steps. Under
        several processes each calls this once per batch, and all get the same z0: the mean
        over every process's mismatched pairs."""
        ratios = self.logratios(module, batch)
        count = len(batch["examples"])
        # The mismatched half (each reply after the next prompt) only estimates the KL.
        mismatched = ratios[count:].detach().double()
        estimate = torch.stack([mismatched.sum(), mismatched.new_tensor(float(len(mismatched)))])
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            estimate = self.accelerator.reduce(estimate, reduction="sum")
        total, pairs = estimate.tolist()
        if pairs:
            reference_point = ratios.new_tensor(max(0.0, total / pairs)).detach()
            if training:
                self.last_reference_point = reference_point
        else:
            # One example (an epoch's last batch) on every process: no other prompt to pair its
            # reply with; the last estimate stands (0 before any: the policy starts as the
            # reference).
            reference_point = self.last_reference_point.to(ratios.device)
        return ratios[:count], reference_point, batch_flags(batch["examples"], ratios.device)

    def losses(self, ratios, reference_point, desirable):
        return kto_loss(
            ratios,
            desirable,
            reference_point,
            beta=self.config.beta,
            desirable_weight=self.desirable_weight,
            undesirable_weight=self.undesirable_weight,
        )

    def train_loss(self, module: nn.Module, batch: dict):
        ratios, reference_point, desirable = self.parts(module, batch)
        loss = self.losses(ratios, reference_point, desirable).mean()
        rewards = self.config.beta * ratios.detach()
        zero = rewards.new_zeros(())
        metrics = {
            "kl": reference_point,
            "rewards/chosen": rewards[desirable].mean() if desirable.any() else zero,
            "rewards/rejected": rewards[~desirable].mean() if (~desirable).any() else zero,
        }
        return loss, metrics

    @torch.no_grad()
    def evaluate(self, module: nn.Module, loader, accelerator: Accelerator) -> dict[str, float]:
        """Held-out loss, KL and mean implicit rewards of each kind, and ``accuracy/eval``:
        the share of examples on the right side of the reference point; over every held-out
        example once (not the ones Accelerate repeats to even out shards)."""
        module.eval()
        totals = torch.zeros(7, dtype=torch.float64)
        for batch in loader:
            ratios, reference_point, desirable = self.parts(module, batch, training=False)
            losses = self.losses(ratios, reference_point, desirable)
            right = torch.where(desirable, ratios > reference_point, ratios < reference_point)
            rewards = self.config.beta * ratios
            flags = desirable.to(rewards.dtype)
            per_example = torch.stack(
                [
                    losses.to(rewards.dtype),
                    torch.ones_like(rewards),
                    reference_point.to(rewards.dtype).expand_as(rewards),
                    rewards * flags,
                    flags,
                    rewards * (1 - flags),
                    right.to(rewards.dtype),
                ],
                dim=1,
            )
            totals += accelerator.gather_for_metrics(per_example).double().sum(0).cpu()
        loss, count, kl, chosen, desirable_count, rejected, right = totals.tolist()
        undesirable_count = count - desirable_count
        return {
            "loss/eval": loss / max(1.0, count),
            "kl/eval": kl / max(1.0, count),
            "rewards/chosen/eval": chosen / max(1.0, desirable_count),
            "rewards/rejected/eval": rejected / max(1.0, undesirable_count),
            "accuracy/eval": right / max(1.0, count),
        }


def train_kto(
    *,
    config: KTOConfig,
    records: Iterable[dict],
    base_model: str | Path,
    output_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    callback: ProgressCallback | None = None,
) -> RunResult:
    """KTO from the policy at ``base_model`` (also the frozen reference); the new policy is
    saved to ``output_dir``."""
    tokenizer, data = load_examples(
        config,
        base_model,
        build_kto_data,
        records,
        with_turn_ends=True,
        sources=config.source_names,
    )
    if len(data.train) < 2:
        raise DataError(f"KTO needs at least two training examples ({data.summary()}).")
    desirable = sum(e.desirable[0] for e in data.train)
    weights = kto_weights(
        desirable,
        len(data.train) - desirable,
        ratio=config.desirable_ratio,
        undesirable_weight=config.undesirable_weight,
    )
    if config.desirable_weight is not None:
        weights = (config.desirable_weight, weights[1])
    setup = RunSetup(config, output_dir, checkpoint_dir, resume, callback)
    setup.log(f"data: {data.describe()}; lambda_D {weights[0]:.3f}, lambda_U {weights[1]:.3f}")
    if desirable in {0, len(data.train)}:
        missing = "undesirable" if desirable else "desirable"
        setup.log(
            f"No {missing} example in the training split: the policy learns only from the "
            "other kind, and both weights are lambda_U."
        )
    module, reference = policy_and_reference(base_model, config)
    task = KTOTask(config, reference, weights)
    result, module, accelerator = fit(
        task=task,
        module=module,
        data=data,
        collate=PromptCompletionCollator(
            pad_id=tokenizer.pad_token_id, pair_with_next=True, max_length=config.max_length
        ),
        setup=setup,
        # The KL estimate puts each reply after the next example's prompt: one alone has none.
        eval_examples=data.test if len(data.test) >= 2 else [],
        before_train=task.place_reference,
    )
    weight_metrics = {"desirable_weight": weights[0], "undesirable_weight": weights[1]}
    return finish_run(
        module.model, tokenizer, setup, data, result, accelerator, extra_metrics=weight_metrics
    )
