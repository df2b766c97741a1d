"""API-wide behaviour: one JSON error format for everything under ``/api/``, strict input.

- Every error under ``/api/`` is a JSON object with a ``detail`` message (400s from a
  serializer carry the messages per field instead): unknown paths, 405, 413, bad JSON, CSRF
  failures and 500s (no traceback; the request id to quote instead). ``ApiErrorMiddleware``
  turns any other error page into that shape; ``handler404``/``handler500`` in ``config.urls``
  and ``CSRF_FAILURE_VIEW`` answer the errors Django raises outside the views.
- Bodies are JSON only (``config.parsers.BoundedJSONParser``), at most
  ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes and ``MAX_JSON_DEPTH`` levels deep.
- Every view is an ``ApiView``: a query parameter an operation does not take is a 400 that
  names it (``validated_query`` checks those of the operations that take some).
- Serializers use the ``Strict*`` fields: booleans are not numbers, floats are not integers,
  numbers are not strings, and text a database cannot store is refused (config.text).
- ``config.api_schema.ErrorDocumentingAutoSchema`` documents the error responses of each
  endpoint.
"""

from __future__ import annotations

import base64
import math
import re
from http import HTTPStatus

from django.apps import apps
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, is_valid_path, resolve
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import defaults
from django.views.csrf import csrf_failure as django_csrf_failure
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, UnsupportedMediaType
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from config.converters import CanonicalIdConverter
from config.parsers import body_too_large_detail
from config.querysets import MAX_ID
from config.refusals import REPEATED_PARAMETER
from config.text import search_text, text_problem
from config.uploads import FormTextNotUtf8

API_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    path = request.path_info
    return path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/")


def api_error_response(request: HttpRequest, status_code: int, detail: str) -> JsonResponse:
    body = {"detail": detail}
    request_id = getattr(request, "request_id", "")
    if status_code >= 500 and request_id:
        body["request_id"] = request_id
    return JsonResponse(body, status=status_code)


def _error_detail(request: HttpRequest, status_code: int) -> str:
    """The status's phrase; for a 404 on a path that exists with a trailing slash, that path;
    for one with an id not written canonically, that id."""
    if status_code == 404 and (refused := _path_id_refused(request)):
        return refused
    if status_code == 404 and (hint := _slash_hint(request)):
        return f"Not Found. {hint}"
    return _reason(status_code)


def _path_id_refused(request: HttpRequest) -> str:
    """Where the request's path is an endpoint's but for a segment in the place of an id that
    is no canonical id (``01``, ``abc``, past the database's range, which ``config.converters``
    matches no pattern with): that segment, named as what it would have been the id of."""
    path = request.path_info
    try:
        resolve(path)
        return ""  # the path is an endpoint's: its 404 is the view's own
    except Resolver404:
        pass
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if not segment or _is_canonical_id(segment):
            continue
        # An id no other row can have, in the segment's place: the endpoint it would reach.
        tried = "/".join([*segments[:index], str(MAX_ID), *segments[index + 1 :]])
        try:
            match = resolve(tried)
        except Resolver404:
            continue
        if MAX_ID not in match.kwargs.values() or index == 0:
            continue
        collection = segments[index - 1]
        # /api/jobs/generation/<id>/: a generation job; /api/model-versions/<id>/: a model version.
        noun = (
            f"{collection.replace('_', ' ')} job"
            if collection == match.kwargs.get("kind")
            else collection.removesuffix("s").replace("-", " ")
        )
        return (
            f"No {noun} with the id '{segment}': an id in the path is a whole number from 1, "
            "written without leading zeros (1, not 01)."
        )
    return ""


def _is_canonical_id(segment: str) -> bool:
    return re.fullmatch(CanonicalIdConverter.regex, segment) is not None and int(segment) <= MAX_ID


def _slash_hint(request: HttpRequest) -> str:
    """Where the request's path, missing its trailing slash, would have been answered."""
    path = request.path_info
    if path.endswith("/") or not is_valid_path(f"{path}/"):
        return ""
    return f"API paths end with a slash: {request.path}/ (requests are not redirected there)."


def _reason(status_code: int) -> str:
    try:
        return f"{HTTPStatus(status_code).phrase}."
    except ValueError:
        return "Request failed."


# ---- errors ------------------------------------------------------------------------------------


# What ``get_object_or_404`` says of a row it did not find: the model's class name.
_ROW_NOT_FOUND = re.compile(r"No (\w+) matches the given query\.")


