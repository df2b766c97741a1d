"""Text a database cannot store, checked wherever text enters (API, forms, imports, commands).

JSON can carry NUL characters and unpaired surrogates (``"\\u0000"``, ``"\\ud800"``);
PostgreSQL refuses the first and UTF-8 cannot encode the second, so either would reach the
database as a 500. They are refused with a field error, except in search boxes, where
:func:`search_text` strips them, and in what a model wrote, which :func:`storable_text` makes
storable.
"""

import re
import unicodedata

from django.core.exceptions import ValidationError

NUL_MESSAGE = "NUL characters (\\u0000) are not allowed."
SURROGATE_MESSAGE = "Unpaired surrogate characters (\\ud800-\\udfff) are not allowed."
LINE_MESSAGE = "Must be one line, without control characters (newlines, tabs)."


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (None when it can)."""
    if "\x00" in text:
        return NUL_MESSAGE
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


# NUL, and any surrogate code point: in a str, even two that would form a pair in UTF-16
# cannot be encoded as UTF-8 (a decoded pair is one code point).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str, *, replacement: str = "\ufffd") -> str:
    """``text`` with each character a database cannot store replaced by ``replacement``
    (U+FFFD, the replacement character, unless told otherwise)."""
    return UNSTORABLE.sub(replacement, text)


def newlines_normalized(text: str) -> str:
    """``text`` with each line break as ``\\n``: a browser posts a form's line breaks as CRLF
    (the HTML form encodings make every one so), and a lone CR is a line break too."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def search_text(text: str, *, max_chars: int) -> str:
    """A search query as typed, without what cannot be searched for, cut to ``max_chars``."""
    return storable_text(text, replacement="")[:max_chars]


def validate_one_line(text: str) -> None:
    """A name others type or read in a log line (a model version's, for ``manage.py promote
    NAME``): storable, with no control character (newline, tab, escape...)."""
    problem = text_problem(text)
    if problem is None and any(unicodedata.category(char) == "Cc" for char in text):
        problem = LINE_MESSAGE
    if problem is not None:
        raise ValidationError(problem, code="one_line")
