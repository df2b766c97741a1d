"""Query helpers the apps' selectors share: optional filters, local-day date ranges, reading a
large table in chunks, ids of rows named by a unique field, a list page's page of rows; a
named lock held until the transaction ends, for services whose work must take turns; and a
save whose unique value (a name, a slug) another save took at the same moment, refused in the
words of the services' check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta

from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.models import Model, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

# The largest row id a bigint holds; a larger one names no row (and some databases' drivers
# fail on it instead of finding nothing).
MAX_ID = 2**63 - 1


def filter_given(queryset: QuerySet, **lookups: object) -> QuerySet:
    """``queryset`` filtered by each lookup that is given a value, one ``filter`` call each:
    ``None`` or an empty collection of ids means "no filter", not "match nothing"."""
    for lookup, value in lookups.items():
        if value is None or (isinstance(value, tuple | list | set | frozenset) and not value):
            continue
        queryset = queryset.filter(**{lookup: value})
    return queryset


class PastTheEndPage(Page):
    """A page number past a list's last page: no rows, and the way back leads to the last page
    (the pager says there is no such page and how many there are)."""

    past_the_end = True

    def __init__(self, number: int, paginator: Paginator) -> None:
        super().__init__([], number, paginator)

    def has_next(self) -> bool:
        return False

    def has_previous(self) -> bool:
        return True

    def previous_page_number(self) -> int:
        return self.paginator.num_pages


def page_of(rows, *, number: int, per_page: int) -> Page:
    """Page ``number`` (from 1, as ``config.forms.PageNumberField`` reads it) of ``rows``,
    ``per_page`` a page. Past the last page it is an empty ``PastTheEndPage``, not an error: the
    API likewise answers an ``offset`` past the end with no results (the list may have shrunk
    since its page was linked)."""
    paginator = Paginator(rows, per_page)
    if number > paginator.num_pages:
        return PastTheEndPage(number, paginator)
    return paginator.page(number)


def local_day_bounds(date_from: date | None, date_to: date | None) -> dict[str, datetime]:
    """Lookups (``gte``, ``lt``) for a datetime field to fall on the local days ``date_from``
    to ``date_to`` inclusive, in the current time zone. A bound at the edge of the calendar
    (``9999-12-31``, ``0001-01-01``: an instant Python cannot represent in UTC) is left out, as
    it excludes nothing."""
    zone = timezone.get_current_timezone()
    bounds = {}
    for lookup, day, days_after in (("gte", date_from, 0), ("lt", date_to, 1)):
        if day is None:
            continue
        try:
            instant = datetime.combine(day + timedelta(days=days_after), time.min, tzinfo=zone)
            instant.astimezone(UTC)
        except OverflowError:
            continue
        bounds[lookup] = instant
    return bounds


def values_in_chunks(queryset: QuerySet, *fields: str, chunk_size: int) -> Iterator[list[dict]]:
    """The rows' ``pk`` and ``fields`` as dicts, ``chunk_size`` rows at a time in primary-key
    order; each chunk starts after the last one's largest key (an index range scan however
    deep into the table, where an offset would read every row before it)."""
    queryset = queryset.order_by("pk")
    last_pk = 0
    while True:
        chunk = list(queryset.filter(pk__gt=last_pk).values("pk", *fields)[:chunk_size])
        if not chunk:
            return
        last_pk = chunk[-1]["pk"]
        yield chunk


def ids_named(
    queryset: QuerySet,
    field: str,
    names: list[str] | tuple[str, ...],
    *,
    what: str,
    key: str,
    any_case: bool = False,
) -> tuple[int, ...]:
    """The ids of the rows whose unique ``field`` is one of ``names``, in their order; a
    ValidationError under ``key`` naming every unknown one as given (a filter naming a row that
    does not exist must not quietly match everything). ``any_case``: for a field unique in any
    letter case, a name matches whatever its case."""
    fold = str.lower if any_case else str
    if any_case:
        queryset = queryset.annotate(folded_name=Lower(field))
        field = "folded_name"
    wanted = [fold(name) for name in names]
    found = dict(queryset.filter(**{f"{field}__in": wanted}).values_list(field, "pk"))
    unknown = sorted({name for name in names if fold(name) not in found})
    if unknown:
        raise ValidationError({key: f"Unknown {what}: {', '.join(unknown)}."})
    return tuple(dict.fromkeys(found[fold(name)] for name in names))


def ids_existing(
    queryset: QuerySet,
    ids: list[int] | tuple[int, ...],
    *,
    what: str,
    key: str,
    field: str = "pk",
) -> tuple[int, ...]:
    """``ids`` (values of ``field``, the primary key by default) when each names a row of
    ``queryset``; a ValidationError under ``key`` naming every unknown one (a filter on a row
    that does not exist would quietly match nothing)."""
    storable = [value for value in ids if -MAX_ID - 1 <= value <= MAX_ID]
    found = set(queryset.filter(**{f"{field}__in": storable}).values_list(field, flat=True))
    unknown = sorted(set(ids) - found)
    if unknown:
        label = ("id" if field == "pk" else field) + ("s" if len(unknown) > 1 else "")
        raise ValidationError({key: f"No {what} with {label} {', '.join(map(str, unknown))}."})
    return tuple(dict.fromkeys(ids))


def transaction_lock(name: str, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Hold every other transaction that takes the lock ``name`` until this one ends.
    PostgreSQL: an advisory transaction lock on the name's 64-bit hash, which holds up nothing
    else. SQLite takes none of its own: its transactions begin IMMEDIATE (config/settings.py),
    each holding the database's write lock from its first statement, so they run one at a time
    (all of them, not only those that take this lock)."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [name])


def saved_row_locked(instance: Model, field: str = "pk") -> object:
    """``field`` of ``instance``'s row as saved, the row locked until the transaction ends (a
    change or a delete of it under way is waited for). Its model's DoesNotExist when the row is
    gone, deleted since the caller read it: a save that goes on would fail to write it (a
    server error) or make it again."""
    model = type(instance)
    saved = model._default_manager.select_for_update().filter(pk=instance.pk)
    value = saved.values_list(field, flat=True).first()
    if value is None:
        raise model.DoesNotExist(
            f"No {model._meta.verbose_name} with id {instance.pk}: it was deleted."
        )
    return value


def saved_or_refused(save: Callable[[], object], clashes: Callable[[], dict[str, str]]) -> None:
    """``save()`` in a savepoint. A unique value (a name, a slug) that another save took after
    the caller's check saw it free (two saves at the same moment: the check read the table
    before the other committed; the constraint did not) is refused as the check refuses it:
    once the savepoint is rolled back (nothing of ``save`` kept), ``clashes()`` (the check's
    sentence for each field whose value another row has) is the ValidationError raised. An
    IntegrityError it finds no clash for is raised as it is."""
    try:
        with transaction.atomic():
            save()
    except IntegrityError as error:
        if errors := clashes():
            raise ValidationError(errors) from error
        raise
