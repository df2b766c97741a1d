"""The guideline version travels with rankings and demonstrations into the exports."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from ranking.exports.filters import ExportFilters
from ranking.exports.pairs import pair_records
from ranking.exports.rankings import ranking_records
from ranking.rank import services as ranking_services
from ranking.rank.services import RankingInput
from tests.ranking.conftest import ready_task  # noqa: F401 (a fixture)


def test_a_ranking_made_under_v2_exports_with_v2_and_the_filter_works(
    ready_task,  # noqa: F811
    trainer,
    version_2,
    tmp_path,
):
    assignment = ranking_services.task_claim_next(trainer=trainer)
    ids = sorted(assignment.task.candidates.values_list("id", flat=True))
    ranking = ranking_services.ranking_submit(
        assignment=assignment, trainer=trainer, ranking=RankingInput([[i] for i in ids])
    )
    assert ranking.guideline_version == version_2

    rows = list(ranking_records(ExportFilters()))
    assert [row["guideline_version"] for row in rows] == [2]
    pairs = list(pair_records(ExportFilters()))
    assert len(pairs) == 6 and {p["guideline_version"] for p in pairs} == {2}
    aggregated = list(pair_records(ExportFilters(pair_mode="aggregated")))
    assert {p["guideline_version"] for p in aggregated} == {2}
    assert list(ranking_records(ExportFilters(guideline_versions=(1,)))) == []
    assert list(pair_records(ExportFilters(guideline_versions=(1,)))) == []
    assert len(list(ranking_records(ExportFilters(guideline_versions=(1, 2))))) == 1

    out = tmp_path / "rankings.jsonl"
    call_command(
        "export_comparisons",
        "--format",
        "rankings",
        "--out",
        str(out),
        "--guideline-version",
        "1",
        verbosity=0,
    )
    assert out.read_text() == ""


def test_export_filters_validate_and_round_trip_the_new_fields():
    filters = ExportFilters(red_team="only", guideline_versions=(2, 3))
    assert ExportFilters.from_dict(filters.as_dict()) == filters
    with pytest.raises(ValidationError):
        ExportFilters(red_team="sometimes")
    with pytest.raises(ValidationError):
        ExportFilters(guideline_versions=(0,))


def test_streaming_api_and_exports_form_take_the_new_filters(admin_client_, version_2):
    response = admin_client_.get(
        "/api/exports/stream/",
        {"format": "pairs", "red_team": "exclude", "guideline_version": ["1", "2"]},
    )
    assert response.status_code == 200, response.content
    response = admin_client_.get("/api/exports/stream/", {"format": "pairs", "red_team": "maybe"})
    assert response.status_code == 400
    unknown = admin_client_.get(
        "/api/exports/stream/", {"format": "pairs", "guideline_version": ["2", "7"]}
    )
    assert unknown.status_code == 400
    assert unknown.json() == {"guideline_version": ["No guideline version with number 7."]}
    response = admin_client_.get(
        "/exports/preview/",
        {
            "format": "pairs",
            "pair_mode": "per_ranker",
            "split": "all",
            "test_fraction": "0.1",
            "split_seed": "0",
            "red_team": "only",
            "guideline_versions": "2",
        },
    )
    assert response.status_code == 200, response.content
    assert b"(from 0 rankings)" in response.content
