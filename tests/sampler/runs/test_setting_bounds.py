"""A setting's allowed range is written once (each config class's ``BOUNDS``): the Training and
Models pages' fields take what the run and the train_* commands take, and refuse the rest with
the commands' sentence. The pages once had ranges of their own: a learning rate of 1 passed the
page and failed the run; a seed or a label smoothing the commands take was refused there."""

import math
import re

import pytest
from django import forms

from sampler.runs.forms import CONFIG_CLASSES, HYPERPARAMETERS, PPORunForm, TrainingRunForm
from sampler.training.config import ConfigError, range_refusal
from sampler.training.ppo_config import PPOConfig

pytestmark = pytest.mark.django_db

PAGE = {"source": "database", "test_fraction": "0.1", "split_seed": "0"}


def _page_errors(kind: str, name: str, value: str) -> list[str]:
    form = TrainingRunForm(data={**PAGE, "kind": kind, name: value})
    form.is_valid()
    return form.errors.get(name, [])


def _config_error(config_class, name: str, value) -> str | None:
    try:
        config_class.from_dict({name: value})
    except ConfigError as refused:
        return refused.errors.get(name)
    return None


@pytest.mark.parametrize(
    ("kind", "name", "value"),
    [
        ("sft", "learning_rate", "1.0"),
        ("reward", "learning_rate", "1"),
        ("kto", "beta", "0"),
    ],
)
def test_the_training_page_refuses_what_the_run_would_refuse(kind, name, value):
    """A learning rate of 1 passed the page, and the run was refused once queued."""
    refusal = _config_error(CONFIG_CLASSES[kind], name, float(value))
    assert refusal is not None
    assert _page_errors(kind, name, value) == [refusal]


@pytest.mark.parametrize(
    ("kind", "name", "value"),
    [
        ("sft", "seed", "3000000000"),
        ("dpo", "label_smoothing", "0.495"),
        ("dpo", "beta", "0.00005"),
        ("sft", "lora_alpha", "0.0005"),
        ("reward", "epochs", "0.005"),
    ],
)
def test_the_training_page_takes_what_the_commands_take(kind, name, value):
    """The page refused a seed of 3,000,000,000 and a label smoothing of 0.495, which
    train_sft and train_dpo take."""
    assert _config_error(CONFIG_CLASSES[kind], name, float(value)) is None
    assert _page_errors(kind, name, value) == []


def test_the_ppo_form_takes_the_learning_rates_the_run_takes():
    """The Models page refused a learning rate below 1e-9, and took 1, which the run refuses."""
    assert _config_error(PPOConfig, "learning_rate", 1e-10) is None
    assert not _field_errors(PPORunForm().fields["learning_rate"], "0.0000000001")
    assert _field_errors(PPORunForm().fields["learning_rate"], "1") == [
        _config_error(PPOConfig, "learning_rate", 1.0)
    ]


def _field_errors(field: forms.Field, value: str) -> list[str]:
    try:
        field.clean(value)
    except forms.ValidationError as refused:
        return refused.messages
    return []


def _probes(field: forms.Field, config_class, name: str) -> list:
    """Values at and about each end of the setting's range, of the kind the field reads."""
    bound = config_class.BOUNDS[name]
    ends = [bound.low] + ([] if bound.high is None else [bound.high])
    if isinstance(field, forms.IntegerField) and not isinstance(field, forms.FloatField):
        return sorted({value for end in ends for value in (end - 1, end, end + 1)})
    return sorted(
        {
            value
            for end in ends
            for value in (math.nextafter(end, -math.inf), end, math.nextafter(end, math.inf))
        }
    )


def _agree(field: forms.Field, config_class, name: str) -> None:
    for value in _probes(field, config_class, name):
        said = _config_error(config_class, name, value)
        assert _field_errors(field, repr(value)) == ([] if said is None else [said]), (
            config_class.__name__,
            name,
            value,
        )


