from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator

from config.forms import DefaultProjectChoiceField, ModelChoiceField, ModelMultipleChoiceField
from ranking.exports.filters import (
    MAX_SPLIT_SEED,
    MAX_TEST_FRACTION,
    SPLIT_SEED,
    SPLIT_SEED_BOUNDS,
)
from ranking.projects.selectors import project_list
from sampler.comparisons.services import EVERY_OPEN_PROJECT
from sampler.generation.forms import max_new_tokens_within_context
from sampler.generation.params import max_new_tokens_most
from sampler.registry.selectors import policy_versions, reward_versions


class ComparisonForm(forms.Form):
    version_a = ModelChoiceField(queryset=policy_versions(), label="Version A")
    version_b = ModelChoiceField(queryset=policy_versions(), label="Version B")
    reward_version = ModelChoiceField(
        queryset=reward_versions(),
        required=False,
        empty_label="An independent reward model (automatic)",
        label="Judged by",
    )
    extra_judges = ModelMultipleChoiceField(
        queryset=reward_versions(),
        required=False,
        label="More judges (an ensemble)",
    )
    prompts = forms.IntegerField(min_value=1, max_value=2000, initial=64, label="Held-out prompts")
    # Blank: the largest fraction the policies' training runs held out, with their seed
    # (model_comparison_create), else the export's default; a larger one or another seed is
    # refused there, naming the run that trained on the prompts it would add.
    test_fraction = forms.FloatField(
        min_value=0.0,
        max_value=MAX_TEST_FRACTION,
        required=False,
        label="Held-out fraction",
        widget=forms.NumberInput(attrs={"placeholder": "the policies' training's", "step": "any"}),
    )
    split_seed = forms.IntegerField(
        min_value=0,
        max_value=MAX_SPLIT_SEED,
        required=False,
        error_messages=SPLIT_SEED_BOUNDS,
        label=SPLIT_SEED,
        widget=forms.NumberInput(attrs={"placeholder": "the policies' training's"}),
    )
    max_new_tokens = forms.IntegerField(min_value=1, initial=48)
    # Empty: the default project's comparison, which every trainer votes on, so its prompts come
    # from every project open to all trainers (drafts only when chosen): labelled so.
    project = DefaultProjectChoiceField(
        queryset=project_list(),
        label="Project (its held-out prompts)",
        empty_label=EVERY_OPEN_PROJECT,
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The service's cap, read per request as the playground's form reads it; the field
        # offers the most any policy offered takes within its context (clean checks the two
        # chosen, as the service does).
        cap = settings.GENERATION_MAX_NEW_TOKENS
        contexts = self.fields["version_a"].queryset.values_list("context_length", flat=True)
        fits = [max_new_tokens_most(context_length=length, cap=cap) for length in contexts]
        self.fields["max_new_tokens"].validators.append(MaxValueValidator(cap))
        self.fields["max_new_tokens"].widget.attrs["max"] = max(
            (most for most in fits if most is not None), default=cap
        )

    def clean(self):
        data = super().clean()
        if data.get("version_a") and data.get("version_a") == data.get("version_b"):
            self.add_error("version_b", "Pick two different versions.")
        tokens = data.get("max_new_tokens")
        if tokens is None:
            return data
        versions = (data.get("version_a"), data.get("version_b"))
        # Within each version's context, checked as the playground checks the active policy's
        # (and in the service's words): said beside the field, whatever else the form refuses.
        for version in dict.fromkeys(version for version in versions if version is not None):
            check = max_new_tokens_within_context(version.context_length, version_name=version.name)
            try:
                check(tokens)
            except ValidationError as error:
                self.add_error("max_new_tokens", error)
        return data
