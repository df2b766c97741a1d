import json
import re
from html import unescape

import pytest
from django.urls import reverse

from ranking.exports import services
from ranking.exports.filters import ExportFilters
from ranking.exports.pipeline import records
from ranking.models import DatasetExport
from ranking.projects.models import DEFAULT_PROJECT_SLUG, Project
from ranking.projects.services import project_create
from sampler.jobs.services import job_run_inline
from tests.conftest import polls_only_while_work_can_move, says_unpublished_until_published

# The export form's fields for per-ranker pairs over every split (10 % held out, split seed 0).
FILTERS = {
    "format": "pairs",
    "pair_mode": "per_ranker",
    "split": "all",
    "test_fraction": "0.1",
    "split_seed": "0",
}


def test_exports_page_is_for_admins_only(trainer_client, admin_client_):
    assert trainer_client.get(reverse("ranking:exports")).status_code == 403
    page = admin_client_.get(reverse("ranking:exports"))
    assert page.status_code == 200 and b"Start export" in page.content


def test_preview_counts_matching_rankings(admin_client_, ranked):
    _, rankers = ranked
    url = reverse("ranking:export-preview")
    response = admin_client_.get(url, FILTERS)
    assert response.status_code == 200 and b"(from 6 rankings)" in response.content
    # The rows the file will hold, per split: here pairs, six per strict ranking of four.
    written = list(records("pairs", ExportFilters()))
    train = sum(1 for record in written if record["split"] == "train")
    expected = f"{len(written)} rows to write: {train} train, {len(written) - train} test"
    assert len(written) == 36 and expected in response.content.decode()
    response = admin_client_.get(url, {**FILTERS, "exclude_trainers": [rankers[0].pk]})
    assert b"(from 3 rankings)" in response.content


def test_the_page_filters_by_project_and_refuses_ranking_filters_for_demonstrations(
    admin_client_, ranked
):
    other = project_create(name="Elsewhere", slug="elsewhere", status="active")
    url = reverse("ranking:export-preview")
    page = admin_client_.get(reverse("ranking:exports"))
    assert f'<option value="{other.pk}">Elsewhere</option>' in page.content.decode()
    page = admin_client_.get(url, {**FILTERS, "projects": [other.pk]})
    assert page.status_code == 200 and b"(from 0 rankings)" in page.content
    default = Project.objects.get(slug=DEFAULT_PROJECT_SLUG)
    page = admin_client_.get(url, {**FILTERS, "projects": [default.pk]})
    assert b"(from 6 rankings)" in page.content
    refused = admin_client_.get(
        url, {**FILTERS, "format": "demonstrations", "min_agreement": "0.5"}
    )
    assert refused.status_code == 422
    assert "min_agreement chooses rankings or pairs" in refused.content.decode()


def test_the_preview_address_alone_is_the_page_as_the_exports_link_opens_it(admin_client_):
    preview = admin_client_.get(reverse("ranking:export-preview"))
    page = admin_client_.get(reverse("ranking:exports"))

    assert preview.status_code == 200
    assert b"This field is required." not in preview.content
    assert 'value="pairs" selected' in preview.content.decode()
    assert 'value="pairs" selected' in page.content.decode()


def test_bad_filters_get_a_message_not_a_500(admin_client_):
    response = admin_client_.get(
        reverse("ranking:export-preview"),
        {**FILTERS, "date_from": "2026-05-01", "date_to": "2026-01-01"},
    )
    assert (
        response.status_code == 422 and b"The start date is after the end date." in response.content
    )
    response = admin_client_.post(reverse("ranking:export-start"), {"format": "nonsense"})
    assert response.status_code == 422
    assert DatasetExport.objects.count() == 0


