"""Values at the edge of what the database or the calendar holds: the last day there is, and
ids too large for a bigint. Each is an answer (a 400, a form error, a 404 or data), never a
500 or a failed job."""

import json
from datetime import UTC, date, datetime
from io import StringIO

import pytest
from django.core.management import call_command

from config.forms import MAX_ID
from config.querysets import local_day_bounds
from tests.ranking.conftest import ranked  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db
HUGE = str(10**20)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Tokyo"])
def test_a_bound_at_the_calendars_edge_is_left_out_as_it_excludes_nothing(settings, zone):
    settings.TIME_ZONE = zone
    assert local_day_bounds(date.max, date.max).keys() == {"gte"}
    bounds = local_day_bounds(date(2026, 3, 1), date(2026, 3, 1))
    assert (bounds["lt"] - bounds["gte"]).days == 1
    assert bounds["gte"].astimezone(UTC) < datetime(2026, 3, 2, tzinfo=UTC)
    # Every bound kept is an instant the database can be sent.
    for bound in local_day_bounds(date.min, date.max).values():
        bound.astimezone(UTC)


def test_the_last_day_there_is_exports_and_filters_feedback(ranked, admin_client_, tmp_path):  # noqa: F811
    response = admin_client_.get(
        "/api/exports/stream/", {"format": "pairs", "date_to": "9999-12-31"}
    )
    assert response.status_code == 200
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert len(rows) == 36
    out = tmp_path / "pairs.jsonl"
    call_command(
        "export_comparisons", "--format", "pairs", "--out", str(out), "--to", "9999-12-31",
        stdout=StringIO(), verbosity=0,
    )  # fmt: skip
    assert len(out.read_text().splitlines()) == 36
    page = admin_client_.get(
        "/write/feedback/", {"date_from": "9999-12-31", "date_to": "9999-12-31"}
    )
    assert page.status_code == 200
    quality = admin_client_.get("/rank/quality/", {"submitted_to": "9999-12-31"})
    assert quality.status_code == 200


def test_ids_too_large_for_a_bigint_are_a_400_on_their_field(admin_client_):
    for body, field in (
        ({"name": "P7", "slug": "p7", "trainer_group_ids": [10**20]}, "trainer_group_ids"),
        ({"name": "P8", "slug": "p8", "policies": [{"model_version_id": 10**20}]}, "policies"),
    ):
        response = admin_client_.post("/api/projects/", body, content_type="application/json")
        assert response.status_code == 400 and field in response.json(), response.content
    response = admin_client_.get("/api/exports/stream/", {"format": "pairs", "project_id": HUGE})
    assert response.status_code == 400 and "project_id" in response.json()
    boundary = admin_client_.get(
        "/api/exports/stream/", {"format": "pairs", "project_id": str(MAX_ID)}
    )
    assert boundary.status_code == 400 and "No project" in json.dumps(boundary.json())


def test_ids_too_large_for_a_bigint_on_pages_name_no_row(admin_client_):
    for field in ("model_versions", "exclude_trainers"):
        page = admin_client_.get("/exports/preview/", {"format": "pairs", field: HUGE})
        assert page.status_code == 422  # the form's errors, shown
        assert "Select a valid choice" in page.content.decode()
    redteam = admin_client_.get("/write/redteam/", {"model_version": HUGE})
    assert redteam.status_code == 422  # no such version: the filter's error, shown
    assert f"There is no model version &quot;{HUGE}&quot;" in redteam.content.decode()
    assert admin_client_.get("/write/guidelines/", {"version": HUGE}).status_code == 404
