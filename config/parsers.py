"""The API's one body parser: JSON, bounded in size and depth (config.api explains the rest).

A module of its own: DRF's views read their parser classes from the settings on import.
"""

import json
import math

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser

from sampler.training.records import json_depth_exceeds

# Deeper than any body the API takes (a ranking's ordering is three levels); a hostile body
# nested thousands deep is refused before a serializer walks it.
MAX_JSON_DEPTH = 32


def body_too_large_detail(size: int | None) -> str:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    given = f"{size} bytes" if size is not None else "larger than that"
    return f"The request body is too large ({given}); the limit is {limit} bytes."


class RequestBodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


# Longer than any number the API takes (ids are at most 19 digits); Python refuses to convert
# more than 4300 digits anyway, with a message about its own settings.
MAX_JSON_NUMBER_CHARS = 100


def _bounded_int(text: str) -> int:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise ValueError(f"a number of more than {MAX_JSON_NUMBER_CHARS} characters")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise ValueError(f"a number of more than {MAX_JSON_NUMBER_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):  # 1e999: Infinity written as a number
        raise ValueError(f"{text} is too large a number (it is Infinity to a float)")
    return value


def object_without_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    """An object, refused when a key repeats: which value was meant cannot be known."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the key {repeated[:40]!r} appears twice in one object")
    return data


class BoundedJSONParser(BaseParser):
    """JSON bodies of at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes (413 past it, also for a
    chunked body with no length) and ``MAX_JSON_DEPTH`` levels (400 past it); NaN and
    Infinity, numbers longer than ``MAX_JSON_NUMBER_CHARS`` and a key repeated in one object
    are refused."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise RequestBodyTooLarge(body_too_large_detail(None))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ParseError(f"JSON parse error - not UTF-8 (byte {error.start + 1}).") from error
        too_deep = f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels (the limit)."
        try:
            data = json.loads(
                text,
                parse_constant=_refuse_constant,
                parse_int=_bounded_int,
                parse_float=_bounded_float,
                object_pairs_hook=object_without_repeated_keys,
            )
        except RecursionError as error:
            raise ParseError(too_deep) from error
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from error
        if json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(too_deep)
        return data