@pytest.mark.parametrize("htmx", [True, False])
def test_the_preview_names_the_field_of_each_error_as_start_export_does(admin_client_, htmx):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    url = reverse("ranking:export-preview")
    missing = admin_client_.get(url, {"format": "pairs"}, **headers)
    html = missing.content.decode()
    assert missing.status_code == 422
    # Said once: in the preview alone, at the top of the whole page.
    for label in ("Pair mode", "Split", "Held-out fraction", "Split seed"):
        assert html.count(f"{label}: This field is required.") == 1
    too_high = admin_client_.get(url, {**FILTERS, "min_agreement": "2"}, **headers)
    started = admin_client_.post(reverse("ranking:export-start"), {**FILTERS, "min_agreement": "2"})
    sentence = "Minimum agreement must be between 0 and 1."
    assert too_high.status_code == started.status_code == 422
    assert too_high.content.decode().count(sentence) == 1
    assert started.content.decode().count(sentence) == 1


def test_start_export_queues_it_and_download_serves_the_file(
    admin_client_, admin_user, ranked, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client_.post(
            reverse("ranking:export-start"),
            {**FILTERS, "format": "rankings", "pseudonymize": "on", "compress": "on"},
        )
    assert response.status_code == 302 and len(callbacks) == 1
    export = DatasetExport.objects.get()
    assert export.status == DatasetExport.Status.QUEUED and export.filters["compress"] is True
    job_run_inline(job=export)
    download = admin_client_.get(reverse("ranking:export-download", args=[export.pk]))
    assert download.status_code == 200
    assert b"".join(download.streaming_content)[:2] == b"\x1f\x8b"


@pytest.mark.django_db(transaction=True)
def test_an_export_started_while_the_job_queue_is_down_is_said_so_until_it_is_sent(
    admin_client_, broker
):
    """The warning was in the table only as the answer to starting the export: the table's
    next poll, a second later, took it away while the export still waited for the queue to
    come back. The table says it for as long as the export is not published."""
    broker.down = True
    started = admin_client_.post(reverse("ranking:export-start"), FILTERS, HTTP_HX_REQUEST="true")
    export = DatasetExport.objects.get()
    said = (
        f"Export {export.pk} is saved, but the job queue is unreachable right now: it starts "
        "as soon as the queue is back."
    )
    assert started.status_code == 200 and said in started.content.decode()
    says_unpublished_until_published(
        admin_client_,
        broker,
        job=export,
        parts={reverse("ranking:export-status"): said},
        pages=(reverse("ranking:exports"),),
    )


def test_the_export_pages_boxes_post_their_value_and_are_ticked_by_default(admin_client_):
    page = admin_client_.get(reverse("ranking:exports")).content.decode()
    for name in ("pseudonymize", "compress"):
        assert re.search(rf'<input type="checkbox" name="{name}" value="on"[^>]* checked', page)


@pytest.mark.parametrize(
    ("name", "label"), [("pseudonymize", "Pseudonymise trainers"), ("compress", "gzip")]
)
@pytest.mark.parametrize("value", ["false", "0", "abc", "yes", ""])
def test_an_export_box_posted_with_another_value_than_its_own_is_refused(
    admin_client_, ranked, name, label, value
):
    fields = {**FILTERS, "pseudonymize": "on", "compress": "on", name: value}
    response = admin_client_.post(reverse("ranking:export-start"), fields)
    assert response.status_code == 422
    html = response.content.decode()
    # Said once, not after its label again ("gzip: gzip is a checkbox ...").
    assert f'<span class="error-line">{label} is a checkbox: tick it or leave it unticked.' in html
    assert not DatasetExport.objects.exists()
    # The count asks the same of it.
    preview = admin_client_.get(reverse("ranking:export-preview"), fields, HTTP_HX_REQUEST="true")
    assert preview.status_code == 422 and f"{label} is a checkbox" in preview.content.decode()


def test_an_export_box_left_out_is_unticked(admin_client_, ranked):
    response = admin_client_.post(reverse("ranking:export-start"), {**FILTERS, "compress": "on"})
    assert response.status_code == 302
    export = DatasetExport.objects.get()
    assert export.filters["pseudonymize"] is False and export.filters["compress"] is True


# Every export URL: (method, URL name, what an admin gets for the same request).
EXPORT_URLS = [
    ("get", "ranking:exports", 200),
    ("get", "ranking:export-preview", 200),
    ("post", "ranking:export-start", 302),
    ("get", "ranking:export-status", 200),
    ("get", "ranking:export-download", 200),
    ("get", "ranking:export-features", 200),
    ("get", "api-export-stream", 200),
    ("get", "api-export-features", 200),
]
EXPORT_FILE_URLS = ("ranking:export-download", "ranking:export-features")


@pytest.mark.parametrize(("method", "name", "admin_status"), EXPORT_URLS)
def test_every_export_url_refuses_trainers_and_serves_admins(
    trainer_client, admin_client_, admin_user, settings, tmp_path, method, name, admin_status
):
    settings.EXPORT_ROOT = str(tmp_path)
    (tmp_path / "pairs.jsonl").write_bytes(b"{}\n")
    (tmp_path / "pairs.features.json").write_bytes(b"{}\n")
    export = DatasetExport.objects.create(
        format="pairs",
        created_by=admin_user,
        status=DatasetExport.Status.SUCCEEDED,
        file_path=str(tmp_path / "pairs.jsonl"),
    )
    url = reverse(name, args=[export.pk] if name in EXPORT_FILE_URLS else [])
    query = {"format": "pairs"} if name == "api-export-features" else FILTERS

    def request(client):
        return getattr(client, method)(url, query)

    assert request(trainer_client).status_code == 403
    assert DatasetExport.objects.count() == 1  # a refused start queues nothing
    # The same request from an admin goes through: the 403 is the role check, not the request.
    assert request(admin_client_).status_code == admin_status


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("split_seed", "7.0"),
        ("split_seed", "1_000"),
        ("split_seed", "+7"),
        ("split_seed", " 7"),
        ("split_seed", "\u0663"),  # an Arabic-Indic 3, a digit to Python's int()
        ("project_id", "1.0"),
        ("model_version_id", "1.00"),
        ("guideline_version", "1_0"),
        ("exclude_trainer_id", " 1"),
        ("min_agreement", "0.0_5"),
        ("min_agreement", " 0.5"),
        ("test_fraction", "\u0660.2"),
    ],
)
def test_streaming_api_takes_numbers_as_written_not_as_python_reads_them(
    admin_client_, name, value
):
    response = admin_client_.get("/api/exports/stream/", {"format": "pairs", name: value})
    assert response.status_code == 400, value
    assert "in digits" in json.dumps(response.json()[name])