def _row_not_found_in_words(exc: Http404) -> Http404:
    """``exc`` worded by the model's verbose name ("No model version with that id."), where it
    is ``get_object_or_404``'s sentence; any other 404 as it was raised."""
    match = _ROW_NOT_FOUND.fullmatch(str(exc.args[0])) if exc.args else None
    if match is None:
        return exc
    named = [model for model in apps.get_models() if model._meta.object_name == match[1]]
    noun = named[0]._meta.verbose_name if named else match[1]
    return Http404(f"No {noun} with that id.")


def _row_gone_in_words(exc: ObjectDoesNotExist) -> Exception:
    """A row a service read again, locked, and found deleted since the view found it (another
    request's delete committed meanwhile): what the view would have answered a moment later, a
    404 in ``_row_not_found_in_words``'s words. Only a model's own DoesNotExist: another kind
    (a missing related row, ``RelatedObjectDoesNotExist``) is a fault, left as it is."""
    named = [model for model in apps.get_models() if type(exc) is model.DoesNotExist]
    if not named:
        return exc
    return Http404(f"No {named[0]._meta.verbose_name} with that id.")


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ObjectDoesNotExist):
        exc = _row_gone_in_words(exc)
    if isinstance(exc, Http404):
        exc = _row_not_found_in_words(exc)
    if isinstance(exc, DjangoValidationError):
        # A field's errors are named by field; a rule about the whole request is one sentence, as
        # every other ``detail`` is.
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        # A refusal that waiting cures (too much unfinished work) says so with its own status.
        code = getattr(exc, "http_status", status.HTTP_400_BAD_REQUEST)
        return Response(_error_shape(detail), status=code)
    if isinstance(exc, UnsupportedMediaType):
        # A form or multipart body (a file) where JSON is expected is bad input like any other:
        # refused before anything is read or created.
        return Response(
            {"detail": f"Send a JSON body (Content-Type: application/json). {exc.detail}"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = drf_exception_handler(exc, context)
    if isinstance(exc, serializers.ValidationError) and response is not None:
        response.data = _error_shape(response.data)
    return response


def _error_shape(errors):
    """One shape for every 400: ``{"detail": "..."}`` for what concerns the whole request (a
    body that is not an object, a rule across fields: DRF's non-field errors, Django's
    ``__all__``), and ``{"field": ["...", ...]}`` for each field (a list, even when the code
    raised one string). A nested object's errors (a list's item, by index) are shaped alike."""
    if not isinstance(errors, dict):
        errors = {"detail": errors}
    shaped = {}
    whole: list[str] = []
    for key, value in errors.items():
        if key in ("detail", NON_FIELD_ERRORS):
            whole.extend(
                str(message) for message in (value if isinstance(value, list) else [value])
            )
        elif isinstance(value, dict):
            shaped[key] = _error_shape(value)
        elif isinstance(value, list):
            shaped[key] = [_error_shape(item) if isinstance(item, dict) else item for item in value]
        else:
            shaped[key] = [value]
    if whole:
        shaped = {"detail": " ".join(whole), **shaped}
    return shaped


class ApiErrorMiddleware:
    """Under ``/api/``: refuse an oversized body up front (413, the limit stated) and answer
    every error as JSON, whatever produced it (Django's 404/400/403/500 pages, a redirect-less
    405, the debug pages in development)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api_request(request):
            return self.get_response(request)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw_length = request.META.get("CONTENT_LENGTH") or "0"
        # Digits only: int() would also read " 19", "+19", "1_9" and other scripts' digits.
        if not re.fullmatch(r"[0-9]{1,18}", raw_length):
            return api_error_response(request, 400, "The Content-Length header is not a number.")
        declared = int(raw_length)
        if limit is not None and declared > limit:
            return api_error_response(request, 413, body_too_large_detail(declared))
        if _chunked_unread(request):
            return api_error_response(
                request,
                411,
                "This server reads a request body only with a Content-Length header: send one "
                "(or run the production server, which reads chunked bodies).",
            )
        if _basic_credentials_unstorable(request):
            # Looking such a username up would fail in the database (PostgreSQL refuses NUL).
            return api_error_response(
                request, 401, "Invalid basic credentials: NUL characters are not allowed."
            )
        response = self.get_response(request)
        if response.status_code >= 400 and not _is_json(response):
            # Every header the stack below set (security headers, Allow, Retry-After) but those
            # of the body it replaces.
            kept = {
                name: value
                for name, value in response.items()
                if name.lower() not in {"content-type", "content-length", "content-language"}
            }
            code = response.status_code
            response = api_error_response(request, code, _error_detail(request, code))
            for name, value in kept.items():
                response[name] = value
        return response


def _chunked_unread(request: HttpRequest) -> bool:
    """A chunked body on a server that does not decode it (Django's development server, the
    embedded default): the app would read no body at all and act on an empty one. Servers that
    decode it (gunicorn) say so with ``wsgi.input_terminated``."""
    chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked and not request.META.get("wsgi.input_terminated")


def _basic_credentials_unstorable(request: HttpRequest) -> bool:
    """Whether a Basic Authorization header carries NUL (decoded as DRF decodes it)."""
    scheme, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        raw = base64.b64decode(encoded.strip())
    except ValueError:
        return False  # malformed: the authentication class answers 401 itself
    try:
        credentials = raw.decode("utf-8")
    except UnicodeDecodeError:
        credentials = raw.decode("latin-1")
    return text_problem(credentials) is not None


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip().endswith("json")


def _page_or_json(request: HttpRequest, status_code: int, page) -> HttpResponse:
    if is_api_request(request):
        return api_error_response(request, status_code, _reason(status_code))
    return page()


NOT_UTF8 = (
    "The {where} held bytes that are not UTF-8 text, so nothing was read from it and nothing "
    "was saved. Send it again as UTF-8 (every page of this site sends its forms so)."
)


def not_utf8_response(request: HttpRequest, where: str) -> HttpResponse:
    """A 400 saying that the request's ``where`` (its query, its form's text) is not UTF-8: JSON
    under ``/api/``, else a page whose link leads back to the page the form was on (when it is
    this site's) or to the address itself (a GET)."""
    detail = NOT_UTF8.format(where=where)
    if is_api_request(request):
        return api_error_response(request, 400, detail)
    back = request.path if request.method == "GET" else "/"
    referer = request.headers.get("Referer", "")
    if request.method != "GET" and url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = referer
    return render(request, "not_utf8.html", {"detail": detail, "back": back}, status=400)


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, FormTextNotUtf8):  # a multipart form's text (config.uploads)
        return not_utf8_response(request, "form's text")
    return _page_or_json(request, 400, lambda: defaults.bad_request(request, exception))


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _page_or_json(request, 403, lambda: defaults.permission_denied(request, exception))


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_request(request):
        if refused := _path_id_refused(request):
            return api_error_response(request, 404, refused)
        hint = _slash_hint(request)
        return api_error_response(
            request,
            404,
            f"No API endpoint at this path. {hint}" if hint else "No API endpoint at this path.",
        )
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if is_api_request(request):
        # Django has logged the exception (and error reporting has it); the caller gets no
        # traceback, only the request id to quote.
        return api_error_response(
            request, 500, "Internal server error: the request was not completed."
        )
    return defaults.server_error(request)


# What an htmx request of a page whose CSRF token is no longer the session's is told.
STALE_PAGE_DETAIL = (
    "This page is out of date (you logged in again, in another tab or window): reload it."
)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if is_api_request(request):
        return api_error_response(request, 403, f"CSRF check failed: {reason}")
    if request.headers.get("HX-Request") == "true":
        # A page shown before a login (which renews the token) sends the old one: its script
        # tells the user to reload (static/js/tandem.js), not that they may not do this.
        response = HttpResponse(STALE_PAGE_DETAIL, status=403, content_type="text/plain")
        response["Tandem-CSRF-Failed"] = "true"
        return response
    return django_csrf_failure(request, reason=reason)


# ---- input -------------------------------------------------------------------------------------


class UnknownFields(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "unknown_fields"


def validated_input(
    serializer_class: type[serializers.Serializer], data, *, body: bool = True, **kwargs
) -> dict:
    """``data`` as ``serializer_class`` validates it; a 400 with the messages per field when it
    is not valid (``kwargs``: ``partial`` and the like).

    A body (``body``) naming a field the serializer does not have is a 400 that names it: a
    misspelt or unsupported field (``model_version_id`` where none is taken) must not be
    quietly ignored. Query strings go through ``validated_query``.
    """
    serializer = serializer_class(data=data, **kwargs)
    if body and isinstance(data, dict):
        unknown = _unknown_fields(data, serializer.fields)
        if unknown:
            raise UnknownFields(unknown)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class _NoInput(serializers.Serializer):
    """The body of an operation that takes none."""


def no_body_fields(request: Request) -> None:
    """For an operation that takes no body: a field sent to it is a 400 naming it, before
    anything is read or changed (``{"status": "discarded"}`` posted to ``finish/`` is not
    quietly a finish, nor ``{"project": ...}`` posted to the claim a claim in that project).
    A body that is not JSON is not read (an empty form, as some clients send by default)."""
    media_type = (request.content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json" or request.META.get("CONTENT_LENGTH") in {None, "", "0"}:
        return
    validated_input(_NoInput, request.data)


def validated_query(
    serializer_class: type[serializers.Serializer],
    params,
    *,
    lists: frozenset[str] | set[str] = frozenset(),
    also: tuple[str, ...] = (),
) -> dict:
    """Query parameters as ``serializer_class`` validates them: ``lists`` may be repeated (each
    value an item), ``also`` are read elsewhere (paging). A parameter the endpoint does not take
    (a misspelt filter would quietly filter nothing), or one given twice that takes one value,
    is a 400 naming it."""
    names = [name for name in params if name not in also]
    query_names_checked(params, serializer_class().fields, lists=lists, also=also)
    data = {name: params.getlist(name) if name in lists else params[name] for name in names}
    return validated_input(serializer_class, data, body=False)


def query_names_checked(
    params, taken, *, lists: frozenset[str] | set[str] = frozenset(), also: tuple[str, ...] = ()
) -> None:
    """A 400 for a query parameter not among ``taken`` (nor ``also``), naming it, or for one
    given twice that is not one of ``lists``."""
    names = [name for name in params if name not in also]
    unknown = _unknown_fields(dict.fromkeys(names), taken, "parameters")
    if unknown:
        raise UnknownFields(unknown)
    repeated = {
        name: [REPEATED_PARAMETER]
        for name in [*names, *also]
        if name in params and name not in lists and len(params.getlist(name)) > 1
    }
    if repeated:
        raise serializers.ValidationError(repeated)


def _unknown_fields(data: dict, fields, noun: str = "fields") -> str:
    """ "Unknown fields: ..." for the keys of ``data`` that are not ``fields`` ("" when none)."""
    unknown = sorted(set(data) - set(fields))
    if not unknown:
        return ""
    # The names as given, shortened: they are the caller's text.
    names = ", ".join(repr(name[:40]) for name in unknown[:5])
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    return f"Unknown {noun}: {names}{more}."


class ApiView(APIView):
    """The base of every API view: a query parameter the operation does not take is a 400 that
    names it, not ignored (a misspelt filter would filter nothing; a field sent in the query
    string instead of the body would be left out of what is created). The methods in
    ``query_checked_by_handler`` read query parameters and check them themselves
    (``validated_query``, ``query_names_checked``)."""

    query_checked_by_handler: frozenset[str] = frozenset()

    def get_view_name(self) -> str:
        # "Conversation List", not the class's "Conversation List Api".
        return super().get_view_name().removesuffix(" Api")

    def get_view_description(self, html: bool = False) -> str:
        """What OPTIONS tells an API user the endpoint does: each method's description as the
        schema gives it (``extend_schema``'s, else the handler's docstring, else the view's),
        one line per method where they differ. A view's docstring can be about the code (why
        views are split as they are); the schema's descriptions are written for the API's
        users."""
        described = {}
        for method in self.http_method_names:
            handler = getattr(self, method, None)
            if handler is None or method in {"head", "options"}:
                continue
            # The schema class ``extend_schema`` gave the handler, as the schema generator
            # picks it up, else the view's.
            schema_class = getattr(handler, "kwargs", {}).get("schema") or type(self.schema)
            schema = schema_class()
            schema.view, schema.method = self, method.upper()
            described[method] = schema.get_description()
        texts = set(described.values())
        if len(texts) == 1:
            return texts.pop()
        return "\n".join(f"{method.upper()}: {text}" for method, text in described.items())

    def initial(self, request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        method = request.method.lower()
        method = "get" if method == "head" else method
        if method == "options" or not hasattr(self, method):
            return  # a description of the endpoint (the query is the one asked about), or a 405
        if method not in self.query_checked_by_handler:
            query_names_checked(request.query_params, ())


# What an item of a list of objects that is not one (a number, a string, a list) is told.
NOT_AN_OBJECT_MESSAGE = "Each item must be an object."


class StrictObjectSerializer(serializers.Serializer):
    """An object nested in a body (a list's items): a key it does not take is refused by name,
    as ``validated_input`` refuses one at the top level, and an item that is no object is
    refused with a sentence under its index (``{"policies": {"0": ["..."]}}``), not DRF's
    ``{"detail": ...}``, which is for the whole request."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError(NOT_AN_OBJECT_MESSAGE, code="invalid")
        if unknown := _unknown_fields(data, self.fields):
            raise serializers.ValidationError(unknown)
        return super().to_internal_value(data)


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """``limit`` and ``offset`` as whole numbers (``limit`` at least 1, capped at ``max_limit``),
    or a 400 naming the one that is not: DRF's own falls back to the defaults silently."""

    max_limit = 200

    def get_limit(self, request) -> int | None:
        raw = _once(request, self.limit_query_param)
        if raw is None:
            return self.default_limit
        limit = _whole_number(raw, self.limit_query_param, minimum=1)
        return min(limit, self.max_limit) if self.max_limit else limit

    def get_offset(self, request) -> int:
        raw = _once(request, self.offset_query_param)
        return 0 if raw is None else _whole_number(raw, self.offset_query_param, minimum=0)


def _once(request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise serializers.ValidationError({name: [REPEATED_PARAMETER]})
    return values[0] if values else None


def _whole_number(raw: str, name: str, *, minimum: int) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", raw) or int(raw) < minimum:
        raise serializers.ValidationError(
            {name: [f"Must be a whole number, at least {minimum}, of at most 18 digits."]}
        )
    return int(raw)


# ---- strict fields -----------------------------------------------------------------------------


class _StrictTypeMixin:
    """Refuses, with the field's ``strict`` error, a JSON value of another type than
    ``accepted_types`` (or one of ``refused_types``: a boolean is an ``int`` to Python), before
    the field's own conversion could coerce it."""

    accepted_types: tuple[type, ...]
    refused_types: tuple[type, ...] = ()

    def to_internal_value(self, data):
        if not isinstance(data, self.accepted_types) or isinstance(data, self.refused_types):
            self.fail("strict")
        return super().to_internal_value(data)


class _StrictTextMixin(_StrictTypeMixin):
    """A string exactly (``123`` and ``true`` are refused, not turned into ``"123"``); NUL and
    unpaired surrogates are refused with one message, before the field parses the text."""

    default_error_messages = {"strict": "Must be a string (not a number, boolean, list or object)."}
    accepted_types = (str,)

    def to_internal_value(self, data):
        problem = text_problem(data) if isinstance(data, str) else None
        if problem:
            raise serializers.ValidationError(problem)
        return super().to_internal_value(data)


class StrictCharField(_StrictTextMixin, serializers.CharField):
    """Text exactly; NUL and unpaired surrogates are refused with the field's error."""


class StrictSlugField(_StrictTextMixin, serializers.SlugField):
    """A slug, given as a string with nothing unstorable in it."""


class StrictURLField(_StrictTextMixin, serializers.URLField):
    """A URL, given as a string with nothing unstorable in it."""


class StrictDateTimeField(_StrictTextMixin, serializers.DateTimeField):
    """An ISO 8601 date and time with its time zone offset (``Z``, ``+02:00``), given as a
    string with nothing unstorable (a NUL after it is refused, not cut off). A time without an
    offset is refused: read in the server's zone, it would be hours off for a caller elsewhere."""

    default_error_messages = {
        "naive": (
            "Must include a time zone offset, e.g. 2030-01-01T17:00:00Z or "
            "2030-01-01T17:00:00+02:00."
        )
    }

    def enforce_timezone(self, value):
        # Called on the parsed input (DRF would make a naive time aware in the server's zone).
        if timezone.is_naive(value):
            self.fail("naive")
        return super().enforce_timezone(value)


class StrictChoiceField(_StrictTextMixin, serializers.ChoiceField):
    """One of the choices, given as a string (``1`` never matches ``"1"``); NUL and unpaired
    surrogates are refused as in text fields (the "not a valid choice" message repeats the
    value)."""

    default_error_messages = {"strict": "Must be a string, one of the choices."}
    accepted_types = (str,)


class StrictIntegerField(_StrictTypeMixin, serializers.IntegerField):
    """An integer exactly: ``true``, ``1.9`` and ``"3"`` are refused, not coerced."""

    default_error_messages = {"strict": "Must be an integer (not a string, float or boolean)."}
    accepted_types = (int,)
    refused_types = (bool,)


class StrictIdField(StrictIntegerField):
    """A row id: a positive integer that fits the database's bigint."""

    def __init__(self, **kwargs) -> None:
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)


class StrictFloatField(_StrictTypeMixin, serializers.FloatField):
    """A JSON number (integer or not), never a string or a boolean."""

    default_error_messages = {"strict": "Must be a number (not a string or boolean)."}
    accepted_types = (int, float)
    refused_types = (bool,)

    def to_internal_value(self, data):
        if isinstance(data, float) and not math.isfinite(data):
            self.fail("strict")
        return super().to_internal_value(data)


class StrictBooleanField(_StrictTypeMixin, serializers.BooleanField):
    """``true`` or ``false`` exactly (``1``, ``"yes"`` and ``"true"`` are refused)."""

    default_error_messages = {"strict": "Must be true or false."}
    accepted_types = (bool,)


class StrictDictField(serializers.DictField):
    """An object whose text is storable: its keys and, at any depth, its string values (a
    JSON column refuses NUL and unpaired surrogates as a text column does)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            problem = _json_text_problem(data)
            if problem:
                raise serializers.ValidationError(problem)
        return super().to_internal_value(data)


def _json_text_problem(value, where: str = "") -> str | None:
    """Why some key or string inside ``value`` cannot be stored (None when all can)."""
    if isinstance(value, str):
        problem = text_problem(value)
        return f"{where}: {problem}" if problem and where else problem
    if isinstance(value, dict):
        for key, item in value.items():
            name = repr(str(key)[:40])  # the caller's text, shortened
            problem = text_problem(str(key))
            if problem:
                return f"Key {name}: {problem}"
            problem = _json_text_problem(item, f"Value of {name}")
            if problem:
                return problem
    elif isinstance(value, list):
        # Numbered from 1, as every other refusal numbers items.
        for number, item in enumerate(value, start=1):
            problem = _json_text_problem(
                item, f"{where}, item {number}" if where else f"Item {number}"
            )
            if problem:
                return problem
    return None


class QueryIntegerField(serializers.IntegerField):
    """A whole number from a query string, in ASCII digits (a leading minus allowed, for the
    bound's own message): ``7.0``, ``+7``, ``1_000``, `` 7`` and other scripts' digits are
    refused, which DRF's field (and Python's ``int``) would read as numbers."""

    default_error_messages = {"invalid": "A whole number in digits is required (such as 7)."}

    def to_internal_value(self, data):
        if not isinstance(data, str) or not re.fullmatch(r"-?[0-9]{1,1000}", data):
            self.fail("invalid")
        return super().to_internal_value(data)


class QueryDateField(serializers.DateField):
    """A day from a query string, written YYYY-MM-DD: the other ISO 8601 forms Python's
    ``date.fromisoformat`` reads (``20260101``, ``2026-W01-1``) are refused."""

    default_error_messages = {
        "invalid": "A date written YYYY-MM-DD is required (such as 2026-05-01)."
    }

    def to_internal_value(self, value):
        if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            self.fail("invalid")
        return super().to_internal_value(value)


class QueryFloatField(serializers.FloatField):
    """A finite number from a query string, in ASCII digits with an optional fraction and
    exponent (``0.5``, ``5e-1``): ``nan``, ``inf``, ``0.0_5``, `` 0.5`` and other scripts'
    digits are refused, which Python's ``float`` would read."""

    default_error_messages = {"invalid": "A number in digits is required (such as 0.5)."}

    def to_internal_value(self, data):
        written = r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?"
        if not isinstance(data, str) or len(data) > 100 or not re.fullmatch(written, data):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if not math.isfinite(value):  # 1e999
            self.fail("invalid")
        return value


class QueryBooleanField(serializers.BooleanField):
    """``true`` or ``false`` from a query string, as OpenAPI writes a boolean there: ``1``,
    ``no``, ``off`` and ``False`` are refused, which DRF's field would read as booleans."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if data not in ("true", "false"):
            self.fail("invalid")
        return data == "true"


class SearchTextField(serializers.CharField):
    """A search query: what cannot be searched for (NUL, unpaired surrogates) is dropped, not
    refused, and the query is cut to ``max_chars``."""

    def __init__(self, *, max_chars: int, **kwargs) -> None:
        self.max_chars = max_chars
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value(search_text(str(data), max_chars=self.max_chars))


class BrokerUnavailableResponse(Response):
    """503: the job is stored and will run once the queue is reachable again."""

    RETRY_AFTER_SECONDS = 30

    def __init__(self, detail: str, **extra) -> None:
        super().__init__(
            {"detail": detail, "retry_after": self.RETRY_AFTER_SECONDS, **extra},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(self.RETRY_AFTER_SECONDS)},
        )
