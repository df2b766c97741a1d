"""Sampling completions from a causal LM: pure torch/transformers, no Django.

One call samples all ``n`` completions of a prefix in one batched ``generate`` (the prefix is
encoded once and expanded with ``num_return_sequences``), never ``n`` sequential calls.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from sampler.generation import prompts
from sampler.generation.params import GenerationParams
from sampler.generation.prompts import PreparedPrompt


@dataclass
class Completion:
    text: str
    token_count: int
    finished: bool  # True when the model ended its turn, False when it hit max_new_tokens
    logprob_sum: float


@dataclass
class LoadedModel:
    path: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    end_token_ids: list[int]
    pad_token_id: int

    @property
    def context_length(self) -> int:
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return 2048


def pick_device(preference: str = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 when present, else CPU in float32 (bf16 matmuls are slow on most CPUs)."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu"), torch.float32
    return torch.device(preference if preference != "auto" else "cuda"), torch.bfloat16


def _end_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.append(configured)
    elif isinstance(configured, list):
        ids.extend(configured)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("The model has no end-of-turn (eos) token: generation could never stop.")
    return ids


def load_model(path: str | Path, *, device: str = "auto") -> LoadedModel:
    torch_device, dtype = pick_device(device)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.chat_template is None:
        raise ValueError(f"The tokenizer at {path} has no chat template.")
    # Prefixes of different lengths share a batch only with left padding.
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    model.to(torch_device)
    model.eval()
    end_ids = _end_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_ids[0]
    return LoadedModel(str(path), model, tokenizer, torch_device, end_ids, pad_id)


def prepare_prompt(
    loaded: LoadedModel, messages: list[dict], *, role: str, max_new_tokens: int
) -> PreparedPrompt:
    """Render the prefix with the model's chat template, cut to fit its context."""
    return prompts.prepare_prompt(
        loaded.tokenizer,
        messages,
        context_length=loaded.context_length,
        role=role,
        max_new_tokens=max_new_tokens,
    )


_generate_lock = threading.Lock()


@torch.inference_mode()
def sample_completions(
    loaded: LoadedModel,
    messages: list[dict],
    *,
    n: int,
    params: GenerationParams,
    seed: int,
    role: str = "assistant",
) -> tuple[list[Completion], PreparedPrompt]:
    """Sample ``n`` completions of one prefix in one batched call; seeded, so reproducible."""
    prepared = prepare_prompt(loaded, messages, role=role, max_new_tokens=params.max_new_tokens)
    with _generate_lock:
        generator = torch.Generator(device=loaded.device).manual_seed(seed)
        rows = sample_rows(
            loaded.model,
            prepared.input_ids,
            n=n,
            params=params,
            end_token_ids=loaded.end_token_ids,
            generator=generator,
        )
    return [_completion(loaded, tokens, logprobs) for tokens, logprobs in rows], prepared


