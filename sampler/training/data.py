"""Records (as exported) -> token ids -> padded batches.

Conversations are rendered with the tokenizer's own chat template, so training sees exactly the
text the sampler sends at inference. Sequences longer than ``max_length`` keep their *end*: the
reply that is trained (SFT) or scored (reward) is there.

Masks come from sequence lengths, never from comparing ids with the pad id: with pad == eos that
comparison would hide real end-of-turn tokens (the model would never learn to stop, and reward
scores would be read one token early).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch

from sampler.training.losses import IGNORE_INDEX, implied_pairs, tied_pairs
from sampler.training.records import (
    DataError,
    demonstration_turns,
    ranking_from_record,
    record_split,
)

# ---- tokenising -------------------------------------------------------------------------------


def _keep_end(ids: list[int], max_length: int) -> list[int]:
    return ids[-max_length:]


def conversation_ids(tokenizer, messages: list[dict]) -> list[int]:
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
    return list(encoded["input_ids"])


def default_end_ids(tokenizer) -> list[int]:
    """The end-of-turn ids when the model's generation config is not at hand: the eos."""
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def trim_to_turn_end(ids: list[int], end_ids: Sequence[int]) -> list[int]:
    """``ids`` up to and including their last end-of-turn token.

    A template may render text after the end-of-turn token (ChatML's newline after
    ``<|im_end|>``). A sampled reply stops at that token, and PPO and serving read the score
    there; reading it at the template's last token instead would score another position.
    """
    ends = set(end_ids)
    for index in range(len(ids) - 1, -1, -1):
        if ids[index] in ends:
            return ids[: index + 1]
    return ids


def reply_ids(
    tokenizer, prompt: list[dict], reply: str, *, end_ids: Sequence[int] | None = None
) -> list[int]:
    """Prompt + reply as the reward model scores it: the chat template's rendering, cut after
    the reply's end-of-turn token (what a sampled reply ends with)."""
    ids = conversation_ids(tokenizer, [*prompt, {"role": "assistant", "content": reply}])
    return trim_to_turn_end(ids, default_end_ids(tokenizer) if end_ids is None else end_ids)


