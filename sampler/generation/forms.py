from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator

from config.forms import MultilineCharField
from sampler.generation.params import (
    GenerationParams,
    context_room_error,
    max_new_tokens_most,
)

_defaults = GenerationParams()


class GenerateForm(forms.Form):
    message = MultilineCharField(
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Say something to the model"}),
        help_text="A user turn; the model answers as the assistant.",
    )
    n = forms.IntegerField(min_value=1, initial=3, label="Completions")
    temperature = forms.FloatField(min_value=0.05, max_value=2.0, initial=_defaults.temperature)
    top_p = forms.FloatField(min_value=0.01, max_value=1.0, initial=_defaults.top_p)
    max_new_tokens = forms.IntegerField(min_value=1, initial=_defaults.max_new_tokens)
    seed = forms.IntegerField(
        min_value=0, max_value=2**31 - 1, required=False, help_text="Empty: random."
    )

    def __init__(self, *args, context_length: int | None = None, **kwargs):
        """``context_length``: that of the model version the job would be for (the active
        policy; None: not known), which may leave a reply fewer tokens than the site's cap."""
        super().__init__(*args, **kwargs)
        # Caps come from settings, read per request so deployments can change them.
        cap_n = settings.GENERATION_MAX_N
        self.fields["n"].validators.append(MaxValueValidator(cap_n))
        self.fields["n"].widget.attrs["max"] = cap_n
        # What the service accepts for this version: the cap, or what its context leaves.
        cap = settings.GENERATION_MAX_NEW_TOKENS
        most = max_new_tokens_most(context_length=context_length, cap=cap)
        tokens = self.fields["max_new_tokens"]
        if most is None:
            # No reply fits the context: the service refuses any, saying why.
            tokens.validators.append(MaxValueValidator(cap))
            tokens.widget.attrs["max"] = cap
            return
        if most < cap:
            tokens.validators.append(max_new_tokens_within_context(context_length))
        else:
            tokens.validators.append(MaxValueValidator(cap))
        tokens.widget.attrs["max"] = most
        tokens.initial = min(tokens.initial, most)


def max_new_tokens_within_context(context_length: int | None, *, version_name: str = ""):
    """A check of ``max_new_tokens`` against a model's context, in the service's words: the
    playground's for the active policy, the comparison form's for each version it compares
    (``version_name`` leads the message there, as the comparison service names the version)."""

    def check(value: int) -> None:
        problem = context_room_error(
            context_length=context_length, max_new_tokens=value, version_name=version_name
        )
        if problem:
            raise ValidationError(problem, code="max_value")

    return check
