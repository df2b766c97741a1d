"""What DPO and KTO share: prompts with several completions, and their log-probs from one pass
over each prompt.

A batch holds B prompts and N completions (each belongs to one prompt, ``owners``). The policy
reads each prompt once (left-padded, with its KV cache kept), the cache is copied to every
completion of that prompt, and the completions are read on top of it: K candidates of a ranking
cost one prompt pass plus K completion passes, not K full sequences. Gradients flow through
the shared cache into the prompt pass, so the result (and its gradient) equals K full forwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from sampler.training.data import pad_right
from sampler.training.losses import sequence_logprobs
from sampler.training.model import apply_lora, load_policy, position_ids_from_mask
from sampler.training.rollout import forward_logits, pad_left


@dataclass
class PromptCompletions:
    """One prompt (token ids) and completions of it, each ending with its end-of-turn token."""

    prompt: list[int]
    completions: list[list[int]]
    # Listwise: best-first groups of indices into ``completions`` (DPO).
    groups: list[list[int]] = field(default_factory=list)
    # One flag per completion (KTO).
    desirable: list[bool] = field(default_factory=list)
    # The model version that wrote each completion, where known (KTO keeps it per example).
    versions: list[str | None] = field(default_factory=list)
    # How much the example counts in the loss (its ranker's trust with weight_by_trust).
    weight: float = 1.0


@dataclass
class PromptCompletionCollator:
    """Prompts left-padded (B, P), completions right-padded (N, C), ``owners`` (N,) the prompt
    row of each completion. ``pair_with_next`` (KTO) adds, for each example, its completion
    after the *next* example's prompt: the mismatched pairs of KTO's KL estimate, each cut to
    ``max_length`` tokens with that prompt (none for a batch of one example: its next is
    itself)."""

    pad_id: int
    pair_with_next: bool = False
    max_length: int | None = None

    def __call__(self, examples: Sequence[PromptCompletions]) -> dict:
        prompts = [example.prompt for example in examples]
        completions, owners = [], []
        for row, example in enumerate(examples):
            completions.extend(example.completions)
            owners.extend([row] * len(example.completions))
        if self.pair_with_next and len(examples) > 1:
            for row, example in enumerate(examples):
                owner = (row + 1) % len(examples)
                room = None
                if self.max_length is not None:
                    room = max(1, self.max_length - len(examples[owner].prompt))
                completions.extend(completion[:room] for completion in example.completions)
                owners.extend([owner] * len(example.completions))
        prompt_ids_, prompt_mask = pad_left(prompts, pad_id=self.pad_id)
        completion_ids, completion_mask = pad_right(completions, pad_id=self.pad_id)
        return {
            "prompt_ids": prompt_ids_,
            "prompt_mask": prompt_mask,
            "completion_ids": completion_ids,
            "completion_mask": completion_mask,
            "owners": torch.tensor(owners, dtype=torch.long),
            "examples": list(examples),
        }


def _select_cache(cache, owners: torch.Tensor):
    """The prompt cache with one row per completion (a prompt's rows repeated, in graph)."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(owners)
        return cache
    # Legacy tuple caches: ((key, value), ...) per layer.
    return tuple(tuple(tensor[owners] for tensor in layer) for layer in cache)


def shared_prompt_logprobs(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    owners: torch.Tensor,
) -> torch.Tensor:
    """Summed log-probs (N,) of each completion after its prompt, the prompt read once.

    The prompt pass keeps only its last position's logits (they predict each completion's
    first token); completion positions continue from each prompt's real length.
    """
    prompt_out = model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=position_ids_from_mask(prompt_mask),
        use_cache=True,
        logits_to_keep=1,
    )
    first_logits = prompt_out.logits[:, -1][owners]  # (N, V)
    cache = _select_cache(prompt_out.past_key_values, owners)
    lengths = prompt_mask.sum(-1)[owners]
    width = completion_ids.size(1)
    positions = lengths.unsqueeze(-1) + torch.arange(width, device=completion_ids.device)
    # Padding after a short completion (beside a long one) would count past the model's
    # context (an index error with learned positions); no real token attends to it.
    positions = positions.masked_fill(completion_mask == 0, 0)
    mask = torch.cat([prompt_mask[owners], completion_mask], dim=-1)
    # The last completion position predicts nothing: its logits are not needed.
    logits, _ = forward_logits(
        model,
        keep=width,
        input_ids=completion_ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    )
    token_logits = torch.cat([first_logits.unsqueeze(1), logits[:, :-1]], dim=1)
    return sequence_logprobs(token_logits, completion_ids, completion_mask)


