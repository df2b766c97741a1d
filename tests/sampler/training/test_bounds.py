"""Each bounded setting's range, written once per config class (``BOUNDS``), and the sentence
that refuses a value out of it."""

import math
from dataclasses import fields

import pytest

from sampler.training.config import (
    CONFIGS,
    Bound,
    ConfigError,
    DPOConfig,
    number_text,
    range_refusal,
)
from sampler.training.ppo_config import PPOConfig

ALL_CONFIGS = [*CONFIGS.values(), PPOConfig]
# Refused past their range by a sentence of their own (PPO takes only 1; KTO at least 2).
OWN_REFUSALS = {
    ("ppo", "gradient_accumulation_steps"),
    ("ppo", "log_every"),
    ("kto", "batch_size"),
}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e-8, "0.00000001"),
        (2e-05, "0.00002"),
        (0.99, "0.99"),
        (2.0, "2.0"),
        (4096, "4096"),
        (10_000_000, "10,000,000"),
        (2**32 - 1, "4,294,967,295"),
        (1e16, "10,000,000,000,000,000"),
    ],
)
def test_a_number_is_written_in_full_never_in_pythons_exponent_form(value, text):
    """A refusal said "must be at least 1e-08", as Python prints a small float."""
    assert number_text(value) == text


def test_a_range_refusal_says_each_end_in_or_out():
    assert range_refusal("learning_rate", 1e-8, 1) == (
        "Learning rate must be between 0.00000001 and 1."
    )
    # Both ends out: it said "between 0 and 1", as for a range that takes both.
    assert Bound(0, 1, above=True, below=True).refusal("learning_rate") == (
        "Learning rate must be above 0 and below 1."
    )
    assert Bound(0, 10, above=True).refusal("beta") == "Beta must be above 0 and at most 10."
    assert Bound(0, 0.5, below=True).refusal("label_smoothing") == (
        "Label smoothing must be at least 0 and below 0.5."
    )
    assert Bound(0, above=True).refusal("lora_alpha") == "LoRA alpha must be positive."
    assert Bound(0).refusal("eval_every") == "Evaluate every cannot be negative."


def test_a_bound_admits_its_closed_ends_only_and_never_nan():
    bound = Bound(0, 1, below=True)
    assert bound.admits(0) and bound.admits(0.5) and not bound.admits(1)
    assert not bound.admits(-1e-300) and not bound.admits(math.nan)
    assert Bound(0, above=True).admits(math.inf) and not Bound(0, above=True).admits(0)


@pytest.mark.parametrize("config_class", ALL_CONFIGS, ids=lambda c: c.kind)
def test_every_bounded_setting_is_refused_past_either_end_in_its_bounds_words(config_class):
    """The configs check each range from their ``BOUNDS``: a value past an end (or on an end
    the range leaves out) is refused by the bound's sentence, an end it takes is taken."""
    for name, bound in config_class.BOUNDS.items():
        types = {setting.name: setting.type for setting in fields(config_class)}
        outside = [math.nextafter(bound.low, -math.inf)]
        inside = []
        (outside if bound.above else inside).append(bound.low)
        if bound.high is not None:
            outside.append(math.nextafter(bound.high, math.inf))
            (outside if bound.below else inside).append(bound.high)
        if types[name].startswith("int"):  # "int", "int | None"
            outside = [math.floor(v) if v < bound.low else math.ceil(v) for v in outside]
        for value in outside:
            errors = config_class(**{name: value}).validate()
            if (config_class.kind, name) in OWN_REFUSALS:
                assert name in errors, (name, value)
            else:
                assert errors.get(name) == bound.refusal(name), (name, value)
        for value in inside:
            if (config_class.kind, name) in OWN_REFUSALS:
                continue
            assert name not in config_class(**{name: value}).validate(), (name, value)


def test_special_refusals_stay_their_own():
    """Past the ranges, a few settings have refusals of their own, said in place of them."""
    with pytest.raises(ConfigError) as refused:
        PPOConfig.from_dict({"gradient_accumulation_steps": 2, "kl_coef": 0, "adaptive_kl": True})
    assert refused.value.errors["gradient_accumulation_steps"].startswith("PPO splits")
    assert refused.value.errors["kl_coef"].startswith("Adaptive KL starts from")
    with pytest.raises(ConfigError) as refused:
        DPOConfig.from_dict({"label_smoothing": 0.7, "loss_type": "ipo", "mode": "pairwise"})
    assert refused.value.errors == {
        "label_smoothing": DPOConfig.BOUNDS["label_smoothing"].refusal("label_smoothing")
    }


# Settings that had no top: a finite but absurd value of each broke a run (an infinite loss, a
# KL that never mattered), or meant what a smaller one says (every 10**23 steps: never). PPO's
# minibatches past a rollout batch's replies are refused by a sentence of their own.
HUGE = {
    "reward": {
        "margin_per_rank": 1e308,
        "center_rewards_coefficient": 1e300,
        "tie_weight": 1e308,
        "normalization_samples": 10**23,
    },
    "sft": {
        "eval_every": 10**23,
        "checkpoint_every": 10**23,
        "log_every": 10**23,
        "weight_decay": 1e308,
        "gradient_clip": 1e308,
        "adam_epsilon": 1e308,
        "lora_alpha": 1e308,
    },
    "ppo": {
        "max_kl": 1e308,
        "target_kl": 1e308,
        "kl_horizon": 10**23,
        "missing_eos_penalty": 1e308,
        "vf_coef": 1e308,
    },
}


@pytest.mark.parametrize(
    ("kind", "name"), [(kind, name) for kind, names in HUGE.items() for name in names]
)
def test_a_huge_setting_is_refused_by_its_range(kind, name):
    config_class = PPOConfig if kind == "ppo" else CONFIGS[kind]
    bound = config_class.BOUNDS[name]
    assert bound.high is not None, name
    with pytest.raises(ConfigError) as refused:
        config_class.from_dict({name: HUGE[kind][name]})
    assert refused.value.errors[name] == bound.refusal(name)
