"""A training setting is named as the Training and Models pages label it, by every door that
refuses it: the train_* commands (with the option that set it), the pages and the run's own
record. One map says each setting's label (``sampler.training.config.SETTINGS``)."""

import pytest
from django.core.management import CommandError, call_command
from django.forms.utils import pretty_name
from django.urls import reverse

from sampler.runs.forms import PPORunForm, TrainingRunForm
from sampler.runs.models import TrainingRun
from sampler.training.config import SETTINGS, ConfigError, DPOConfig, setting_label

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("command", "options", "refusal"),
    [
        (
            "train_sft",
            ["--batch-size", "5000"],
            "Batch size (--batch-size) must be between 1 and 4096.",
        ),
        ("train_dpo", ["--beta", "0"], "Beta (--beta) must be above 0 and at most 10."),
        # Refused by the database filters the fraction holds out by, as the export's.
        (
            "train_reward",
            ["--test-fraction", "1.5"],
            "Held-out fraction (--test-fraction) must be between 0 and 0.99.",
        ),
        ("train_ppo", ["--kl-coef", "11"], "KL coefficient (--kl-coef) must be between 0 and 10."),
        (
            "train_reward",
            ["--min-agreement", "2"],
            "Minimum agreement (--min-agreement) must be between 0 and 1.",
        ),
        (
            "train_reward",
            ["--split-seed", "-1"],
            "Split seed (--split-seed) must be between 0 and 4,294,967,295.",
        ),
    ],
)
def test_a_command_names_a_refused_setting_by_its_label_and_its_option(command, options, refusal):
    """They said "batch_size must be between 1 and 4096.", the field's name."""
    with pytest.raises(CommandError) as refused:
        call_command(command, *options, "--queue", verbosity=0)
    assert str(refused.value) == refusal
    assert not TrainingRun.objects.exists()


def test_a_setting_named_in_another_settings_refusal_is_named_by_its_label():
    with pytest.raises(ConfigError) as refused:
        DPOConfig.from_dict({"loss_type": "ipo", "mode": "listwise"})
    assert refused.value.errors == {
        "loss_type": "IPO is a pairwise loss: use it with DPO mode pairwise."
    }


def test_every_setting_has_a_label_and_help():
    for name, (label, help_text) in SETTINGS.items():
        assert label and help_text, name
        assert setting_label(name) == label


@pytest.mark.usefixtures("policy")
def test_the_training_page_says_a_refused_setting_once_by_its_label(admin_client_):
    """A refusal that opens with the setting's label is its error line as it is, not after the
    label again ("Label smoothing: label_smoothing applies ...")."""
    response = admin_client_.post(
        reverse("sampler:training-run-start"),
        {"kind": "dpo", "source": "database", "test_fraction": "0.1", "split_seed": "0",
         "dpo_mode": "pairwise", "dpo_loss": "ipo", "label_smoothing": "0.1"},
    )  # fmt: skip
    assert response.status_code == 422
    assert (
        '<span class="error-line">Label smoothing applies to the sigmoid loss only.</span>'
        in response.content.decode()
    )
    assert not TrainingRun.objects.exists()


@pytest.mark.usefixtures("policy")
@pytest.mark.parametrize(
    ("command", "name", "value"),
    [
        ("train_sft", "batch_size", "5000"),
        ("train_dpo", "gradient_accumulation_steps", "0"),
        ("train_sft", "lora_r", "2000"),
        ("train_reward", "eval_every", "-1"),
        ("train_reward", "margin_per_rank", "-0.5"),
        ("train_kto", "test_fraction", "1.5"),
    ],
)
def test_the_training_page_refuses_a_setting_out_of_range_as_its_command_does(
    admin_client_, command, name, value
):
    """The page said Django's "Batch size: Ensure this value is less than or equal to 4096."
    where train_sft says "Batch size (--batch-size) must be between 1 and 4096."."""
    option = "--" + name.replace("_", "-")
    with pytest.raises(CommandError) as refused:
        call_command(command, option, value, "--queue", verbosity=0)
    sentence = str(refused.value).replace(f" ({option})", "", 1)
    assert sentence.startswith(f"{SETTINGS[name][0]} ") and "(--" not in sentence
    response = admin_client_.post(
        reverse("sampler:training-run-start"),
        {"kind": command.removeprefix("train_"), "source": "database", "test_fraction": "0.1",
         "split_seed": "0", name: value},
    )  # fmt: skip
    assert response.status_code == 422
    text = response.content.decode()
    assert f'<span class="error-line">{sentence}</span>' in text and "Ensure this" not in text
    assert not TrainingRun.objects.exists()


# Each kind's form: the Training page's (reward, SFT, DPO, KTO) and the Models page's (PPO).
FORMS = {"sampler:training": ("form", TrainingRunForm), "sampler:models": ("ppo_form", PPORunForm)}


@pytest.mark.usefixtures("policy")
@pytest.mark.parametrize("page", FORMS)
def test_every_field_of_a_training_form_has_a_label_and_help_of_its_own(admin_client_, page):
    """The PPO form's fields had no label: its error lines said "Kl coef: ...", the label
    Django makes of a field's name; the Training page's said "Lora r", "Eval every"."""
    name_in_context, form_class = FORMS[page]
    response = admin_client_.get(reverse(page))
    form = response.context[name_in_context]
    assert isinstance(form, form_class)
    text = response.content.decode()
    for name, field in form.fields.items():
        assert field.label is not None, f"{name}: labelled from its name"
        assert field.help_text, f"{name}: no help"
        if name in SETTINGS:
            assert (field.label, field.help_text) == SETTINGS[name], name
        made_of_name = pretty_name(name)
        if made_of_name != field.label:
            assert f">{made_of_name}</label>" not in text, made_of_name


@pytest.mark.usefixtures("policy")
def test_the_ppo_forms_error_lines_name_its_fields_by_their_labels(admin_client_):
    response = admin_client_.post(
        reverse("sampler:ppo-run-start"),
        {"max_steps": "10", "batch_size": "16", "learning_rate": "0.00001", "kl_coef": "11",
         "max_kl": "-1", "max_new_tokens": "48", "test_fraction": "0.1", "lora_r": "0",
         "lora_alpha": "16"},
    )  # fmt: skip
    assert response.status_code == 422
    text = response.content.decode()
    # Out of range, as train_ppo says it ("KL coefficient (--kl-coef) must be between 0 and 10.").
    assert '<span class="error-line">KL coefficient must be between 0 and 10.</span>' in text
    assert '<span class="error-line">Stop past KL must be between 0 and 1000.</span>' in text
    assert "Kl coef" not in text and "Max kl" not in text
