import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command

from labeling import guideline_services, services
from labeling.models import GuidelineVersion
from ranking import services as ranking_services
from ranking.exports import ExportFilters, pair_records, ranking_records
from ranking.services import RankingInput
from tests.ranking.conftest import ready_task  # noqa: F401 (a fixture)

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def version_2(admin_user):
    guideline_services.guideline_version_ensure_current()
    return guideline_services.guideline_version_create(
        author=admin_user, text="# Guidelines\n\nBe brief.", change_note="Shorter."
    )


def test_first_use_creates_version_1_with_the_default_content(db):
    version = guideline_services.guideline_version_ensure_current()
    assert version.number == 1
    text = version.text.lower()
    for topic in ("helpful", "truthful", "harmless", "clarifying question", "an ai", "refuse"):
        assert topic in text
    assert "concise" in text or "verbose" in text
    assert guideline_services.guideline_version_ensure_current() == version


def test_editing_creates_a_new_version_and_only_admins_edit(admin_user, trainer, version_2):
    assert version_2.number == 2 and version_2.author == admin_user
    assert GuidelineVersion.objects.get(number=1).text != version_2.text  # v1 kept as it was
    with pytest.raises(ValidationError, match="Nothing changed"):
        guideline_services.guideline_version_create(author=admin_user, text=version_2.text)
    with pytest.raises(ValidationError, match="50000"):
        guideline_services.guideline_version_create(author=admin_user, text="x" * 50001)
    with pytest.raises(PermissionDenied):
        guideline_services.guideline_version_create(author=trainer, text="mine now")
    assert GuidelineVersion.objects.count() == 2


def test_messages_record_the_version_they_were_written_under(trainer, admin_user):
    conversation = services.conversation_create(owner=trainer)
    first = services.message_append(conversation=conversation, author=trainer, content="hi")
    reply = services.message_append(conversation=conversation, author=trainer, content="hello")
    assert first.guideline_version.number == 1 and reply.guideline_version.number == 1
    guideline_services.guideline_version_create(author=admin_user, text="v2 text")
    branch = services.message_branch(original=reply, author=trainer, content="hey")
    assert branch.guideline_version.number == 2


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
    assert b"0 rankings match" in response.content


def test_the_panel_asks_once_per_new_version(trainer_client, trainer, admin_user):
    panel = trainer_client.get("/write/guidelines/panel/", **HTMX)
    assert panel.status_code == 200
    assert b"I have read version 1" in panel.content and b"guidelines-banner" in panel.content
    read = trainer_client.post("/write/guidelines/1/read/", **HTMX)
    assert read.status_code == 200 and b"guidelines-banner" not in read.content
    assert (
        b"guidelines-banner" not in trainer_client.get("/write/guidelines/panel/", **HTMX).content
    )

    guideline_services.guideline_version_create(author=admin_user, text="# New\n\nAsk first.")
    panel = trainer_client.get("/write/guidelines/panel/", **HTMX)
    assert b"The labeling guidelines changed" in panel.content
    assert b"I have read version 2" in panel.content


def test_writing_and_ranking_pages_load_the_guidelines_panel(trainer_client, trainer):
    conversation = services.conversation_create(owner=trainer)
    for url in (f"/write/{conversation.pk}/", "/rank/"):
        response = trainer_client.get(url)
        assert response.status_code == 200
        assert b'id="guidelines-slot"' in response.content
        assert b'data-panel-url="/write/guidelines/panel/"' in response.content


def test_guidelines_page_shows_versions_and_admins_edit_it(admin_client_, trainer_client):
    page = trainer_client.get("/write/guidelines/")
    assert page.status_code == 200 and b"Labeling guidelines" in page.content
    assert b"Save as version" not in page.content
    assert trainer_client.post("/write/guidelines/edit/", {"text": "x"}).status_code == 403

    response = admin_client_.post(
        "/write/guidelines/edit/", {"text": "# Rules\n\n<script>x</script>", "change_note": "n"}
    )
    assert response.status_code == 302
    assert GuidelineVersion.objects.get(number=2).change_note == "n"
    page = admin_client_.get("/write/guidelines/?version=2")
    assert b"<h1>Rules</h1>" in page.content and b"<script>x" not in page.content
    unchanged = admin_client_.post(
        "/write/guidelines/edit/", {"text": "# Rules\n\n<script>x</script>"}
    )
    assert unchanged.status_code == 422 and b"Nothing changed" in unchanged.content
    assert admin_client_.get("/write/guidelines/?version=9").status_code == 404
