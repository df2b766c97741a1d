"""Prompts -> sampled replies -> log-probs, values and reward scores, in batches.

What PPO, its evaluation and the head-to-head comparison of two policies share. Prompts are
left-padded (so every row's next token comes at the same column); positions are counted from
each row's first real token, so padding shifts nothing. Replies are sampled from the full
distribution at ``temperature`` (no top-k / top-p), and every log-prob is computed at that same
temperature: the KL to the reference is then an honest estimate of the sampling policy's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from sampler.training.data import SplitData
from sampler.training.model import position_ids_from_mask
from sampler.training.records import prompt_key, prompt_prefixes, record_split

# ---- prompts ----------------------------------------------------------------------------------


def encode_prompt(tokenizer, messages: list[dict], *, max_length: int) -> list[int]:
    """The prompt as the sampler renders it (chat template + assistant header), its end kept."""
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(encoded["input_ids"])[-max_length:]


@dataclass
class Prompt:
    messages: list[dict]
    input_ids: list[int]


def build_prompt_data(
    tokenizer, records: Iterable[dict], *, max_length: int, test_fraction: float, seed: int
) -> SplitData:
    """Distinct prompts by split; the split is the record's own (by conversation) when it has
    one, so a held-out conversation's prompts never reach training."""
    data = SplitData()
    seen: set[str] = set()
    for record in records:
        data.stats["records"] += 1
        split = record_split(record, test_fraction=test_fraction, seed=seed)
        for messages in prompt_prefixes(record):
            key = prompt_key(messages)
            if key in seen:
                data.stats["duplicates"] += 1
                continue
            seen.add(key)
            ids = encode_prompt(tokenizer, messages, max_length=max_length)
            getattr(data, split).append(Prompt(messages=messages, input_ids=ids))
            data.stats[f"prompts/{split}"] += 1
    return data


def pad_left(sequences: list[list[int]], *, pad_id: int, device=None):
    """(ids, attention_mask), padded on the left."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            ids[row, width - len(sequence) :] = torch.tensor(sequence, dtype=torch.long)
            mask[row, width - len(sequence) :] = 1
    return ids.to(device), mask.to(device)


# ---- sampling ---------------------------------------------------------------------------------


def response_mask_and_ends(
    tokens: torch.Tensor, end_token_ids: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, has_end) of sampled replies (B, R): the mask covers each reply up to and including
    its first end-of-turn token (everything when it has none)."""
    is_end = torch.isin(tokens, torch.tensor(end_token_ids, device=tokens.device))
    # Ends seen strictly before each position: a position is in the reply while that is zero.
    ends_before = is_end.long().cumsum(-1) - is_end.long()
    return (ends_before == 0).long(), is_end.any(-1)


