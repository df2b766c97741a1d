"""Form fields several apps' forms share."""

from django import forms


class DefaultProjectChoiceField(forms.ModelChoiceField):
    """A project chosen by its slug, or none: the default project (the services' ``None``).
    ``queryset``: the projects the form offers (or set it later, per request)."""

    def __init__(self, queryset=None, **kwargs) -> None:
        super().__init__(
            queryset=queryset,
            to_field_name="slug",
            required=False,
            empty_label="Default project",
            **kwargs,
        )