def filter_logits(logits: torch.Tensor, *, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k then nucleus (top-p) filtering of [rows, vocab] logits; the best token always stays."""
    if 0 < top_k < logits.shape[-1]:
        threshold = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probabilities = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p.
        drop = (torch.cumsum(probabilities, dim=-1) - probabilities) > top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


# Nucleus sampling looks at the most likely tokens first; only a row whose top tokens do not
# reach top_p falls back to sorting its whole vocabulary (a full sort per row and step was the
# largest cost after the model's own forward pass on CPU).
NUCLEUS_CANDIDATES = 64


def _keep_nucleus(probabilities: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tokens of best-first ``probabilities`` that the nucleus drops (as filter_logits)."""
    if top_p >= 1.0:
        return probabilities
    # Mass of the better tokens, over the whole (filtered) vocabulary as filter_logits sees it.
    drop = (torch.cumsum(probabilities, dim=-1) - probabilities) > top_p
    return probabilities.masked_fill(drop, 0.0)


def sampling_distribution(
    scaled: torch.Tensor, *, top_k: int, top_p: float, log_total: torch.Tensor | None = None
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The distribution ``filter_logits`` defines, over a few candidate tokens where it can be.

    Returns ``(token_ids, probabilities)``: best-first candidate ids [rows, m] and their
    unnormalised probabilities (zero where filtered out), or ``(None, probabilities)`` over the
    whole vocabulary. Exact: a row falls back to its whole sorted vocabulary when its candidates'
    mass does not pass ``top_p``. ``log_total``: ``logsumexp(scaled)`` when the caller has it.
    """
    vocabulary = scaled.shape[-1]
    if 0 < top_k < vocabulary:
        values, ids = torch.topk(scaled, top_k, dim=-1)
        if bool(((scaled >= values[:, -1:]).sum(dim=-1) > top_k).any()):
            # Ties at the k-th value (common with bf16 logits): filter_logits keeps them all.
            return None, torch.softmax(filter_logits(scaled, top_k=top_k, top_p=top_p), dim=-1)
        return ids, _keep_nucleus(torch.softmax(values, dim=-1), top_p)
    if top_p >= 1.0:
        return None, torch.softmax(scaled, dim=-1)
    if log_total is None:
        log_total = torch.logsumexp(scaled, dim=-1, keepdim=True)
    width = min(NUCLEUS_CANDIDATES, vocabulary)
    values, ids = torch.topk(scaled, width, dim=-1)
    probabilities = torch.exp(values - log_total)
    short = probabilities.sum(dim=-1) <= top_p
    if bool(short.any()):
        # Rare: a flat distribution. Widen every row to the full sorted vocabulary.
        values, ids = torch.sort(scaled, dim=-1, descending=True)
        probabilities = torch.softmax(values, dim=-1)
    return ids, _keep_nucleus(probabilities, top_p)


def sample_next_tokens(
    scaled: torch.Tensor, *, top_k: int, top_p: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row of temperature-scaled logits, with top-k then nucleus filtering, and
    its log-prob under the unfiltered distribution at that temperature: ([rows], [rows])."""
    log_total = torch.logsumexp(scaled, dim=-1, keepdim=True)
    ids, probabilities = sampling_distribution(
        scaled, top_k=top_k, top_p=top_p, log_total=log_total
    )
    picked = torch.multinomial(probabilities, 1, generator=generator)
    tokens = picked if ids is None else ids.gather(-1, picked)
    return tokens.squeeze(-1), (scaled.gather(-1, tokens) - log_total).squeeze(-1)


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty on tokens already in the prompt or the completion."""
    if penalty == 1.0:
        return logits
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


class _RunningRows:
    """What each row has drawn so far, and which rows still sample (``active``: row numbers,
    in the order the batch and its key/value cache hold them)."""

    def __init__(self, count: int, end_token_ids: list[int], device: torch.device) -> None:
        self.active = torch.arange(count, device=device)
        self.tokens: list[list[int]] = [[] for _ in range(count)]
        self.logprobs: list[list[float]] = [[] for _ in range(count)]
        self._end_ids = torch.tensor(end_token_ids, device=device)

    def advance(
        self, choice: torch.Tensor, chosen_logprobs: torch.Tensor, cache, *, last: bool
    ) -> torch.Tensor | None:
        """Record one token and its log-prob per active row. Rows that ended their turn leave
        ``active`` and ``cache``; returns the positions of the rows that go on among those that
        sampled this step, or None when sampling is over (``last`` step, or every row ended)."""
        for row, token, logprob in zip(
            self.active.tolist(), choice.tolist(), chosen_logprobs.tolist(), strict=True
        ):
            self.tokens[row].append(token)
            self.logprobs[row].append(logprob)
        keep = ~torch.isin(choice, self._end_ids)
        if last or not bool(keep.any()):
            return None
        kept = keep.nonzero().squeeze(-1)
        if len(kept) < len(keep):
            cache.batch_select_indices(kept)
            self.active = self.active[kept]
        return kept


def sample_rows(
    model: PreTrainedModel,
    prompt_ids: list[int],
    *,
    n: int,
    params: GenerationParams,
    end_token_ids: list[int],
    generator: torch.Generator,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` sampled continuations of one prompt: (tokens, log-probs) per row.

    All rows share the prompt, so it is encoded once and its key/value cache copied ``n``
    times; rows stay aligned (one token per step, no padding), and a row that ends its turn
    leaves the batch, so no step is spent on finished rows. Log-probs are of the sampled
    tokens under the model at the sampling temperature, before top-k/top-p filtering.
    """
    device = model.device
    prompt = torch.tensor([prompt_ids], device=device)
    output = model(input_ids=prompt, use_cache=True)
    cache = output.past_key_values
    cache.batch_repeat_interleave(n)
    logits = output.logits[:, -1, :].float().expand(n, -1)
    vocabulary = logits.shape[-1]
    penalize = params.repetition_penalty != 1.0
    seen = torch.zeros(n if penalize else 0, vocabulary, dtype=torch.bool, device=device)
    if penalize:
        seen[:, prompt[0][prompt[0] < vocabulary]] = True
    running = _RunningRows(n, end_token_ids, device)
    for step in range(params.max_new_tokens):
        if penalize:
            logits = penalize_repeats(logits, seen[running.active], params.repetition_penalty)
        choice, chosen_logprobs = sample_next_tokens(
            logits / params.temperature, top_k=params.top_k, top_p=params.top_p, generator=generator
        )
        last = step == params.max_new_tokens - 1
        kept = running.advance(choice, chosen_logprobs, cache, last=last)
        if kept is None:
            break
        choice = choice[kept]
        if penalize:
            seen[running.active, choice] = True
        output = model(input_ids=choice.unsqueeze(-1), past_key_values=cache, use_cache=True)
        cache = output.past_key_values
        logits = output.logits[:, -1, :].float()
    return [
        (torch.tensor(row_tokens, dtype=torch.long), torch.tensor(row_logprobs))
        for row_tokens, row_logprobs in zip(running.tokens, running.logprobs, strict=True)
    ]


@dataclass(frozen=True)
class RowsRequest:
    """One prompt's share of a batch: ``n`` rows sampled with its own seeded generator."""

    prompt_ids: list[int]
    n: int
    generator: torch.Generator


def sample_rows_many(
    model: PreTrainedModel,
    requests: list[RowsRequest],
    *,
    params: GenerationParams,
    end_token_ids: list[int],
    pad_token_id: int,
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Several prompts' continuations in one batch: (tokens, log-probs) per row, per request.

    Prompts are left-padded (positions counted from each row's first real token); every step
    is one forward pass over the rows still running. Each request draws its tokens with its own
    generator over its own running rows, as ``sample_rows`` does for one prompt, so a request's
    draws do not depend on what else is in the batch (its logits may differ from a solo run's
    in the last bits, where padding changes the order of a sum).
    """
    device = model.device
    owners = [index for index, request in enumerate(requests) for _ in range(request.n)]
    prompts_by_row = [requests[owner].prompt_ids for owner in owners]
    width = max(len(ids) for ids in prompts_by_row)
    rows = len(owners)
    input_ids = torch.full((rows, width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.long)
    for row, ids in enumerate(prompts_by_row):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[row, width - len(ids) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    output = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache = output.past_key_values
    logits = output.logits[:, -1, :].float()
    next_position = mask.sum(-1, keepdim=True)
    vocabulary = logits.shape[-1]
    penalize = params.repetition_penalty != 1.0
    seen = torch.zeros(rows if penalize else 0, vocabulary, dtype=torch.bool, device=device)
    if penalize:
        for row, ids in enumerate(prompts_by_row):
            kept = [token for token in ids if token < vocabulary]
            seen[row, kept] = True
    owner_of = torch.tensor(owners, device=device)
    running = _RunningRows(rows, end_token_ids, device)
    for step in range(params.max_new_tokens):
        if penalize:
            logits = penalize_repeats(logits, seen[running.active], params.repetition_penalty)
        scaled = logits / params.temperature
        choice = torch.empty(len(running.active), dtype=torch.long, device=device)
        chosen_logprobs = torch.empty(len(running.active), device=device)
        active_owners = owner_of[running.active]
        for owner in torch.unique(active_owners).tolist():
            slots = (active_owners == owner).nonzero().squeeze(-1)
            picked, picked_logprobs = sample_next_tokens(
                scaled[slots],
                top_k=params.top_k,
                top_p=params.top_p,
                generator=requests[owner].generator,
            )
            choice[slots], chosen_logprobs[slots] = picked, picked_logprobs
        last = step == params.max_new_tokens - 1
        kept = running.advance(choice, chosen_logprobs, cache, last=last)
        if kept is None:
            break
        choice, mask, next_position = choice[kept], mask[kept], next_position[kept]
        if penalize:
            seen[running.active, choice] = True
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        output = model(
            input_ids=choice.unsqueeze(-1),
            attention_mask=mask,
            position_ids=next_position,
            past_key_values=cache,
            use_cache=True,
        )
        cache = output.past_key_values
        next_position = next_position + 1
        logits = output.logits[:, -1, :].float()
    results: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in requests]
    for row, owner in enumerate(owners):
        results[owner].append(
            (
                torch.tensor(running.tokens[row], dtype=torch.long),
                torch.tensor(running.logprobs[row]),
            )
        )
    return results


@torch.inference_mode()
def sample_completions_many(
    loaded: LoadedModel,
    jobs: list[tuple[list[dict], int, int, str]],
    *,
    params: GenerationParams,
) -> list[tuple[list[Completion], PreparedPrompt]]:
    """``sample_completions`` for several prefixes with the same parameters, in one batch:
    ``jobs`` holds (messages, n, seed, role) each."""
    prepared = [
        prepare_prompt(loaded, messages, role=role, max_new_tokens=params.max_new_tokens)
        for messages, _n, _seed, role in jobs
    ]
    with _generate_lock:
        requests = [
            RowsRequest(
                prompt_ids=prompt.input_ids,
                n=n,
                generator=torch.Generator(device=loaded.device).manual_seed(seed),
            )
            for prompt, (_messages, n, seed, _role) in zip(prepared, jobs, strict=True)
        ]
        rows = sample_rows_many(
            loaded.model,
            requests,
            params=params,
            end_token_ids=loaded.end_token_ids,
            pad_token_id=loaded.pad_token_id,
        )
    return [
        ([_completion(loaded, tokens, logprobs) for tokens, logprobs in job_rows], prompt)
        for job_rows, prompt in zip(rows, prepared, strict=True)
    ]


def _completion(loaded: LoadedModel, tokens: torch.Tensor, logprobs: torch.Tensor) -> Completion:
    is_end = torch.isin(tokens, torch.tensor(loaded.end_token_ids))
    end_positions = is_end.nonzero()
    finished = bool(len(end_positions))
    # Tokens up to and including the end-of-turn token.
    length = int(end_positions[0]) + 1 if finished else len(tokens)
    text_tokens = tokens[: length - 1] if finished else tokens[:length]
    text = loaded.tokenizer.decode(text_tokens.tolist(), skip_special_tokens=True).strip()
    return Completion(
        text=text,
        token_count=length,
        finished=finished,
        logprob_sum=float(logprobs[:length].sum()),
    )


class ModelCache:
    """Keeps one model loaded per worker process; loading another replaces it."""

    def __init__(self) -> None:
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, path: str, *, device: str = "auto") -> LoadedModel:
        with self._lock:
            if self._loaded is None or self._loaded.path != str(path):
                self._loaded = None  # free the old weights before loading the new ones
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                self._loaded = load_model(path, device=device)
                self.loads += 1
            return self._loaded

    @property
    def path(self) -> str | None:
        return self._loaded.path if self._loaded is not None else None

    def clear(self) -> None:
        with self._lock:
            self._loaded = None


model_cache = ModelCache()