def prompt_ids(tokenizer, prompt: list[dict]) -> list[int]:
    """The prompt as the sampler sends it: chat template plus the assistant header."""
    encoded = tokenizer.apply_chat_template(
        prompt, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(encoded["input_ids"])


def completion_ids(
    tokenizer,
    prompt: list[dict],
    reply: str,
    *,
    end_ids: Sequence[int] | None = None,
    prompt_tokens: list[int] | None = None,
) -> list[int]:
    """The reply's tokens after the prompt (its end-of-turn token included), as a policy that
    continues ``prompt_ids`` would produce them. Taken from the full rendering when it starts
    with the prompt's (so tokenisation is the template's own), else the reply encoded alone
    followed by the end-of-turn token."""
    end_ids = default_end_ids(tokenizer) if end_ids is None else list(end_ids)
    prompt_tokens = prompt_ids(tokenizer, prompt) if prompt_tokens is None else prompt_tokens
    full = reply_ids(tokenizer, prompt, reply, end_ids=end_ids)
    if full[: len(prompt_tokens)] == prompt_tokens and len(full) > len(prompt_tokens):
        return full[len(prompt_tokens) :]
    encoded = tokenizer(reply.strip(), add_special_tokens=False)["input_ids"]
    return list(encoded) + end_ids[:1]


def fit_prompt_and_completion(
    prompt: list[int], completion: list[int], *, max_length: int
) -> tuple[list[int], list[int]]:
    """Both within ``max_length`` tokens: the completion keeps its start (at most all but one
    token), the prompt its end (what the reply answers)."""
    completion = completion[: max_length - 1]
    return prompt[-(max_length - len(completion)) :], completion


def assistant_spans(mask: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each run of assistant tokens, in order: one per assistant turn (turns
    are separated by at least their header, which is outside the template's generation span)."""
    spans, start = [], None
    for index, flag in enumerate([*mask, 0]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            spans.append((start, index))
            start = None
    return spans


def sft_example(
    tokenizer,
    messages: list[dict],
    *,
    max_length: int,
    origins: list[str] | None = None,
    learn_origins: Sequence[str] = (),
) -> dict | None:
    """Token ids and labels: labels are the ids on assistant tokens (their end-of-turn token
    included, so the model learns to stop) and ``IGNORE_INDEX`` everywhere else.

    ``learn_origins`` (with ``origins``, one per message, as exported): only assistant turns
    of those origins are learned from; the others stay as context. None when nothing is left
    to learn (no such assistant turn within ``max_length``).
    """
    taught = demonstration_turns(messages, origins=origins, learn_origins=learn_origins)
    if taught is None:
        return None
    messages, learned_turns = taught
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = list(encoded["input_ids"])
    mask = list(encoded["assistant_masks"])
    if not any(mask):
        raise DataError(
            "The chat template marks no assistant tokens: it needs {% generation %} markers "
            "around the assistant's content and end-of-turn token."
        )
    if learned_turns is not None:
        spans = assistant_spans(mask)
        if len(spans) != len(learned_turns):
            raise DataError("The chat template's assistant spans do not match the turns.")
        mask = [0] * len(mask)
        for (start, end), learned in zip(spans, learned_turns, strict=True):
            if learned:
                mask[start:end] = [1] * (end - start)
    labels = [
        token if in_reply else IGNORE_INDEX for token, in_reply in zip(ids, mask, strict=True)
    ]
    ids, labels = _keep_end(ids, max_length), _keep_end(labels, max_length)
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": ids, "labels": labels}


@dataclass
class RankingExample:
    """One ranking: its K candidates (prompt + reply, tokenised) and the pairs it implies."""

    candidates: list[list[int]]
    # (winner index, loser index, rank distance) into ``candidates``.
    pairs: list[tuple[int, int, int]]
    # (index, index) of candidates ranked equal.
    ties: list[tuple[int, int]] = field(default_factory=list)
    # Best-first groups of indices into ``candidates`` (what listwise losses read).
    groups: list[list[int]] = field(default_factory=list)
    # How much the ranking counts in the loss (its ranker's trust with weight_by_trust).
    weight: float = 1.0
    # A loss margin for each of its pairs: the ``margin`` column of a pairs file that is not
    # an export (TRL's own format, where RewardTrainer reads it so).
    margin: float = 0.0


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _exported(record: dict) -> bool:
    return "schema_version" in record


def pair_rank_distance(record: dict) -> float | None:
    """The rank distance a pair record carries: ``rank_distance``, or ``margin`` in a pairs
    export of schema 1 (its name there)."""
    distance = _number(record.get("rank_distance"))
    if distance is None and _exported(record):
        distance = _number(record.get("margin"))
    return distance


def pair_loss_margin(record: dict) -> float:
    """The loss margin a pair record that is not an export carries (TRL's ``margin`` column,
    which its RewardTrainer subtracts from the score gap); 0 without one."""
    if _exported(record):
        return 0.0
    margin = _number(record.get("margin"))
    if margin is not None and not math.isfinite(margin):
        raise DataError(f"A pair's margin must be a finite number, not {margin}.")
    return margin or 0.0


def record_trust_weight(record: dict) -> float:
    """The ``trust_weight`` an export (schema 2) gives a ranking or pair; DataError without."""
    value = record.get("trust_weight")
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise DataError(
            "Weighting by trust needs records with a trust_weight (exports of schema 2 from the "
            "database; aggregated and red-team pairs have none)."
        )
    return float(value)


def ranking_example(
    tokenizer,
    record: dict,
    *,
    max_length: int,
    end_ids: Sequence[int] | None = None,
    weight_by_trust: bool = False,
) -> RankingExample | None:
    parsed = ranking_from_record(record)
    if parsed is None:
        return None
    prompt, texts, groups = parsed
    candidates = [
        _keep_end(reply_ids(tokenizer, prompt, text, end_ids=end_ids), max_length) for text in texts
    ]
    pairs = implied_pairs(groups)
    is_pair = "chosen" in record
    distance = pair_rank_distance(record) if is_pair else None
    if distance is not None:
        pairs = [(winner, loser, distance) for winner, loser, _ in pairs]
    return RankingExample(
        candidates=candidates,
        pairs=pairs,
        ties=tied_pairs(groups),
        groups=groups,
        weight=record_trust_weight(record) if weight_by_trust else 1.0,
        margin=pair_loss_margin(record) if is_pair else 0.0,
    )


# ---- datasets ---------------------------------------------------------------------------------


@dataclass
class SplitData:
    train: list = field(default_factory=list)
    test: list = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)

    def describe(self) -> dict[str, int]:
        return dict(sorted(self.stats.items()))

    def summary(self) -> str:
        """The counts as a reader takes them, for a message: none at all says so (the filters
        or the file chose no record)."""
        if not self.stats:
            return "no record was read: the data filters (or the file) chose none"
        return ", ".join(f"{name} {count}" for name, count in sorted(self.stats.items()))


def split_examples(
    records: Iterable[dict],
    make_example: Callable[[dict], object | None],
    count: Callable[[Counter, object, str], None],
    *,
    test_fraction: float,
    seed: int,
) -> SplitData:
    """Each record's example (``make_example``; None: skipped) filed under the record's split;
    ``count(stats, example, split)`` adds what the builder counts besides records and skips."""
    data = SplitData()
    for record in records:
        data.stats["records"] += 1
        example = make_example(record)
        if example is None:
            data.stats["skipped"] += 1
            continue
        split = record_split(record, test_fraction=test_fraction, seed=seed)
        getattr(data, split).append(example)
        count(data.stats, example, split)
    return data


def build_sft_data(
    tokenizer,
    records: Iterable[dict],
    *,
    max_length: int,
    test_fraction: float,
    seed: int,
    learn_origins: Sequence[str] = (),
) -> SplitData:
    def example(record: dict) -> dict | None:
        messages = record.get("messages")
        if not isinstance(messages, list):
            raise DataError("A demonstration record needs a `messages` list.")
        return sft_example(
            tokenizer,
            messages,
            max_length=max_length,
            origins=record.get("origins"),
            learn_origins=learn_origins,
        )

    def count(stats: Counter, example: dict, split: str) -> None:
        stats[f"examples/{split}"] += 1
        stats[f"tokens/{split}"] += len(example["input_ids"])

    return split_examples(records, example, count, test_fraction=test_fraction, seed=seed)


def _count_ranking(stats: Counter, example: RankingExample, split: str) -> None:
    stats[f"rankings/{split}"] += 1
    stats[f"pairs/{split}"] += len(example.pairs)
    if example.ties:
        stats[f"ties/{split}"] += len(example.ties)
    stats[f"candidates/{split}"] += len(example.candidates)


def build_ranking_data(
    tokenizer,
    records: Iterable[dict],
    *,
    max_length: int,
    test_fraction: float,
    seed: int,
    end_ids: Sequence[int] | None = None,
    weight_by_trust: bool = False,
    make_example: Callable[..., object | None] = ranking_example,
    count: Callable[[Counter, object, str], None] = _count_ranking,
) -> SplitData:
    """Ranking (or pair) records as examples by split. ``make_example(tokenizer, record,
    max_length=, end_ids=, weight_by_trust=)`` makes each one (None: skipped; by default the
    reward model's ``RankingExample``) and ``count`` adds its counts (see ``split_examples``)."""
    return split_examples(
        records,
        lambda record: make_example(
            tokenizer,
            record,
            max_length=max_length,
            end_ids=end_ids,
            weight_by_trust=weight_by_trust,
        ),
        count,
        test_fraction=test_fraction,
        seed=seed,
    )


# ---- batches ----------------------------------------------------------------------------------


def pad_right(sequences: Sequence[list[int]], *, pad_id: int, fill: int | None = None):
    """(ids, attention_mask) padded on the right; ``fill`` (default ``pad_id``) fills ids."""
    width = max(len(s) for s in sequences)
    fill = pad_id if fill is None else fill
    ids = torch.full((len(sequences), width), fill, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return ids, mask


@dataclass
class SFTCollator:
    pad_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_right(
            [e["input_ids"] for e in examples], pad_id=self.pad_id
        )
        labels, _ = pad_right(
            [e["labels"] for e in examples], pad_id=self.pad_id, fill=IGNORE_INDEX
        )
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@dataclass
class RankingCollator:
    """All candidates of the batch's rankings as one (sum K, T) tensor, and the pairs as index
    tensors into it: K forward passes per ranking, never two per pair."""

    pad_id: int

    def __call__(self, examples: list[RankingExample]) -> dict[str, torch.Tensor]:
        sequences, winners, losers, distances, margins, elements = [], [], [], [], [], []
        tie_first, tie_second, tie_elements = [], [], []
        for element, example in enumerate(examples):
            offset = len(sequences)
            sequences.extend(example.candidates)
            for winner, loser, distance in example.pairs:
                winners.append(offset + winner)
                losers.append(offset + loser)
                distances.append(distance)
                margins.append(example.margin)
                elements.append(element)
            for first, second in example.ties:
                tie_first.append(offset + first)
                tie_second.append(offset + second)
                tie_elements.append(element)
        input_ids, attention_mask = pad_right(sequences, pad_id=self.pad_id)
        return {
            "tie_first": torch.tensor(tie_first, dtype=torch.long),
            "tie_second": torch.tensor(tie_second, dtype=torch.long),
            "tie_elements": torch.tensor(tie_elements, dtype=torch.long),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "winners": torch.tensor(winners, dtype=torch.long),
            "losers": torch.tensor(losers, dtype=torch.long),
            "rank_distances": torch.tensor(distances, dtype=torch.float),
            "pair_margins": torch.tensor(margins, dtype=torch.float),
            "elements": torch.tensor(elements, dtype=torch.long),
            "num_elements": torch.tensor(len(examples), dtype=torch.long),
            "example_weights": torch.tensor([e.weight for e in examples], dtype=torch.float),
        }


def demonstration_ids(
    tokenizer, messages: list[dict], *, max_length: int, end_ids: Sequence[int] | None = None
) -> list[int] | None:
    """A demonstration as the reward model sees a candidate: up to its last assistant turn's
    end-of-turn token (see ``trim_to_turn_end``)."""
    while messages and messages[-1]["role"] != "assistant":
        messages = messages[:-1]
    if not messages:
        return None
    ids = trim_to_turn_end(
        conversation_ids(tokenizer, messages),
        default_end_ids(tokenizer) if end_ids is None else end_ids,
    )
    return _keep_end(ids, max_length)
