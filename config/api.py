"""API-wide behaviour: every error is a JSON 4xx with a message, never an HTML 500 page."""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


class StrictIntegerField(serializers.IntegerField):
    """An integer exactly: ``true``, ``1.9`` and ``"3"`` are refused, not coerced."""

    default_error_messages = {"strict": "Must be an integer (not a string, float or boolean)."}

    def to_internal_value(self, data):
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("strict")
        return super().to_internal_value(data)


class BrokerUnavailableResponse(Response):
    """503: the job is stored and will run once the queue is reachable again."""

    RETRY_AFTER_SECONDS = 30

    def __init__(self, detail: str, **extra) -> None:
        super().__init__(
            {"detail": detail, "retry_after": self.RETRY_AFTER_SECONDS, **extra},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(self.RETRY_AFTER_SECONDS)},
        )
