from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator

from config.forms import MultilineCharField
from sampler.generation.params import GenerationParams

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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Caps come from settings, read per request so deployments can change them.
        for name, cap in (
            ("n", settings.GENERATION_MAX_N),
            ("max_new_tokens", settings.GENERATION_MAX_NEW_TOKENS),
        ):
            self.fields[name].validators.append(MaxValueValidator(cap))
            self.fields[name].widget.attrs["max"] = cap
