"""The embedded chat model: format, tokenizer, build and data. No database.

`micro_model_dir` (tests/conftest.py) builds the micro model once per session.
"""

import itertools
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from sampler.embedded.build import build_micro_model, new_model
from sampler.embedded.chat_format import ASSISTANT, END_OF_TURN, PAD, USER, render_conversation
from sampler.embedded.config import MICRO_SHAPE, MICRO_TRAINING
from sampler.embedded.data import load_conversations, split_of
from sampler.embedded.training import token_stream, train

TWO_TURNS = [
    {"role": "user", "content": "  hi! how was your weekend? "},
    {"role": "assistant", "content": "pretty good, I went hiking.\n"},
]


@pytest.fixture(scope="module")
def tokenizer(micro_model_dir: Path):
    return AutoTokenizer.from_pretrained(micro_model_dir)


@pytest.fixture(scope="module")
def model(micro_model_dir: Path):
    torch.set_num_threads(1)
    return AutoModelForCausalLM.from_pretrained(micro_model_dir).eval()


def test_micro_model_loads_with_stock_auto_classes(micro_model_dir, tokenizer, model):
    assert (micro_model_dir / "model.safetensors").is_file()
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.padding_side == "left"


def test_pad_token_is_distinct_from_the_end_of_turn_eos(tokenizer, model):
    assert tokenizer.eos_token == END_OF_TURN
    assert tokenizer.pad_token == PAD
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id


def test_chat_template_renders_stripped_turns_without_separators(tokenizer):
    rendered = tokenizer.apply_chat_template(TWO_TURNS, tokenize=False)

    assert rendered == (
        "<|user|>hi! how was your weekend?<|end|><|assistant|>pretty good, I went hiking.<|end|>"
    )
    assert rendered == render_conversation(TWO_TURNS)


def test_generation_prompt_appends_the_assistant_marker(tokenizer):
    rendered = tokenizer.apply_chat_template(
        TWO_TURNS[:1], tokenize=False, add_generation_prompt=True
    )

    assert rendered == f"{USER}hi! how was your weekend?{END_OF_TURN}{ASSISTANT}"


def test_assistant_mask_covers_exactly_the_assistant_content_and_its_end_token(tokenizer):
    encoded = tokenizer.apply_chat_template(
        TWO_TURNS, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    masked_ids = [token for token, flag in zip(ids, mask, strict=True) if flag]

    assert tokenizer.decode(masked_ids) == f"pretty good, I went hiking.{END_OF_TURN}"
    assert masked_ids[-1] == tokenizer.eos_token_id
    # One contiguous span, ending the sequence.
    first = mask.index(1)
    assert mask[first:] == [1] * (len(mask) - first)
    assert ids[first - 1] == tokenizer.convert_tokens_to_ids(ASSISTANT)


def test_seeded_sampling_is_reproducible(tokenizer, model):
    prompt = tokenizer.apply_chat_template(
        TWO_TURNS[:1], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )

    def sample() -> list[int]:
        torch.manual_seed(1234)
        output = model.generate(**prompt, do_sample=True, max_new_tokens=12)
        return output[0].tolist()

    first, second = sample(), sample()
    assert first == second
    assert len(first) > prompt["input_ids"].shape[1]


def test_micro_build_with_the_same_seed_gives_identical_weights(micro_model_dir, tmp_path):
    rebuilt = build_micro_model(tmp_path / "again", seed=0)

    original = load_file(micro_model_dir / "model.safetensors")
    again = load_file(rebuilt / "model.safetensors")
    assert original.keys() == again.keys()
    assert all(torch.equal(original[name], again[name]) for name in original)


def test_training_steps_give_finite_loss_and_change_parameters(tokenizer):
    torch.set_num_threads(1)
    conversations = list(load_conversations("train", limit=20))
    stream = token_stream((render_conversation(c.messages) for c in conversations), tokenizer)
    model = new_model(MICRO_SHAPE, tokenizer, seed=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    config = replace(MICRO_TRAINING, steps=3)
    result = train(
        model, train_stream=stream, validation_stream=stream, config=config, seed=0, progress=False
    )

    assert torch.isfinite(torch.tensor(result.train_loss))
    assert torch.isfinite(torch.tensor(result.validation_loss))
    assert any(not torch.equal(before[name], p) for name, p in model.named_parameters())


def test_data_loader_yields_alternating_roles_starting_with_user():
    for conversation in itertools.islice(load_conversations("train"), 200):
        roles = [message["role"] for message in conversation.messages]
        assert len(roles) >= 2
        assert roles == [("user", "assistant")[index % 2] for index in range(len(roles))]
        assert all(message["content"].strip() for message in conversation.messages)


def test_split_depends_only_on_id_and_seed():
    ids = [f"conversation-{index}" for index in range(2000)]
    splits = [split_of(id_, seed=0, validation_fraction=0.05) for id_ in ids]

    assert splits == [split_of(id_, seed=0, validation_fraction=0.05) for id_ in ids]
    assert 50 <= splits.count("validation") <= 150
    assert splits != [split_of(id_, seed=1, validation_fraction=0.05) for id_ in ids]