@pytest.mark.parametrize("url", ["/api/exports/stream/", "/api/exports/features/"])
@pytest.mark.parametrize("value", ["0", "1", "no", "off", "False", "TRUE", "n"])
def test_the_export_apis_take_pseudonymize_as_true_or_false_only(admin_client_, url, value):
    # "0" or "no" would turn pseudonyms off as surely as "false": only the words themselves.
    response = admin_client_.get(url, {"format": "pairs", "pseudonymize": value})
    assert response.status_code == 400, value
    assert response.json() == {"pseudonymize": ["Must be true or false."]}
    assert admin_client_.get(url, {"format": "pairs", "pseudonymize": "false"}).status_code == 200


@pytest.mark.parametrize(
    ("name", "value", "sentence"),
    [
        ("test_fraction", "-0.1", "Held-out fraction must be between 0 and 0.99."),
        ("test_fraction", "0.995", "Held-out fraction must be between 0 and 0.99."),
        ("test_fraction", "2", "Held-out fraction must be between 0 and 0.99."),
        ("min_agreement", "-0.5", "Minimum agreement must be between 0 and 1."),
        ("min_agreement", "1.5", "Minimum agreement must be between 0 and 1."),
        ("split_seed", "-1", "Split seed must be between 0 and 4,294,967,295."),
        ("split_seed", str(2**32), "Split seed must be between 0 and 4,294,967,295."),
    ],
)
def test_a_filter_out_of_range_is_refused_in_the_same_words_by_api_page_and_command(
    admin_client_, name, value, sentence, tmp_path
):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    api = admin_client_.get("/api/exports/stream/", {"format": "pairs", name: value})
    assert api.status_code == 400
    assert api.json() == {name: [sentence]}
    page = admin_client_.post(reverse("ranking:export-start"), {**FILTERS, name: value})
    assert page.status_code == 422 and page.content.decode().count(sentence) == 1
    out = str(tmp_path / "pairs.jsonl")
    option = "--" + name.replace("_", "-")
    with pytest.raises(CommandError) as refused:
        call_command("export_comparisons", "--format", "pairs", "--out", out, option, value)
    assert str(refused.value) == sentence.replace(" must", f" ({option}) must")