@torch.no_grad()
def sample_replies(
    model: nn.Module,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    end_token_ids: list[int],
    pad_token_id: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Replies (B, R) sampled from the full distribution at ``temperature``; rows that ended
    their turn are filled with ``pad_token_id`` until every row ended or R = max_new_tokens."""
    mask = query_mask.clone()
    output = model(
        input_ids=query_ids,
        attention_mask=mask,
        position_ids=position_ids_from_mask(mask),
        use_cache=True,
    )
    next_position = mask.sum(-1, keepdim=True)
    end_ids = torch.tensor(end_token_ids, device=query_ids.device)
    finished = torch.zeros(query_ids.size(0), dtype=torch.bool, device=query_ids.device)
    tokens = []
    for step in range(max_new_tokens):
        probabilities = torch.softmax(output.logits[:, -1].float() / temperature, dim=-1)
        choice = torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)
        choice = torch.where(finished, torch.full_like(choice, pad_token_id), choice)
        tokens.append(choice)
        finished = finished | torch.isin(choice, end_ids)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        # Finished rows keep stepping (their outputs are ignored); their pads are masked out.
        mask = torch.cat([mask, (~finished).long().unsqueeze(-1)], dim=-1)
        output = model(
            input_ids=choice.unsqueeze(-1),
            attention_mask=mask,
            position_ids=next_position,
            past_key_values=output.past_key_values,
            use_cache=True,
        )
        next_position = next_position + 1
    return torch.stack(tokens, dim=-1)


# ---- scoring ----------------------------------------------------------------------------------


def output_embeddings(model: nn.Module) -> nn.Module:
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no language-model head.")
    return head


def forward_logits(
    model: nn.Module, *, keep: int, with_hidden: bool = False, **inputs
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits of the last ``keep`` positions, the hidden states the head read there).

    The model's own forward, so whatever it does after its head (Gemma's logit softcapping,
    logit scaling) is in the logits; ``logits_to_keep`` spares the other positions' (T, V)
    logits. The hidden states are the head's input, caught on its way in: exactly what the
    logits were computed from, whatever the architecture's final norm is called."""
    captured: dict[str, torch.Tensor] = {}
    handle = None
    if with_hidden:
        handle = output_embeddings(model).register_forward_pre_hook(
            lambda module, args: captured.__setitem__("hidden", args[0])
        )
    try:
        logits = model(**inputs, logits_to_keep=keep).logits
    finally:
        if handle is not None:
            handle.remove()
    logits = logits[:, -keep:]
    hidden = captured.get("hidden")
    return logits, (hidden[:, -keep:] if hidden is not None else None)


def response_logits(
    model: nn.Module,
    sequence: torch.Tensor,
    mask: torch.Tensor,
    context_length: int,
    *,
    with_hidden: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (B, R, V) at the positions that predict the reply tokens (and their hidden
    states (B, R, H) when asked): position t of the reply is predicted from position
    ``context_length - 1 + t``."""
    reply_length = sequence.size(1) - context_length
    logits, hidden = forward_logits(
        model,
        keep=reply_length + 1,
        with_hidden=with_hidden,
        input_ids=sequence,
        attention_mask=mask,
        position_ids=position_ids_from_mask(mask),
        use_cache=False,
    )
    return logits[:, :-1], (hidden[:, :-1] if hidden is not None else None)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float):
    """Log-probs (B, R) of ``tokens`` under ``logits`` (B, R, V) at ``temperature``."""
    scaled = logits.float() / temperature
    return torch.log_softmax(scaled, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def token_entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Entropy (B, R) of the sampling distribution at each reply position."""
    scaled = logits.float() / temperature
    probabilities = torch.softmax(scaled, dim=-1)
    return torch.logsumexp(scaled, dim=-1) - (probabilities * scaled).sum(-1)


@torch.no_grad()
def reply_logprobs(
    model: nn.Module,
    sequence: torch.Tensor,
    mask: torch.Tensor,
    context_length: int,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs, entropy), both (B, R), of the reply part of ``sequence``."""
    logits, _ = response_logits(model, sequence, mask, context_length)
    tokens = sequence[:, context_length:]
    return token_logprobs(logits, tokens, temperature), token_entropy(logits, temperature)


@torch.no_grad()
def reward_scores(scorer: nn.Module, sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) scores read at each row's last attended token: the reply's end-of-turn token, or its
    last token when it never ended (never a pad after it)."""
    return scorer(sequence, mask).float()


def check_same_tokenizer(policy_tokenizer, reward_tokenizer) -> None:
    """Token ids go from the policy to the reward model unchanged: they must mean the same."""
    if policy_tokenizer.get_vocab() != reward_tokenizer.get_vocab():
        raise ValueError(
            "The reward model's tokenizer differs from the policy's; train the reward model from "
            "a version of this policy (it shares its tokenizer)."
        )


# ---- sample and score, for evaluations ----------------------------------------------------------


@dataclass
class ScoredSamples:
    """One sampled reply per prompt, with what judging it needs; tensors are (N,) on the CPU."""

    texts: list[str]
    scores: torch.Tensor
    lengths: torch.Tensor
    has_end: torch.Tensor
    # Summed k1 KL of each reply to the reference (None without a reference).
    kl: torch.Tensor | None = None

    def summary(self, prefix: str) -> dict[str, float]:
        metrics = {
            f"{prefix}/scores": self.scores.mean().item(),
            f"{prefix}/length": self.lengths.float().mean().item(),
            f"{prefix}/eos_rate": self.has_end.float().mean().item(),
        }
        if self.kl is not None:
            metrics[f"{prefix}/kl"] = self.kl.mean().item()
        return metrics


@torch.no_grad()
def sample_and_score(
    policy: nn.Module,
    tokenizer,
    prompts: list[list[int]],
    *,
    scorer: nn.Module,
    reference: nn.Module | None = None,
    max_new_tokens: int,
    temperature: float,
    end_token_ids: list[int],
    seed: int,
    batch_size: int = 32,
) -> ScoredSamples:
    """Sample one reply per prompt (seeded) and score it with ``scorer``; optionally its KL to
    ``reference``. Rows are decoded without the end-of-turn token."""
    device = next(policy.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    pad_id = tokenizer.pad_token_id
    texts, scores, lengths, ends, kls = [], [], [], [], []
    for start in range(0, len(prompts), batch_size):
        query_ids, query_mask = pad_left(
            prompts[start : start + batch_size], pad_id=pad_id, device=device
        )
        replies = sample_replies(
            policy,
            query_ids,
            query_mask,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            end_token_ids=end_token_ids,
            pad_token_id=pad_id,
            generator=generator,
        )
        reply_mask, has_end = response_mask_and_ends(replies, end_token_ids)
        sequence = torch.cat([query_ids, replies], dim=-1)
        mask = torch.cat([query_mask, reply_mask], dim=-1)
        scores.append(reward_scores(scorer, sequence, mask).cpu())
        lengths.append(reply_mask.sum(-1).cpu())
        ends.append(has_end.cpu())
        if reference is not None:
            context = query_ids.size(1)
            logprobs, _ = reply_logprobs(policy, sequence, mask, context, temperature)
            reference_logprobs, _ = reply_logprobs(reference, sequence, mask, context, temperature)
            kls.append(((logprobs - reference_logprobs) * reply_mask).sum(-1).cpu())
        for row, length in zip(replies.tolist(), reply_mask.sum(-1).tolist(), strict=True):
            kept = row[: int(length)]
            if kept and kept[-1] in end_token_ids:
                kept = kept[:-1]
            texts.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
    return ScoredSamples(
        texts=texts,
        scores=torch.cat(scores),
        lengths=torch.cat(lengths),
        has_end=torch.cat(ends),
        kl=torch.cat(kls) if reference is not None else None,
    )
