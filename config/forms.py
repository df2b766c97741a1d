"""Form fields and form helpers several apps share."""

import re

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator

from config.querysets import MAX_ID
from config.refusals import DATES_OUT_OF_ORDER, REPEATED_PARAMETER
from config.text import newlines_normalized, search_text, text_problem
from ranking.projects.models import DEFAULT_PROJECT_SLUG


def id_in_range(value: object) -> int | None:
    """``value`` (a query-string or form value) as a row id, or None when it is not a whole
    number from 1 to ``MAX_ID``."""
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if 1 <= number <= MAX_ID else None


def _names_no_row(field: forms.ModelChoiceField, value: object) -> bool:
    """A primary key too large for the database: no row has it."""
    if field.to_field_name or isinstance(value, field.queryset.model):
        return False
    try:
        number = int(str(value))
    except ValueError:
        return False  # Django says "not a valid choice" itself
    return number > MAX_ID or number < -MAX_ID - 1


def _without_null_characters_validator(validators: list) -> list:
    """A ``CharField``'s validators less Django's "Null characters are not allowed.": for the
    fields that say it in the project's words, or strip what it refuses."""
    return [
        validator
        for validator in validators
        if not isinstance(validator, ProhibitNullCharactersValidator)
    ]


class StorableCharField(forms.CharField):
    """Django's, with text a database cannot store (NUL, unpaired surrogates) refused with the
    message the API gives (``config.text``) in place of Django's "Null characters are not
    allowed."; the page names the field beside it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.validators = _without_null_characters_validator(self.validators)

    def to_python(self, value):
        if isinstance(value, str) and (problem := text_problem(value)):
            raise ValidationError(problem, code="null_characters_not_allowed")
        return super().to_python(value)

    def prepare_value(self, value):
        # Shown back in a refused form: less a NUL, which a page cannot hold (HTML has none).
        return value.replace("\x00", "") if isinstance(value, str) else value


class MultilineCharField(forms.CharField):
    """Django's, for a textarea: its line breaks as ``\\n``, whichever way they were posted (a
    form sent without htmx sends CRLF), so the text compares, counts and exports as typed."""

    def to_python(self, value):
        if isinstance(value, str):
            value = newlines_normalized(value)
        return super().to_python(value)

    def widget_attrs(self, widget) -> dict:
        # Text in any script: a right-to-left one is laid out from the right as it is typed.
        return {**super().widget_attrs(widget), "dir": "auto"}


class StorableMultilineCharField(MultilineCharField, StorableCharField):
    """A textarea's text with its line breaks as ``\\n``, refused as ``StorableCharField``
    refuses text a database cannot store."""


class _RawCheckboxInput(forms.CheckboxInput):
    """A checkbox that hands its field the posted value as sent (None when left out), where
    Django's reads any value but "false" and "0" as ticked; it is drawn with its field's
    ``value`` attribute, so the box a browser posts is the one the field takes, and ticked for
    that value or a ``True`` initial (a box ticked by default)."""

    def __init__(self, attrs=None, checked_value: str = "1") -> None:
        super().__init__(attrs, check_test=lambda value: value is True or value == checked_value)
        self.checked_value = checked_value

    def format_value(self, value) -> str:
        return self.checked_value

    def value_from_datadict(self, data, files, name):
        return data.get(name)


class CheckboxField(forms.Field):
    """A checkbox: ticked when the box's own ``value`` is posted, unticked when it is left out,
    and anything else ("maybe", "0", "") refused by the field's label, not read as a tick as
    Django's ``BooleanField`` reads it. ``initial=True`` draws it ticked until it is posted."""

    def __init__(self, *, value: str = "1", **kwargs) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", _RawCheckboxInput(checked_value=value))
        super().__init__(**kwargs)
        self.checked_value = value

    def to_python(self, value) -> bool:
        if value is None:
            return False
        if value == self.checked_value:
            return True
        raise ValidationError(
            f"{self.label or 'This'} is a checkbox: tick it or leave it unticked.", code="invalid"
        )


class ModelChoiceField(forms.ModelChoiceField):
    """Django's, with an out-of-range id refused as "not one of the choices" rather than sent
    to the database."""

    def to_python(self, value):
        if value not in self.empty_values and _names_no_row(self, value):
            raise ValidationError(
                self.error_messages["invalid_choice"],
                code="invalid_choice",
                params={"value": value},
            )
        return super().to_python(value)


class ModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Django's, with out-of-range ids refused as "not one of the choices" rather than sent to
    the database."""

    def _check_values(self, value):
        for item in value if isinstance(value, list | tuple | set | frozenset) else ():
            if _names_no_row(self, item):
                raise ValidationError(
                    self.error_messages["invalid_choice"],
                    code="invalid_choice",
                    params={"value": item},
                )
        return super()._check_values(value)


class DefaultProjectChoiceField(ModelChoiceField):
    """A project chosen by its slug, or none: the default project (the services' ``None``).
    ``queryset``: the projects the form offers (or set it later, per request). The default
    project is the empty choice, so it is not listed again under its own name; its slug is
    still accepted, as the empty choice. ``empty_label``: what the empty choice is called, where
    the form's service reads more than the default project's data for it."""

    def __init__(self, queryset=None, *, empty_label: str = "Default project", **kwargs) -> None:
        super().__init__(
            queryset=queryset,
            to_field_name="slug",
            required=False,
            empty_label=empty_label,
            **kwargs,
        )

    def _set_queryset(self, queryset) -> None:
        if queryset is not None:
            queryset = queryset.exclude(slug=DEFAULT_PROJECT_SLUG)
        super()._set_queryset(queryset)

    queryset = property(ModelChoiceField._get_queryset, _set_queryset)

    def to_python(self, value):
        # Slugs are unique in any letter case: one typed in another case names its project.
        if isinstance(value, str) and value not in self.empty_values:
            if value.lower() == DEFAULT_PROJECT_SLUG:
                return None
            if not text_problem(value):
                stored = self.queryset.filter(slug__iexact=value).values_list("slug", flat=True)
                value = stored.first() or value
        return super().to_python(value)


class FilterChoiceField(forms.ChoiceField):
    """A list page's filter among ``choices`` (a ``TextChoices``' ``.choices``), in its query
    string: empty ("Any") is every one; a value that is none of them is refused with the values
    there are, and that empty is every one."""

    def __init__(self, *, choices: list[tuple[str, str]], noun: str, plural: str, **kwargs):
        values = [value for value, _ in choices]
        listed = f"{', '.join(values[:-1])} and {values[-1]}" if len(values) > 1 else values[0]
        super().__init__(
            choices=[("", "Any"), *choices],
            required=False,
            label=noun.capitalize(),
            error_messages={
                "invalid_choice": f'There is no {noun} "%(value)s". The {plural} are {listed}; '
                f"leave it empty for every {noun}."
            },
            **kwargs,
        )


class ModelVersionFilterField(ModelChoiceField):
    """A list page's model version filter (in its query string), by id: empty is every model
    version; one that is none of ``queryset`` is refused, naming it, in the words every page
    with this filter says it."""

    def __init__(self, *, queryset, **kwargs) -> None:
        kwargs.setdefault("label", "Model version")
        super().__init__(
            queryset=queryset,
            required=False,
            error_messages={
                "invalid_choice": 'There is no model version "%(value)s"; leave it empty for '
                "every model version."
            },
            **kwargs,
        )


# A page number as the API's ``offset`` is written: digits only, at most 18 of them.
_PAGE_NUMBER = re.compile(r"[0-9]{1,18}")


class PageNumberField(forms.CharField):
    """A list page's ``page`` (in its query string): empty is the first page, otherwise a whole
    number from 1 in digits (no sign, at most 18 digits, as the API's ``offset``; and no leading
    zero, which the offset takes). Anything else is refused, naming it: Django's ``get_page``
    quietly showed the first page (or the last) for it. A page past the last is no error
    (``page_of``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(required=False, strip=False, label="Page", **kwargs)

    def to_python(self, value) -> int:
        value = super().to_python(value)
        if value in self.empty_values:
            return 1
        if not _PAGE_NUMBER.fullmatch(value) or value.startswith("0"):
            # The value as given, shortened and without a NUL: it is the caller's text.
            shown = value.replace("\x00", "")[:40]
            raise ValidationError(
                f'There is no page "{shown}": a page is a whole number from 1.', code="invalid"
            )
        return int(value)


class SearchField(forms.CharField):
    """A list page's search box (in its query string): the text as typed, less what cannot be
    searched for (``config.text.search_text``), cut to ``max_chars``; never refused."""

    def __init__(self, *, max_chars: int, **kwargs) -> None:
        self.max_chars = max_chars
        super().__init__(required=False, strip=False, **kwargs)
        # Stripped, not refused: a NUL typed into a search box finds what the rest finds.
        self.validators = _without_null_characters_validator(self.validators)

    def to_python(self, value) -> str:
        return search_text(super().to_python(value), max_chars=self.max_chars)


class FilterForm(forms.Form):
    """The base of the list pages' filter forms (their query string): a parameter given more
    than once (``?status=draft&status=finished``) is refused on its field, naming it, in the
    API's words (``config.refusals``), rather than filtered by its last value. A field that
    takes several values (a ``SelectMultiple`` widget) may be repeated."""

    def full_clean(self) -> None:
        super().full_clean()
        if not self.is_bound or not hasattr(self.data, "getlist"):
            return
        for name, field in self.fields.items():
            given = len(self.data.getlist(self.add_prefix(name)))
            if given > 1 and not getattr(field.widget, "allow_multiple_selected", False):
                # Only this error: whatever else was said of the value was said of one of them.
                self._errors.pop(name, None)
                self.add_error(
                    name,
                    ValidationError(
                        f'"{name}" is given {given} times. {REPEATED_PARAMETER}', code="repeated"
                    ),
                )


class PageForm(FilterForm):
    """The ``page`` of a list page's query string; the filter forms of the list pages extend
    it, so a bad page (or one given twice) is refused with their filters' 422."""

    page = PageNumberField()


def check_dates_in_order(data: dict, start: str, end: str) -> None:
    """Refuse a day range whose first day (``data[start]``) is after its last
    (``data[end]``): it is no range, and filtered by it a page would show nothing as if there
    were nothing."""
    first, last = data.get(start), data.get(end)
    if first and last and first > last:
        raise ValidationError(DATES_OUT_OF_ORDER)


def add_validation_errors(form: forms.Form, error: ValidationError) -> None:
    """A service's refusal shown on the form: each message on its field, or on the whole form
    when the service names a field the form does not have, or none (a refusal of the whole
    request, such as too many unfinished jobs)."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for field, field_errors in error.message_dict.items():
        form.add_error(field if field in form.fields else None, field_errors)
