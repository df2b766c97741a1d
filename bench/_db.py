"""Shared by the benchmarks: a PostgreSQL database to fill, and bulk loading with COPY."""

from __future__ import annotations

from collections.abc import Iterable


def database_ensure(url: str) -> None:
    """CREATE DATABASE if it does not exist (connecting to the server's ``postgres`` database)."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    with psycopg.connect(
        dbname="postgres",
        user=config["USER"] or None,
        password=config["PASSWORD"] or None,
        host=config["HOST"] or None,
        port=config["PORT"] or None,
        autocommit=True,
    ) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]
        ).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
            print(f"created database {config['NAME']}")


def copy_rows(model, columns: list[str], rows: Iterable[tuple]) -> int:
    """COPY rows into ``model``'s table; ``columns`` are field attnames (``owner_id``)."""
    import json

    from django.db import connection

    table = model._meta.db_table
    fields = {field.attname: field.column for field in model._meta.concrete_fields}
    names = [fields[column] for column in columns]
    # Fields added after a bench was written get their model default, so COPY keeps working.
    # Each default is computed once for every row: fine for constants, not for a unique field.
    defaults = []
    for field in model._meta.concrete_fields:
        if field.attname in columns or not field.has_default():
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


def database_drop(url: str) -> None:
    """DROP DATABASE (a bench's own, at its end), closing whatever still holds it."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    with psycopg.connect(
        dbname="postgres",
        user=config["USER"] or None,
        password=config["PASSWORD"] or None,
        host=config["HOST"] or None,
        port=config["PORT"] or None,
        autocommit=True,
    ) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(config["NAME"])
            )
        )