@pytest.mark.parametrize("format", ["pairs", "rankings", "demonstrations"])
def test_a_test_split_holding_nothing_out_is_refused_in_the_same_words_by_api_page_and_command(
    admin_client_, format, tmp_path
):
    """A held-out fraction of 0 holds out no conversation: its test split was exported, empty,
    on every data; refused as a comparison holding out no prompt is. Its train split (every
    conversation) is not refused."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    sentence = (
        "No held-out conversation to export: a held-out fraction of 0 holds out none, so the "
        "test split is empty. Choose a larger held-out fraction, or the train or all split."
    )
    chosen = {"format": format, "split": "test", "test_fraction": "0"}
    api = admin_client_.get("/api/exports/stream/", chosen)
    assert api.status_code == 400
    assert api.json() == {"test_fraction": [sentence]}
    page = admin_client_.post(reverse("ranking:export-start"), {**FILTERS, **chosen})
    assert page.status_code == 422 and page.content.decode().count(sentence) == 1
    assert not DatasetExport.objects.exists()
    out = str(tmp_path / "out.jsonl")
    with pytest.raises(CommandError) as refused:
        call_command(
            "export_comparisons", "--format", format, "--out", out, "--split", "test",
            "--test-fraction", "0",
        )  # fmt: skip
    assert str(refused.value) == sentence
    train = {**chosen, "split": "train"}
    assert admin_client_.get("/api/exports/stream/", train).status_code == 200


def test_streaming_api_gives_the_same_records_for_staff_only(client, admin_user, trainer, ranked):
    import json

    client.force_login(trainer)
    assert client.get("/api/exports/stream/", {"format": "pairs"}).status_code == 403
    client.force_login(admin_user)
    response = client.get("/api/exports/stream/", {"format": "pairs", "pair_mode": "aggregated"})
    assert response.status_code == 200 and response["Content-Type"] == "application/jsonl"
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert len(rows) == 15 and all(row["votes"] == 2 for row in rows)
    bad = client.get("/api/exports/stream/", {"format": "pairs", "exclude_flag": "boring"})
    assert bad.status_code == 400 and "exclude_flag" in bad.json()
    # A misspelt filter is refused by name, never quietly left out of the filtering.
    typo = client.get("/api/exports/stream/", {"format": "pairs", "exclude_flags": "harmful"})
    assert typo.status_code == 400
    assert typo.json() == {"detail": "Unknown parameters: 'exclude_flags'."}
    twice = client.get("/api/exports/stream/?format=pairs&format=rankings")
    assert twice.json() == {"format": ["Give this parameter once."]}
    repeated = client.get(
        "/api/exports/stream/?format=pairs&exclude_flag=harmful&exclude_flag=other"
    )
    assert repeated.status_code == 200
    backwards = client.get(
        "/api/exports/stream/",
        {"format": "pairs", "date_from": "2026-02-01", "date_to": "2026-01-01"},
    )
    assert backwards.status_code == 400 and "The start date is after the end date." in str(
        backwards.json()
    )
    # A filter on a version or project that does not exist is a 400, not an empty export.
    for name, what in [
        ("model_version_id", "model version"),
        ("project_id", "project"),
        ("exclude_trainer_id", "user"),
    ]:
        unknown = client.get("/api/exports/stream/", {"format": "pairs", name: 999999})
        assert unknown.status_code == 400
        assert unknown.json() == {name: [f"No {what} with id 999999."]}


def test_streaming_api_names_a_ranking_filter_refused_for_demonstrations_as_its_parameter(
    admin_client_, ranked
):
    tasks, _ = ranked
    refused = {
        "model_version_id": tasks[0].model_version_id,
        "exclude_flag": "harmful",
        "min_agreement": 0.5,
    }
    for name, value in refused.items():
        response = admin_client_.get(
            "/api/exports/stream/", {"format": "demonstrations", name: value}
        )
        assert response.status_code == 400
        assert response.json() == {
            name: [f"{name} chooses rankings or pairs; demonstrations are not filtered by it."]
        }


@pytest.mark.parametrize(
    "value", ["20260501", "2026-W18-5", "2026-05-01T00:00", " 2026-05-01", "2026-5-1"]
)
def test_streaming_api_takes_dates_written_yyyy_mm_dd_only(admin_client_, value):
    # Python's date.fromisoformat reads the first two as days too; the message says YYYY-MM-DD.
    for name in ("date_from", "date_to"):
        response = admin_client_.get("/api/exports/stream/", {"format": "pairs", name: value})
        assert response.status_code == 400, value
        assert "YYYY-MM-DD" in json.dumps(response.json()[name])
    written = {"format": "pairs", "date_from": "2026-05-01", "date_to": "2026-05-31"}
    assert admin_client_.get("/api/exports/stream/", written).status_code == 200


def test_the_export_list_says_what_an_export_skipped(admin_client_, admin_user):
    DatasetExport.objects.create(
        format="pairs",
        created_by=admin_user,
        status=DatasetExport.Status.SUCCEEDED,
        row_count=12,
        skipped={"rankings_without_prompt": 2},
    )

    page = admin_client_.get(reverse("ranking:exports")).content.decode()

    assert "skipped 2 rankings without a prompt" in page


def test_the_export_list_shows_the_filters_as_labelled_items_not_a_dict(admin_client_, admin_user):
    """Each filter reads "Label: value", escaped, in the order of the form; a key the code does
    not know (a row written by another version) is shown by its name."""
    filters = ExportFilters(
        split="train",
        test_fraction=0.25,
        pair_mode="aggregated",
        exclude_flags=("off_topic",),
        guideline_versions=(2, 3),
    )
    DatasetExport.objects.create(
        format="pairs",
        created_by=admin_user,
        filters={**filters.as_dict(), "compress": True, "some_note": "<b>bold</b>"},
    )

    page = admin_client_.get(reverse("ranking:exports")).content.decode()

    assert "&#x27;split&#x27;" not in page  # the dict, as Python prints it
    for item in (
        "From: any",
        "Split: train",
        "Held-out fraction: 0.25",
        "Pairs: aggregated",
        "Exclude flagged as: off topic",
        "Guideline versions: 2, 3",
        "Pseudonymise trainers: yes",
        "Projects (ids): all",
        "gzip: yes",
        "Some note: &lt;b&gt;bold&lt;/b&gt;",
    ):
        assert f"<li>{item}</li>" in page
    assert "<b>bold</b>" not in page


@pytest.mark.parametrize("format", ["rankings", "pairs"])
def test_the_preview_counts_only_what_the_export_writes_and_says_what_it_skips(
    admin_client_, admin_user, format
):
    """A task whose prompt is gone is skipped by the export: the preview counts the rankings
    the export writes from and names the skipped ones, as the finished export does."""
    from tests.ranking.exports.test_exports import _two_ranked_tasks_one_without_its_job

    _two_ranked_tasks_one_without_its_job()
    preview = admin_client_.get(
        reverse("ranking:export-preview"),
        {**FILTERS, "format": format},
    ).content.decode()
    export = job_run_inline(
        job=services.dataset_export_create(
            created_by=admin_user, format=format, filters=ExportFilters(), queue=False
        )
    )

    assert f"{export.row_count} rows to write" in preview
    assert "(from 2 rankings; skipped 2 rankings without a prompt" in preview
    assert export.skipped == {"rankings_without_prompt": 2}


@pytest.mark.parametrize("format", ["rankings", "pairs", "demonstrations"])
def test_the_preview_counts_the_sources_of_the_split_it_writes(admin_client_, ranked, format):
    """ "from N rankings" is of the rows written: a split (or an agreement bar) leaves out
    rankings as it leaves out their rows."""
    url = reverse("ranking:export-preview")
    query = {"format": format, "split": "train", "test_fraction": "0.5", "split_seed": "0"}
    query["pair_mode"] = "per_ranker"
    key = "conversation_id" if format == "demonstrations" else "ranking_id"
    filters = ExportFilters(split="train", test_fraction=0.5, split_seed=0)
    written = list(records(format, filters))
    everything = list(records(format, ExportFilters(test_fraction=0.5, split_seed=0)))
    sources = {record[key] for record in written}
    assert 0 < len(sources) < len({record[key] for record in everything})
    page = admin_client_.get(url, query).content.decode()
    assert f"(from {len(sources)} " in page, page


def test_the_preview_of_aggregated_pairs_counts_the_tasks_they_come_from(admin_client_, ranked):
    """Aggregated pairs name no ranking (one pair stands for every ranker's vote): the preview
    counted their sources by ranking and said "from 0 rankings" above a non-zero row count."""
    tasks, _ = ranked
    query = {**FILTERS, "pair_mode": "aggregated"}
    written = list(records("pairs", ExportFilters(pair_mode="aggregated")))
    assert written and {record["task_id"] for record in written} == {t.pk for t in tasks}
    page = admin_client_.get(reverse("ranking:export-preview"), query).content.decode()
    assert f"{len(written)} rows to write" in page
    assert f"(from {len(tasks)} ranked tasks)" in page, page


def test_the_preview_opened_by_itself_is_the_exports_page_with_its_filters_and_count(
    admin_client_, ranked
):
    """A plain GET of the preview's address (a bookmark, a typed address) gets the whole
    page, in the site's layout, with the filters asked chosen and their count shown."""
    preview = admin_client_.get(
        reverse("ranking:export-preview"), {**FILTERS, "format": "rankings"}
    )

    assert preview.status_code == 200
    html = preview.content.decode()
    assert 'id="main-nav"' in html and "Start export" in html and "(from 6 rankings)" in html
    assert '<option value="rankings" selected>' in html


def test_a_failed_export_shows_its_reason_without_the_traceback(admin_client_, admin_user):
    DatasetExport.objects.create(
        format="rankings", created_by=admin_user, status="failed",
        error='OSError: disk full\n  File "/srv/tandem/ranking/exports/pipeline.py", line 9\n',
    )  # fmt: skip
    html = admin_client_.get(reverse("ranking:exports")).content.decode()
    assert "OSError: disk full" in html
    assert "/srv/tandem" not in html and "File &quot;" not in html


def test_the_exports_table_stops_polling_while_its_exports_wait_for_no_worker(
    admin_client_, admin_user
):
    """An export queued where no live worker serves the default queue cannot move: the table
    stops asking every second, names the queue and offers "Check again". Before, it asked
    every second for as long as the page was open."""
    export = DatasetExport.objects.create(format="pairs", created_by=admin_user)
    polls_only_while_work_can_move(
        admin_client_,
        reverse("ranking:export-status"),
        job=export,
        element="export-table",
        trigger='hx-trigger="every 1s"',
    )


RED_TEAM_ONLY_RANKINGS = (
    '"only": rankings are never red-team data, so the export would be empty (corrected red-team '
    "attacks are exported as pairs and demonstrations)."
)


def test_rankings_of_red_team_data_only_are_refused_by_the_page_and_the_api(admin_client_, ranked):
    asked = {**FILTERS, "format": "rankings", "red_team": "only"}
    refused = admin_client_.get(reverse("ranking:export-preview"), asked)
    assert refused.status_code == 422
    assert "red_team " + RED_TEAM_ONLY_RANKINGS in unescape(refused.content.decode())
    started = admin_client_.post(reverse("ranking:export-start"), asked)
    assert started.status_code == 422 and not DatasetExport.objects.exists()
    streamed = admin_client_.get("/api/exports/stream/", {"format": "rankings", "red_team": "only"})
    assert streamed.status_code == 400
    assert streamed.json() == {"red_team": ["red_team " + RED_TEAM_ONLY_RANKINGS]}
    # Pairs hold the corrected attacks: asked for alone, they are exported.
    assert (
        admin_client_.get(
            reverse("ranking:export-preview"), {**asked, "format": "pairs"}
        ).status_code
        == 200
    )
