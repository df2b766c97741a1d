"""The pool fill's reads on PostgreSQL: none sorts a project's whole task history. Each fill
(every 30 seconds, per project) asks why its last finished preparation failed, if it did;
without an index in that order, PostgreSQL joined and sorted every task the project ever made
(a top-N sort over the whole scan) to find the newest one."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ranking.projects.selectors import project_default
from ranking.rank import services
from tests.ranking.conftest import (
    finished_conversation,
    model_version_create,
    quick_trainer,
    task_from_source,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        # Any plan that needs no sort wins: a sort is left only where no index gives the order.
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_last_preparation_of_a_project_is_read_in_index_order_not_sorted():
    version = model_version_create("policy-plan")
    owner = quick_trainer("writer")
    for index in range(3):
        source = finished_conversation(owner, turns=(f"q{index}?", f"a{index}.")).active_leaf
        task_from_source(source, model_version=version)
    project = project_default()

    with CaptureQueriesContext(connection) as queries:
        assert services._last_preparation_failure(project) == ""

    (read,) = [query["sql"] for query in queries if "ORDER BY" in query["sql"]]
    plan = _plan(read)
    assert "Sort" not in plan, plan
    assert "genjob_ranking_finished" in plan, plan
