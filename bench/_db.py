"""Shared by the benchmarks: a PostgreSQL database to fill, and bulk loading with COPY."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

# The ranking tables' columns as the benches load them (their row builders yield in this order).
RANKING_TASK_COLUMNS = [
    "id",
    "source_message_id",
    "prefix_message_id",
    "model_version_id",
    "source_owner_id",
    "status",
    "alternatives_requested",
    "overlap_required",
    "rankings_count",
    "leased_count",
    "error",
    "created_at",
    "ready_at",
]
CANDIDATE_COLUMNS = ["id", "task_id", "message_id", "is_source", "position"]
ASSIGNMENT_COLUMNS = [
    "id",
    "task_id",
    "trainer_id",
    "status",
    "presentation_order",
    "skip_reason",
    "leased_at",
    "expires_at",
    "closed_at",
]
RANKING_COLUMNS = [
    "id",
    "task_id",
    "assignment_id",
    "ranker_id",
    "ordering",
    "cannot_rank",
    "flags",
    "rationale",
    "presentation_order",
    "started_at",
    "submitted_at",
    "duration_ms",
]


def django_environment(database_url: str) -> None:
    """Environment defaults for a bench that runs Django, set before Django loads: its own
    database (``DATABASE_URL`` wins when set), the project's settings, and timings without
    DEBUG's query log."""
    os.environ.setdefault("DATABASE_URL", database_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "0")


def database_connect(url: str, *, dbname: str | None = None, autocommit: bool = False):
    """A psycopg connection to the database at ``url`` (or to ``dbname`` on the same server)."""
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    return psycopg.connect(
        dbname=dbname or config["NAME"],
        user=config["USER"] or None,
        password=config["PASSWORD"] or None,
        host=config["HOST"] or None,
        port=config["PORT"] or None,
        autocommit=autocommit,
    )


def database_ensure(url: str) -> None:
    """CREATE DATABASE if it does not exist (connecting to the server's ``postgres`` database)."""
    import dj_database_url
    from psycopg import sql

    name = dj_database_url.parse(url)["NAME"]
    with database_connect(url, dbname="postgres", autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


def django_ready_on_postgresql() -> None:
    """Create the bench's database if missing (``DATABASE_URL``), start Django on it, refuse
    any database but PostgreSQL, and migrate it."""
    database_ensure(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("This benchmark needs PostgreSQL (DATABASE_URL=postgres://...).")
    call_command("migrate", verbosity=0)


def copy_rows(model, columns: list[str], rows: Iterable[tuple]) -> int:
    """COPY rows into ``model``'s table; ``columns`` are field attnames (``owner_id``)."""
    import json

    from django.db import connection

    table = model._meta.db_table
    fields = {field.attname: field.column for field in model._meta.concrete_fields}
    names = [fields[column] for column in columns]
    # Fields added after a bench was written get their model default (a required text field
    # without one: ""), so COPY keeps working. Each default is computed once for every row:
    # fine for constants, not for a unique field.
    defaults = []
    for field in model._meta.concrete_fields:
        takes_empty_text = field.empty_strings_allowed and not field.null
        if field.attname in columns or not (field.has_default() or takes_empty_text):
            continue
        value = field.get_default()
        if field.get_internal_type() == "JSONField":
            value = json.dumps(value)
        names.append(field.column)
        defaults.append(value)
    extra = tuple(defaults)
    count = 0
    with connection.cursor() as cursor:
        quoted = ", ".join(f'"{name}"' for name in names)
        statement = f'COPY "{table}" ({quoted}) FROM STDIN'
        with cursor.cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(tuple(row) + extra)
                count += 1
    return count


def copied_tables_ready(models: Iterable) -> None:
    """After a COPY that assigned the ids: each of ``models``' id sequences set past its
    largest id (so rows the bench then creates get new ones), and the planner's statistics
    refreshed for every table."""
    from django.db import connection

    with connection.cursor() as cursor:
        for model in models:
            table = model._meta.db_table
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                f'COALESCE((SELECT MAX(id) FROM "{table}"), 0) + 1, false)'
            )
        cursor.execute("ANALYZE")


@contextmanager
def foreign_key_triggers_off() -> Iterator[None]:
    """A bulk load: skip the per-row foreign-key triggers (the caller assigns every id), and
    turn them back on however the load ends."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = DEFAULT")


def copy_ranking_tables(
    tasks: Iterable[tuple],
    candidates: Iterable[tuple],
    assignments: Iterable[tuple],
    rankings: Iterable[tuple],
    *,
    task_columns: list[str] = RANKING_TASK_COLUMNS,
) -> None:
    """COPY the ranking tables' rows, each in its column order above."""
    from ranking.models import Assignment, Candidate, Ranking, RankingTask

    copy_rows(RankingTask, task_columns, tasks)
    copy_rows(Candidate, CANDIDATE_COLUMNS, candidates)
    copy_rows(Assignment, ASSIGNMENT_COLUMNS, assignments)
    copy_rows(Ranking, RANKING_COLUMNS, rankings)