@pytest.mark.parametrize("name", HYPERPARAMETERS)
def test_every_bounded_field_of_the_training_page_refuses_as_its_runs_config(name):
    """Each of the page's bounded settings, at and about each end of its range, for every kind
    of run it applies to: the field refuses what the config refuses, in the config's words."""
    form = TrainingRunForm()
    *_, kinds = HYPERPARAMETERS[name]
    for kind in sorted(kinds):
        config_class = CONFIG_CLASSES[kind]
        assert name in config_class.BOUNDS, (kind, name)
        if kind == "kto" and name == "batch_size":
            # KTO's own floor (its KL estimate) is said by the run, past the shared range.
            continue
        _agree(form.fields[name], config_class, name)


def test_every_bounded_field_of_the_ppo_form_refuses_as_the_ppo_config():
    form = PPORunForm()
    bounded = [
        name
        for name, field in form.fields.items()
        if isinstance(field, forms.IntegerField | forms.FloatField) and name in PPOConfig.BOUNDS
    ]
    assert set(bounded) >= set(PPORunForm.CONFIG_FIELDS) - {"lora_targets"}
    for name in bounded:
        if name == "batch_size":
            continue  # below, as the form keeps PPOConfig's minibatches
        _agree(form.fields[name], PPOConfig, name)


def test_the_ppo_forms_batch_size_takes_at_least_one_reply_per_minibatch():
    """The form keeps PPOConfig's minibatches: a batch smaller would be refused by the run."""
    field = PPORunForm().fields["batch_size"]
    top = PPOConfig.BOUNDS["batch_size"].high
    assert _field_errors(field, str(PPOConfig.minibatches)) == []
    assert _field_errors(field, str(top)) == []
    refusal = range_refusal("batch_size", PPOConfig.minibatches, top)
    assert _field_errors(field, str(PPOConfig.minibatches - 1)) == [refusal]
    assert _field_errors(field, str(top + 1)) == [refusal]
    with pytest.raises(ConfigError) as refused:
        PPOConfig.from_dict({"batch_size": PPOConfig.minibatches - 1})
    assert set(refused.value.errors) == {"minibatches"}


def test_the_pages_write_a_settings_numbers_as_its_refusals_do():
    """The Training page's placeholder said "2e-05" and the PPO form's box "1e-05", as Python
    prints a small float; the refusals write numbers in full."""
    placeholder = TrainingRunForm().fields["learning_rate"].widget.attrs["placeholder"]
    assert placeholder == "sft 0.0001, reward/dpo/kto 0.00002"
    assert 'value="0.00001"' in str(PPORunForm()["learning_rate"])
    assert not re.search(r"\de-\d", str(TrainingRunForm()) + str(PPORunForm()))


@pytest.mark.parametrize(
    ("kind", "name", "value"),
    [
        ("reward", "margin_per_rank", "1e308"),
        ("reward", "center_rewards_coefficient", "1e300"),
        ("reward", "tie_weight", "1e308"),
        ("sft", "eval_every", "99999999999999999999999"),
        ("dpo", "checkpoint_every", "99999999999999999999999"),
    ],
)
def test_the_training_page_refuses_a_huge_setting_by_its_range(kind, name, value):
    """These had no top: a margin of 1e308 was taken, and the run failed on its worker ("the
    training loss became inf at step 1"); an evaluation every 10**23 steps was taken."""
    refusal = CONFIG_CLASSES[kind].BOUNDS[name].refusal(name)
    assert refusal.endswith(".") and " and " in refusal  # a range with a top
    assert _page_errors(kind, name, value) == [refusal]


def test_the_ppo_form_refuses_a_huge_kl_limit_by_its_range():
    refusal = PPOConfig.BOUNDS["max_kl"].refusal("max_kl")
    assert " and " in refusal
    assert _field_errors(PPORunForm().fields["max_kl"], "1e308") == [refusal]
