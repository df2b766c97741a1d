from django import forms

from sampler.models import ModelVersion
from sampler.training.ppo_config import PPOConfig

POLICIES = ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY)
REWARD_MODELS = ModelVersion.objects.filter(kind=ModelVersion.Kind.REWARD)


class PPORunForm(forms.Form):
    """Launch PPO from the Models page: prompts from the database (held-out share by
    conversation), the most used settings; the rest keep PPOConfig's defaults."""

    base_version = forms.ModelChoiceField(
        queryset=POLICIES, required=False, empty_label="The active policy"
    )
    reward_version = forms.ModelChoiceField(
        queryset=REWARD_MODELS, required=False, empty_label="The active reward model"
    )
    output_name = forms.CharField(max_length=200, required=False)
    max_steps = forms.IntegerField(min_value=1, max_value=1_000_000, initial=100)
    batch_size = forms.IntegerField(min_value=1, max_value=4096, initial=PPOConfig.batch_size)
    learning_rate = forms.FloatField(min_value=1e-9, max_value=1.0, initial=PPOConfig.learning_rate)
    kl_coef = forms.FloatField(min_value=0.0, max_value=10.0, initial=PPOConfig.kl_coef)
    max_kl = forms.FloatField(min_value=0.0, initial=PPOConfig.max_kl)
    max_new_tokens = forms.IntegerField(
        min_value=1, max_value=4096, initial=PPOConfig.max_new_tokens
    )
    test_fraction = forms.FloatField(min_value=0.0, max_value=0.9, initial=0.1)

    CONFIG_FIELDS = ("max_steps", "batch_size", "learning_rate", "kl_coef", "max_kl")

    def config(self) -> dict:
        data = self.cleaned_data
        values = {name: data[name] for name in self.CONFIG_FIELDS}
        values["max_new_tokens"] = data["max_new_tokens"]
        values["test_fraction"] = data["test_fraction"]
        return values


class ComparisonForm(forms.Form):
    version_a = forms.ModelChoiceField(queryset=POLICIES, label="Version A")
    version_b = forms.ModelChoiceField(queryset=POLICIES, label="Version B")
    reward_version = forms.ModelChoiceField(
        queryset=REWARD_MODELS,
        required=False,
        empty_label="The active reward model",
        label="Judged by",
    )
    prompts = forms.IntegerField(min_value=1, max_value=2000, initial=64, label="Held-out prompts")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=4096, initial=48)

    def clean(self):
        data = super().clean()
        if data.get("version_a") and data.get("version_a") == data.get("version_b"):
            self.add_error("version_b", "Pick two different versions.")
        return data
