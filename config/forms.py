"""Form fields and form helpers several apps share."""

from django import forms
from django.core.exceptions import ValidationError


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


def add_validation_errors(form: forms.Form, error: ValidationError) -> None:
    """A service's refusal shown on the form: each message on its field, or on the whole form
    when the service names a field the form does not have."""
    for field, field_errors in error.message_dict.items():
        form.add_error(field if field in form.fields else None, field_errors)
