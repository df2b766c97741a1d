from django import forms

from config.forms import (
    DefaultProjectChoiceField,
    FilterChoiceField,
    ModelChoiceField,
    ModelVersionFilterField,
    MultilineCharField,
    PageForm,
)
from labeling.redteam.models import Attack
from labeling.redteam.services import MAX_ATTACK_NOTE_CHARS
from ranking.projects.selectors import project_list
from sampler.models import ModelVersion


class AttackForm(forms.Form):
    category = forms.ChoiceField(choices=Attack.Category.choices)
    note = MultilineCharField(
        required=False, max_length=MAX_ATTACK_NOTE_CHARS, widget=forms.Textarea(attrs={"rows": 2})
    )

    def typed(self) -> dict[str, str]:
        """The fields as typed, valid or not (less a NUL character, which they may not hold):
        what comes back into the form, with the reasons, when the mark is refused."""
        return {name: self.data.get(name, "").replace("\x00", "") for name in self.fields}


class AttackFilterForm(PageForm):
    """The Red team page's filters and page (its query string): empty is every category, every
    model version; a category that does not exist is refused, with the ones that do, and so is
    a model version that does not, and a page that is no page number."""

    category = FilterChoiceField(
        choices=Attack.Category.choices, noun="category", plural="categories"
    )
    model_version = ModelVersionFilterField(queryset=ModelVersion.objects.all())


class AttackRunForm(forms.Form):
    model_version = ModelChoiceField(
        queryset=ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY).order_by("-created_at"),
        label="Re-run stored attacks against",
    )
    project = DefaultProjectChoiceField(queryset=project_list(), label="Attacks of the project")
