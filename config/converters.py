"""The path converter every URL module reads row ids with: ``<id:conversation_id>``.

Django's ``int`` takes ``01`` and ``001`` as 1, so one row would have many URLs (and a cache,
a log search or a permission keyed on the path would see different rows). ``id`` matches only
the canonical form, a whole number from 1 without leading zeros, up to the database's bigint;
anything else matches no pattern, and is a 404 like any unknown path (JSON under ``/api/``).
Importing this module registers it; each URL module imports it.
"""

from django.urls import register_converter

from config.querysets import MAX_ID


class CanonicalIdConverter:
    regex = "[1-9][0-9]{0,18}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError("past the database's bigint")  # no match: a 404
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


register_converter(CanonicalIdConverter, "id")
