"""What every htmx view shares: the typed request and turning a ValidationError into messages."""

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's middleware (``request.htmx``)."""

    htmx: HtmxDetails


def validation_messages(error: ValidationError) -> list[str]:
    """Every message of ``error``, field errors included, in the order they were raised."""
    if hasattr(error, "error_dict"):
        return [text for texts in error.message_dict.values() for text in texts]
    return list(error.messages)
