"""Scores at the last real token, whatever the padding; SFT labels on assistant tokens only."""

import copy

import pytest
import torch

from sampler.training.data import IGNORE_INDEX, SFTCollator, pad_right, sft_example
from sampler.training.model import (
    RewardScorer,
    build_reward_model,
    last_token_index,
    last_token_scores,
    load_tokenizer,
    shift_reward_scores,
)

CONVERSATION = [
    {"role": "user", "content": "hi there, how are you?"},
    {"role": "assistant", "content": "good thanks"},
    {"role": "user", "content": "and your day?"},
    {"role": "assistant", "content": "it was long"},
]


@pytest.fixture(scope="module")
def tokenizer(micro_model_dir):
    return load_tokenizer(micro_model_dir)


@pytest.fixture(scope="module")
def scorer(micro_model_dir, tokenizer):
    torch.manual_seed(0)
    return RewardScorer(build_reward_model(micro_model_dir, tokenizer)).eval()


def _sequences(tokenizer):
    short = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=True)
    long = tokenizer.apply_chat_template(CONVERSATION, tokenize=True)
    return list(short["input_ids"]), list(long["input_ids"])


def _pad_left(sequences, pad_id):
    width = max(len(s) for s in sequences)
    ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in sequences])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
    return ids, mask


def test_last_token_index_for_right_left_and_no_padding():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [2, 4]
    assert last_token_index(left).tolist() == [4, 4]
    values = torch.arange(10.0).view(2, 5, 1)
    assert last_token_scores(values, right).tolist() == [2.0, 9.0]


@torch.no_grad()
def test_scores_are_the_same_unpadded_right_padded_and_left_padded(scorer, tokenizer):
    sequences = _sequences(tokenizer)
    alone = torch.cat(
        [scorer(torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long)) for s in sequences]
    )
    right = scorer(*pad_right(sequences, pad_id=tokenizer.pad_token_id))
    left = scorer(*_pad_left(sequences, tokenizer.pad_token_id))
    torch.testing.assert_close(right, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(left, alone, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_scores_are_read_at_the_real_end_token_when_pad_equals_eos(scorer, tokenizer):
    eos = tokenizer.eos_token_id
    sequences = _sequences(tokenizer)
    assert sequences[0][-1] == eos  # a reply ends with the end-of-turn token, the pad id here
    alone = torch.cat(
        [scorer(torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long)) for s in sequences]
    )
    ids, mask = pad_right(sequences, pad_id=eos)
    torch.testing.assert_close(scorer(ids, mask), alone, atol=1e-5, rtol=1e-5)
    ids, mask = _pad_left(sequences, eos)
    torch.testing.assert_close(scorer(ids, mask), alone, atol=1e-5, rtol=1e-5)
    # Reading at "the first pad id" would have taken the token before the end token.
    before_end = torch.cat(
        [
            scorer(torch.tensor([s[:-1]]), torch.ones(1, len(s) - 1, dtype=torch.long))
            for s in sequences
        ]
    )
    assert not torch.allclose(before_end, alone)


@torch.no_grad()
def test_shifting_scores_moves_every_score_by_the_offset(micro_model_dir, tokenizer, scorer):
    shifted = copy.deepcopy(scorer)
    where = shift_reward_scores(shifted.model, 1.25)
    assert where == "ln_f.bias"  # GPT-2's score head has no bias
    ids, mask = pad_right(_sequences(tokenizer), pad_id=tokenizer.pad_token_id)
    torch.testing.assert_close(shifted(ids, mask), scorer(ids, mask) - 1.25, atol=1e-4, rtol=0)


@pytest.mark.parametrize("pad_equals_eos", [False, True])
def test_sft_labels_cover_assistant_tokens_and_their_end_token_only(
    micro_model_dir, pad_equals_eos
):
    tokenizer = load_tokenizer(micro_model_dir)
    if pad_equals_eos:
        tokenizer.pad_token = tokenizer.eos_token
    example = sft_example(tokenizer, CONVERSATION, max_length=512)
    ids, labels = example["input_ids"], example["labels"]
    labelled = tokenizer.decode(
        [t for t, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    )
    assert labelled == "good thanks<|end|>it was long<|end|>"
    hidden = tokenizer.decode(
        [t for t, label in zip(ids, labels, strict=True) if label == IGNORE_INDEX]
    )
    assert "<|assistant|>" in hidden and "hi there" in hidden and "good" not in hidden

    batch = SFTCollator(pad_id=tokenizer.pad_token_id)(
        [example, sft_example(tokenizer, CONVERSATION[:2], max_length=512)]
    )
    # Padding is never learned, yet the end tokens (== pad when pad == eos) still are.
    padded = batch["attention_mask"] == 0
    assert (batch["labels"][padded] == IGNORE_INDEX).all()
    assert (batch["labels"] == tokenizer.eos_token_id).sum() == 3


def test_sft_example_keeps_the_end_of_a_long_conversation(micro_model_dir):
    tokenizer = load_tokenizer(micro_model_dir)
    example = sft_example(tokenizer, CONVERSATION, max_length=6)
    assert len(example["input_ids"]) == 6
    assert tokenizer.decode(example["input_ids"]).endswith("it was long<|end|>")
    assert sft_example(tokenizer, CONVERSATION[:1], max_length=64) is None
