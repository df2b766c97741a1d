"""What every htmx view shares: the typed request, a form's or a service's ValidationError turned
into messages, and a redirect that htmx follows too."""

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's middleware (``request.htmx``)."""

    htmx: HtmxDetails


def validation_messages(error: ValidationError, labels: dict[str, str] | None = None) -> list[str]:
    """Every message of ``error``, field errors included, in the order they were raised; a
    field named in ``labels`` is named before each of its messages (``Skip reason: ...``), for
    a message that does not say which box it is about."""
    if hasattr(error, "error_dict"):
        labels = labels or {}
        return [
            f"{labels[field]}: {text}" if field in labels else text
            for field, texts in error.message_dict.items()
            for text in texts
        ]
    return list(error.messages)


def form_cleaned_data(form: forms.Form) -> dict:
    """The form's cleaned data; when it is not valid, a ValidationError holding its errors as
    one text, so that the view answers it as it answers the service's refusals."""
    if not form.is_valid():
        raise ValidationError(
            [
                f"{form.fields[name].label or name.replace('_', ' ').capitalize()}: {message}"
                if name in form.fields
                else message
                for name, messages in form.errors.items()
                for message in messages
            ]
        )
    return form.cleaned_data


def redirect_page(request: HtmxHttpRequest, url: str) -> HttpResponse:
    """Go to the page at ``url``: htmx is told to load it whole (not swap it into the
    target), a plain form gets a 302."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
