"""The OpenAPI schema documents the JSON error responses of every endpoint (config.api).

A module of its own: drf-spectacular reads DRF's settings on import, and those name
``config.api``'s parser.
"""

import functools
import inspect

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from config.idempotency import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENT_ATTRIBUTE,
    KEY_PATTERN,
    REPLAYED_HEADER,
)

# ---- schema ------------------------------------------------------------------------------------

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
    },
    "required": ["detail"],
}
# A serializer's 400 names the fields (``{"content": ["..."]}``), other 400s say ``detail``.
_VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": {},
    "description": "Messages per field, or a detail message.",
}
_ERROR_RESPONSES = {
    "400": ("Invalid input: bad JSON, too deep, or messages per field.", _VALIDATION_ERROR_SCHEMA),
    "401": ("Not authenticated.", _ERROR_SCHEMA),
    "403": ("Not allowed for this user, or the CSRF check failed.", _ERROR_SCHEMA),
    "404": ("No such object visible to this user, or no such path.", _ERROR_SCHEMA),
    "405": ("Method not allowed.", _ERROR_SCHEMA),
    "406": ("Only JSON responses are available.", _ERROR_SCHEMA),
    "411": (
        "A chunked body (no Content-Length) on a server that does not read one: send the "
        "Content-Length.",
        _ERROR_SCHEMA,
    ),
    "413": ("The request body is larger than the limit it states.", _ERROR_SCHEMA),
    "429": (
        "Too many requests (this user's, or this address's without valid credentials) or a "
        "login lockout; Retry-After says when to try again.",
        _ERROR_SCHEMA,
    ),
    "500": ("Internal error; no details, quote the request id.", _ERROR_SCHEMA),
}


# A retry of a job whose state does not allow one; the body is ``{"detail": "..."}``.
RETRY_CONFLICT = OpenApiResponse(
    description="The job is queued, running or succeeded: nothing to retry."
)


# A cancel of a job that has already ended by itself; the body is ``{"detail": "..."}``
# (cancelling a cancelled job again answers 200, as the first time).
CANCEL_CONFLICT = OpenApiResponse(
    description="The job has already succeeded or failed: nothing to cancel."
)


@functools.cache
def queue_unreachable(job: type[serializers.Serializer]) -> OpenApiResponse:
    """The 503 of a request whose job is stored but could not be queued
    (``config.api.BrokerUnavailableResponse``): ``detail``, ``retry_after`` and the ``job`` as
    ``job`` describes it. One component per ``job``, however many operations answer it."""
    name = job.__name__.removesuffix("Serializer")
    return OpenApiResponse(
        response=inline_serializer(
            name=f"{name}QueueUnreachable",
            fields={
                "detail": serializers.CharField(),
                "retry_after": serializers.IntegerField(help_text="Seconds; also Retry-After."),
                "job": job(),
            },
        ),
        description="The job is stored, but the job queue is unreachable: it runs once the "
        "queue is back.",
    )


_IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": f"^{KEY_PATTERN.pattern}$"},
    location=OpenApiParameter.HEADER,
    description=(
        "Makes a retry safe: 1 to 255 printable ASCII characters, new for each request. A retry "
        "with the same key, path and JSON body (its keys in any order, spaced in any way) gets "
        f"the first answer back (`{REPLAYED_HEADER}: true`) and creates nothing; keys are kept "
        "a day (IDEMPOTENCY_KEY_TTL_SECONDS)."
    ),
)
_IDEMPOTENCY_RESPONSES = {
    "409": "A request with this Idempotency-Key is being handled; send it again.",
    "422": "This Idempotency-Key was used for another request (another path or JSON body).",
}


def _own_doc(doc: str | None) -> str:
    """A docstring as the schema shows it (indentation and trailing spaces removed)."""
    if not doc:
        return ""
    return "\n".join(line.rstrip() for line in inspect.cleandoc(doc).rstrip().split("\n"))


class ErrorDocumentingAutoSchema(AutoSchema):
    """Every operation documents the JSON error responses the API can give, and the
    ``Idempotency-Key`` header where the operation takes one (config.idempotency). Its
    description is its handler's docstring, else its view class's own: never the docstring of
    a class the view is made from (``ApiView``'s says nothing about the operation)."""

    def get_description(self) -> str:
        if spectacular_settings.DISABLE_DOCSTRING_DESCRIPTIONS:
            return ""
        handler = getattr(self.view, getattr(self.view, "action", self.method.lower()), None)
        # ``__doc__`` of the function and of the class itself: neither is inherited
        # (``inspect.getdoc`` and drf-spectacular's ``get_doc`` fall back to the bases').
        return _own_doc(getattr(handler, "__doc__", None)) or _own_doc(
            type(self.view).__dict__.get("__doc__")
        )

    def _takes_idempotency_key(self) -> bool:
        handler = getattr(self.view, self.method.lower(), None)
        return getattr(handler, IDEMPOTENT_ATTRIBUTE, False)

    def get_override_parameters(self):
        parameters = super().get_override_parameters()
        if self._takes_idempotency_key():
            return [*parameters, _IDEMPOTENCY_PARAMETER]
        return parameters

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        errors = dict(_ERROR_RESPONSES)
        if self._takes_idempotency_key():
            for code, description in _IDEMPOTENCY_RESPONSES.items():
                errors.setdefault(code, (description, _ERROR_SCHEMA))
        for code, (description, schema) in errors.items():
            documented = responses.setdefault(code, {"description": description})
            documented.setdefault("content", {"application/json": {"schema": schema}})
        for code, documented in responses.items():
            # An error an operation declares itself (a 409) with a description only.
            if code.startswith("4") and "content" not in documented:
                documented["content"] = {"application/json": {"schema": _ERROR_SCHEMA}}
        return responses
