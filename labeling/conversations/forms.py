from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator

from config.forms import (
    DefaultProjectChoiceField,
    FilterChoiceField,
    MultilineCharField,
    PageForm,
    SearchField,
    StorableCharField,
    StorableMultilineCharField,
)
from config.text import newlines_normalized, validate_one_line
from labeling.conversations.models import (
    COMPOSER_ROLES,
    MAX_INSTRUCTIONS_CHARS,
    MAX_SEARCH_CHARS,
    MAX_TITLE_CHARS,
    Conversation,
)
from ranking.projects.selectors import projects_for_trainer


class ConversationFilterForm(PageForm):
    """The Write list's search, status filter and page (its query string): empty is every
    status; a status that does not exist is refused, with the ones that do, as the API refuses
    it, and so is a page that is no page number, and any of them given twice."""

    q = SearchField(max_chars=MAX_SEARCH_CHARS, label="Search")
    status = FilterChoiceField(
        choices=Conversation.Status.choices, noun="status", plural="statuses"
    )


class ConversationCreateForm(forms.Form):
    # Refused as the API refuses it: NUL and the like, and a second line.
    title = StorableCharField(
        max_length=MAX_TITLE_CHARS,
        required=False,
        validators=[validate_one_line],
        widget=forms.TextInput(attrs={"dir": "auto"}),
    )
    instructions = StorableMultilineCharField(
        # As the page labels the box: a refusal names it so.
        label="Topic or instructions",
        max_length=MAX_INSTRUCTIONS_CHARS,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional topic or instructions for this conversation.",
    )
    mode = forms.ChoiceField(
        choices=Conversation.Mode.choices,
        initial=Conversation.Mode.NORMAL,
        required=False,
        help_text="Red team: try to make the model misbehave, then write what it should have said.",
    )

    project = DefaultProjectChoiceField(
        help_text="The campaign the conversation belongs to (its ranking tasks and exports).",
    )

    def __init__(self, *args, trainer, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Only the projects open to this trainer can be chosen.
        self.fields["project"].queryset = projects_for_trainer(trainer=trainer)

    def clean_mode(self) -> str:
        return self.cleaned_data.get("mode") or Conversation.Mode.NORMAL


class MessageForm(forms.Form):
    # Length is checked by the service so the message names the limit and keeps the text.
    content = MultilineCharField(strip=False, required=False, widget=forms.Textarea)
    sample_id = forms.IntegerField(required=False, min_value=1)
    # The composer's: the message its turn follows (0: none yet); other forms leave it out.
    after = forms.IntegerField(required=False, min_value=0)

    def typed_content(self) -> str:
        """The text as typed, valid or not (less a NUL character, which it may not hold): what
        comes back into the box, with the reasons, when the turn is refused."""
        if self.is_valid():
            return self.cleaned_data["content"]
        return newlines_normalized(self.data.get("content", "")).replace("\x00", "")


class DraftForm(forms.Form):
    # Length is checked by the service, whose message names the limit in words.
    content = MultilineCharField(strip=False, required=False)
    sample_id = forms.IntegerField(required=False, min_value=1)
    # The composer's: the message its turn follows (0: none yet).
    after = forms.IntegerField(required=False, min_value=0)
    # The composer's: the side whose turn the text is typed for (blank: not known).
    role = forms.ChoiceField(choices=[("", ""), *COMPOSER_ROLES], required=False)


class SuggestForm(forms.Form):
    n = forms.IntegerField(min_value=1, initial=3)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["n"].validators.append(MaxValueValidator(settings.GENERATION_MAX_N))
