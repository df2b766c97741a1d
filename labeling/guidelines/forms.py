from django import forms

from config.forms import MultilineCharField
from config.text import validate_one_line
from labeling.guidelines.services import MAX_CHANGE_NOTE_CHARS


class GuidelineForm(forms.Form):
    # Bounds are the service's, so its message names them and the text comes back.
    text = MultilineCharField(
        strip=False, required=False, widget=forms.Textarea(attrs={"rows": 24})
    )
    change_note = forms.CharField(
        required=False,
        max_length=MAX_CHANGE_NOTE_CHARS,
        validators=[validate_one_line],
        help_text="What changed, in a sentence (shown to trainers).",
        widget=forms.TextInput(attrs={"dir": "auto"}),
    )