def full_sequence_logprobs(
    model: nn.Module, prompts: list[list[int]], completions: list[list[int]], *, pad_id: int
) -> torch.Tensor:
    """The same quantity from full (prompt + completion) sequences, one per completion: the
    plain way, kept to check the shared pass against and for tests."""
    sequences = [
        prompt + completion for prompt, completion in zip(prompts, completions, strict=True)
    ]
    ids, mask = pad_right(sequences, pad_id=pad_id)
    labels_mask = torch.zeros_like(mask)
    for row, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        labels_mask[row, len(prompt) : len(prompt) + len(completion)] = 1
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return sequence_logprobs(logits[:, :-1], ids[:, 1:], labels_mask[:, 1:])


class SharedPromptPolicy(nn.Module):
    """batch -> summed log-probs (N,) of its completions; a module so Accelerate wraps it.

    Dropout stays off, in training too (``train()`` keeps the model in eval mode): the policy
    and its reference must read the same text the same way, so that every log-ratio starts at
    0 as DPO and KTO assume (with dropout on one side only, each is noise, and biased)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def train(self, mode: bool = True) -> SharedPromptPolicy:
        # Gradients do not depend on the mode; only dropout (and the like) does.
        return super().train(False)

    def forward(self, batch: dict) -> torch.Tensor:
        return shared_prompt_logprobs(
            self.model,
            batch["prompt_ids"],
            batch["prompt_mask"],
            batch["completion_ids"],
            batch["completion_mask"],
            batch["owners"],
        )


def policy_and_reference(base_model, config) -> tuple[SharedPromptPolicy, SharedPromptPolicy]:
    """The policy to train (with LoRA when ``config`` asks) and its frozen reference, both read
    from ``base_model``."""
    policy = load_policy(base_model)
    reference = SharedPromptPolicy(load_policy(base_model)).eval().requires_grad_(False)
    return SharedPromptPolicy(apply_lora(policy, config)).eval(), reference


class ReferenceTask:
    """A loss on the log-ratios ``log pi(y|x) - log pi_ref(y|x)`` of a batch's completions,
    the frozen reference read on the same shared prompt passes without gradients."""

    def __init__(self, config, reference: nn.Module):
        self.config = config
        self.reference = reference
        self.autocast = contextlib.nullcontext

    def items(self, batch: dict) -> int:
        """The examples: rankings (DPO) or labelled replies (KTO); the loss is their mean."""
        return len(batch["examples"])

    def place_reference(self, accelerator) -> None:
        """``fit``'s ``before_train``: the reference goes where Accelerate puts the policy, and
        reads in the policy's mixed precision (Accelerate casts the prepared policy's forward
        only; a reference in float32 against a bf16 policy would start every log-ratio away
        from 0 by the precision's error, summed over the tokens)."""
        self.reference.to(accelerator.device)
        self.autocast = accelerator.autocast

    def logratios(self, module: nn.Module, batch: dict) -> torch.Tensor:
        policy_logps = module(batch)
        with torch.no_grad(), self.autocast():
            reference_logps = self.reference(batch)
        return policy_logps - reference_logps


def to_device(batch: dict, device) -> dict:
    return {
        key: value.to(device) if isinstance(value, torch.Tensor) else value
        for key, value in batch.items()
    }
