"""bench/bench_export.py's seeding, on PostgreSQL: the rows it copies in leave the tables ready
for rows created afterwards, as every bench's bulk load does (bench/_db.copied_tables_ready)."""

import importlib
import os
import random
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection, models

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench_export(monkeypatch):
    """The bench module, imported as the bench runs it; the paths and environment variables it
    sets on import are put back afterwards."""
    monkeypatch.setattr(sys, "path", [str(BENCH), *sys.path])
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DEBUG"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    return importlib.import_module("bench_export")


def test_the_seeded_tables_give_rows_created_afterwards_new_ids(bench_export):
    tasks = bench_export.seed(bench_export.PAIRS_PER_TASK * 2, rng=random.Random(0))

    assert tasks == 2
    seeded = []
    for model in apps.get_models():
        if not isinstance(model._meta.pk, models.AutoField) or not model.objects.exists():
            continue
        seeded.append(model._meta.label)
        table = model._meta.db_table
        with connection.cursor() as cursor:
            # The id the next row created in the table gets (the COPY assigned its ids itself).
            cursor.execute(f"SELECT nextval(pg_get_serial_sequence('\"{table}\"', 'id'))")
            (next_id,) = cursor.fetchone()
        largest = model.objects.order_by("-pk").values_list("pk", flat=True).first()
        assert next_id > largest, (table, next_id, largest)
    assert {"labeling.Message", "ranking.Ranking", "sampler.Sample"} <= set(seeded)
