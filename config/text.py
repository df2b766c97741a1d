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
LINE_MESSAGE = "Must be one line, without line breaks or control characters (newlines, tabs)."
# What ends a line or is no text to show in one: control characters (Cc: newline, carriage
# return, tab, escape, NEL...) and the line and paragraph separators (U+2028, U+2029).
NOT_IN_A_LINE = frozenset(("Cc", "Zl", "Zp"))


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


def one_line_problem(text: str) -> str | None:
    """Why ``text`` is no storable single line (None when it is): what :func:`text_problem`
    refuses, and any line break or other control character (newline, CR, tab, escape, U+2028)."""
    problem = text_problem(text)
    if problem is None and any(unicodedata.category(char) in NOT_IN_A_LINE for char in text):
        problem = LINE_MESSAGE
    return problem


def validate_one_line(text: str) -> None:
    """A name others type or read in a log line or a list (a model version's, for ``manage.py
    promote NAME``; a conversation's title; a project's name): storable, and one line
    (:func:`one_line_problem`)."""
    if (problem := one_line_problem(text)) is not None:
        raise ValidationError(problem, code="one_line")


def as_one_line(text: str) -> str:
    """``text`` as one line: each run of whitespace, line breaks and control characters (NUL
    among them) one space, and none at either end. Unpaired surrogates stay, for
    :func:`storable_text` to replace."""
    spaced = "".join(
        " " if char.isspace() or unicodedata.category(char) in NOT_IN_A_LINE else char
        for char in text
    )
    return " ".join(spaced.split())


# What :data:`NOT_IN_A_LINE` holds that a column can (NUL aside: none holds it), as a database
# regular expression: a data migration's filter for the rows to make one line.
NOT_IN_A_LINE_PATTERN = "[\x01-\x1f\x7f-\x9f\u2028\u2029]"


def rows_as_one_line(rows, field: str, *, empty: str = "") -> None:
    """Make ``field`` one line (:func:`as_one_line`) in each row of the queryset ``rows`` where
    it is not (``empty``: what a value with nothing left becomes); only those rows are read and
    written. For a data migration that makes a field one line (``rows``: its historical
    model's)."""
    changed = []
    for row in rows.filter(**{f"{field}__regex": NOT_IN_A_LINE_PATTERN}).only("pk", field):
        setattr(row, field, as_one_line(getattr(row, field)) or empty)
        changed.append(row)
    rows.model.objects.bulk_update(changed, [field], batch_size=500)


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``number`` and ``noun`` as a message says them: "1 record", "2 records", "0 records"
    (``plural``: where adding an s would not make it: "1 ranking without a prompt")."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def deleted_meanwhile(what: str, name: str = "") -> str:
    """What a save of a row another admin deleted while its page was open is answered (the
    admin's pages, a project's own page): ``what`` the row is ("project"), ``name`` its name."""
    row = f"The {what} “{name}”" if name else f"This {what}"
    return f"{row} was deleted while this page was open; nothing of this save was kept."
