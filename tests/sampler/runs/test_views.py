"""The Training page: admins launch runs and follow them; trainers are turned away."""

import gzip
import json
import re
from html import unescape
from pathlib import Path
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.urls import reverse
from django.utils import timezone

from config.celery import app
from ranking.exports import services as export_services
from ranking.exports.filters import ExportFilters
from sampler.jobs.services import job_run_inline
from sampler.registry.models import ModelVersion
from sampler.registry.services import model_version_register
from sampler.runs.data_files import data_file_problem
from sampler.runs.forms import TrainingRunForm
from sampler.runs.models import TrainingRun
from sampler.runs.services import training_run_run_inline
from sampler.training.records import DataError
from sampler.training.synthetic import synthetic_rankings
from tests.conftest import (
    polls_only_while_work_can_move,
    says_unpublished_until_published,
    worker_seen,
)
from tests.ranking.conftest import ranked, ranked_in_halves  # noqa: F401  (ranked: a fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def folders(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.EXPORT_ROOT = tmp_path / "exports"
    settings.MODEL_ROOT = tmp_path / "models"


def _upload(*, split: bool = False) -> SimpleUploadedFile:
    """Rankings made by hand (no ``split``: the run's held-out fraction applies), or as an
    export writes them (``split``: the records' own)."""
    records = [
        {key: value for key, value in record.items() if split or key != "split"}
        for record in synthetic_rankings(8)
    ]
    lines = "".join(json.dumps(record) + "\n" for record in records)
    return SimpleUploadedFile("my rankings.jsonl", lines.encode(), "application/jsonl")


def _gzipped(upload: SimpleUploadedFile) -> SimpleUploadedFile:
    return SimpleUploadedFile(f"{upload.name}.gz", gzip.compress(upload.read()))


def _run(policy, **fields) -> TrainingRun:
    values = {"kind": "reward", "base_version": policy, "output_name": "rm-1", **fields}
    return TrainingRun.objects.create(**values)


@pytest.mark.parametrize(
    "name, method, kwargs",
    [
        ("sampler:training", "get", {}),
        ("sampler:training-runs", "get", {}),
        ("sampler:training-run-start", "post", {}),
        ("sampler:training-run", "get", {"run_id": 1}),
        ("sampler:training-run-cancel", "post", {"run_id": 1}),
        ("sampler:version-promote", "post", {"version_id": 1}),
    ],
)
def test_trainers_get_403_everywhere_on_the_training_pages(trainer_client, name, method, kwargs):
    response = getattr(trainer_client, method)(reverse(name, kwargs=kwargs))
    assert response.status_code == 403


def test_admin_launches_a_reward_run_from_an_upload_and_it_is_queued(
    admin_client_, admin_user, policy, settings, django_capture_on_commit_callbacks
):
    page = admin_client_.get(reverse("sampler:training"))
    assert page.status_code == 200 and b"Start training" in page.content
    with django_capture_on_commit_callbacks() as queued:
        response = admin_client_.post(
            reverse("sampler:training-run-start"),
            {
                "kind": "reward",
                "source": "upload",
                "upload": _upload(),
                "test_fraction": "0.2",
                "split_seed": "0",
                "max_steps": "3",
                "learning_rate": "0.001",
                "margin_per_rank": "0.25",
            },
        )
    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("sampler:training-run", kwargs={"run_id": run.pk})
    assert len(queued) == 1  # run_training.delay(run.pk), once the transaction commits
    assert run.status == TrainingRun.Status.QUEUED and run.started_by == admin_user
    assert run.base_version == policy
    assert run.config["max_steps"] == 3 and run.config["margin_per_rank"] == 0.25
    assert run.config["test_fraction"] == 0.2
    # Records that carry their own split would ignore the fraction: refused, plain or gzipped.
    for upload in (_upload(split=True), _gzipped(_upload(split=True))):
        refused = admin_client_.post(
            reverse("sampler:training-run-start"),
            {"kind": "reward", "source": "upload", "upload": upload, "test_fraction": "0.2",
             "split_seed": "0"},
        )  # fmt: skip
        assert refused.status_code == 422
        assert "carry their own split" in refused.content.decode()
    assert TrainingRun.objects.count() == 1
    assert run.dataset["source"] == "file"
    assert run.dataset["path"].startswith(str(settings.MEDIA_ROOT / "training-data"))
    assert run.dataset["path"].endswith("my_rankings.jsonl")


@pytest.mark.usefixtures("ranked")
def test_admin_launch_with_filters_records_them(admin_client_, policy):
    fields = {"source": "database", "test_fraction": "0", "split_seed": "3",
              "min_agreement": "0.5", "exclude_flags": ["harmful"]}  # fmt: skip
    url = reverse("sampler:training-run-start")
    response = admin_client_.post(url, {**fields, "kind": "reward"})
    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert run.dataset["format"] == "rankings"
    assert run.dataset["filters"]["split_seed"] == 3
    assert run.dataset["filters"]["exclude_flags"] == ["harmful"]
    # Demonstrations are not chosen by ranking filters: refused, not ignored.
    refused = admin_client_.post(url, {**fields, "kind": "sft"})
    assert refused.status_code == 422
    assert "exclude_flags chooses rankings or pairs" in refused.content.decode()
    assert TrainingRun.objects.count() == 1


def test_a_file_launch_refuses_database_filters_and_a_split_the_export_has(
    admin_client_,
    admin_user,
    policy,
    ranked,  # noqa: F811
):
    export = export_services.dataset_export_create(
        created_by=admin_user, format="rankings", filters=ExportFilters(), queue=False
    )
    job_run_inline(job=export)
    fields = {"kind": "dpo", "source": "export", "export": export.pk, "split_seed": "0"}
    url = reverse("sampler:training-run-start")
    filtered = admin_client_.post(url, {**fields, "test_fraction": "0.1", "min_agreement": "0.5"})
    assert (
        filtered.status_code == 422 and "choose rows of the database" in filtered.content.decode()
    )
    split = admin_client_.post(url, {**fields, "test_fraction": "0.3"})
    assert split.status_code == 422 and "carry their own split" in split.content.decode()
    assert not TrainingRun.objects.exists()
    assert admin_client_.post(url, {**fields, "test_fraction": "0.1"}).status_code == 302


def test_a_file_that_carries_its_split_takes_an_empty_test_fraction_as_the_advice_says(
    admin_client_,
    admin_user,
    policy,
    ranked,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    export = export_services.dataset_export_create(
        created_by=admin_user, format="rankings", filters=ExportFilters(), queue=False
    )
    job_run_inline(job=export)
    url = reverse("sampler:training-run-start")
    common = {"kind": "reward", "split_seed": "0"}
    uploaded = {**common, "source": "upload"}
    exported = {**common, "source": "export", "export": export.pk}
    for fields in (uploaded, exported):
        if fields is uploaded:
            fields["upload"] = _upload(split=True)
        refused = admin_client_.post(url, {**fields, "test_fraction": "0.3"})
        (advice,) = refused.context["form"].errors["test_fraction"]
        assert advice.endswith("choose it when you export, and leave this field empty.")
        if fields is uploaded:
            fields["upload"] = _upload(split=True)
        with django_capture_on_commit_callbacks():
            started = admin_client_.post(url, {**fields, "test_fraction": ""})
        assert started.status_code == 302, started.context["form"].errors
    assert TrainingRun.objects.count() == 2
    # With no split of its own to keep, the run still needs one.
    for fields in ({**uploaded, "upload": _upload()}, {**common, "source": "database"}):
        empty = admin_client_.post(url, {**fields, "test_fraction": ""})
        assert empty.status_code == 422
        assert empty.context["form"].errors["test_fraction"] == ["This field is required."]
        # Named by the field's label on the page.
        assert (
            '<span class="error-line">Held-out fraction: This field is required.</span>'
            in empty.content.decode()
        )
    assert TrainingRun.objects.count() == 2


@pytest.mark.parametrize(
    ("kind", "named"), [("dpo", "A DPO run"), ("sft", "A supervised fine-tuning run")]
)
def test_a_file_a_kind_cannot_read_is_refused_naming_the_kind_by_its_label(
    admin_client_,
    admin_user,
    policy,
    ranked,  # noqa: F811
    kind,
    named,
):
    export = export_services.dataset_export_create(
        created_by=admin_user, format="demonstrations" if kind == "dpo" else "rankings",
        filters=ExportFilters(), queue=False,
    )  # fmt: skip
    job_run_inline(job=export)
    url = reverse("sampler:training-run-start")
    common = {"kind": kind, "split_seed": "0", "test_fraction": "0.1"}
    refused = admin_client_.post(url, {**common, "source": "export", "export": export.pk})
    (error,) = refused.context["form"].errors["export"]
    assert error == f"{named} cannot read a {export.get_format_display()} export."
    if kind == "sft":  # an upload of rankings: read by the service, as the commands read it
        uploaded = admin_client_.post(url, {**common, "source": "upload", "upload": _upload()})
        (errors,) = uploaded.context["form"].errors.values()
        assert errors[0].startswith(f"{named} reads records with "), errors
    assert not TrainingRun.objects.exists()


def test_a_bad_launch_shows_the_errors_and_queues_nothing(admin_client_, policy):
    response = admin_client_.post(
        reverse("sampler:training-run-start"),
        {"kind": "reward", "source": "export", "test_fraction": "0.1", "split_seed": "0",
         "batch_size": "0"},
    )  # fmt: skip
    assert response.status_code == 422
    assert b"Choose an export" in response.content or b"batch_size" in response.content.lower()
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("steps", ["0", "10000001", "99999999999999999999"])
def test_the_training_page_says_what_range_max_steps_has(admin_client_, policy, steps):
    """A number of steps past the most a run takes was refused as "must be a positive number
    of steps"; the page now says the range, the one the run's settings take."""
    response = _post_upload(admin_client_, _upload(), max_steps=steps)
    text = response.content.decode()
    assert response.status_code == 422
    assert "Max steps must be between 1 and 10,000,000." in text and "positive number" not in text
    assert not TrainingRun.objects.exists()
    box = re.search(r'<input type="number" name="max_steps"[^>]*>', text).group(0)
    assert 'min="1"' in box and 'max="10000000"' in box, box


def test_an_upload_refused_for_its_name_is_told_every_ending_the_page_takes(admin_client_, policy):
    """A .json file is taken, but a refused name was told "Upload a .jsonl or .jsonl.gz
    file."; the refusal and the field's help list the same endings, the ones taken."""
    help_text = TrainingRunForm().fields["upload"].help_text
    assert help_text == ".jsonl, .jsonl.gz or .json: one JSON record per line, as exported."
    lines = _upload().read()
    refused = _post_upload(admin_client_, SimpleUploadedFile("rankings.txt", lines))
    assert refused.status_code == 422
    assert "Upload a .jsonl, .jsonl.gz or .json file." in refused.content.decode()
    assert not TrainingRun.objects.exists()
    taken = _post_upload(admin_client_, SimpleUploadedFile("rankings.json", lines))
    assert taken.status_code == 302 and TrainingRun.objects.get().dataset["path"].endswith(
        "rankings.json"
    )


def test_an_upload_is_taken_whatever_the_letter_case_of_its_ending(admin_client_, policy):
    """DATA.JSONL was refused though data.jsonl is taken: an ending is the same in any case."""
    lines = _upload().read()
    names = ["DATA.JSONL", "Rankings.Json", "EXPORT.JSONL.GZ"]
    for name in names:
        content = gzip.compress(lines) if name.endswith(".GZ") else lines
        response = _post_upload(admin_client_, SimpleUploadedFile(name, content))
        assert response.status_code == 302, (name, response.content.decode())
    paths = [run.dataset["path"] for run in TrainingRun.objects.order_by("pk")]
    assert [path.rsplit("/", 1)[1] for path in paths] == names


def test_run_detail_plots_curves_and_polls_only_while_running(admin_client_, policy):
    history = {
        "loss/train": [[5, 0.69], [10, 0.52]],
        "loss/eval": [[10, 0.55]],
        "accuracy/eval": [[10, 0.8]],
        "learning_rate": [[5, 1e-3], [10, 5e-4]],
    }
    run = _run(policy, status="running", progress=0.5, metrics=history, log="step 10\n")
    url = reverse("sampler:training-run", kwargs={"run_id": run.pk})
    page = admin_client_.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    # loss, accuracy, learning rate: Chart.js canvases with their data beside them (JSON)
    assert html.count('data-chart="line"') == 3
    assert '"loss/eval": [[10.0, 0.55]]' in html and 'hx-trigger="every 2s"' in html
    assert "loss/eval: 0.55 at step 10" in html  # the latest values, as text

    partial = admin_client_.get(url, headers={"HX-Request": "true"})
    assert "<h1>" not in partial.content.decode() and "every 2s" in partial.content.decode()
    # The run's times are in the polled part, so they change without a reload.
    assert "finished —" in partial.content.decode()

    run.status = TrainingRun.Status.SUCCEEDED
    run.progress = 1.0
    run.started_at = run.finished_at = timezone.now()
    run.save()
    version = ModelVersion.objects.create(
        name="rm-1", kind="reward", path=policy.path, training_run=run, parent=policy
    )
    finished = admin_client_.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "every 2s" not in finished  # polling stops with the run
    assert "started —" not in finished and "finished —" not in finished
    assert "rm-1" in finished and "Promote" in finished
    admin_client_.post(reverse("sampler:version-promote", kwargs={"version_id": version.pk}))
    version.refresh_from_db()
    assert version.is_active


def test_metric_names_are_escaped_in_the_charts(admin_client_, policy):
    run = _run(policy, metrics={"loss/<script>alert(1)</script>": [[1, 1.0], [2, 0.5]]})
    html = admin_client_.get(reverse("sampler:training-run", kwargs={"run_id": run.pk})).content
    assert b"<script>alert(1)" not in html and b"&lt;script&gt;" in html


def test_the_run_page_shows_its_database_filters_as_labelled_items_not_a_dict(
    admin_client_, policy
):
    filters = ExportFilters(split="test", min_agreement=0.5, exclude_trainer_ids=(7,))
    dataset = {"source": "database", "format": "rankings", "filters": filters.as_dict()}
    run = _run(policy, dataset=dataset)

    page = admin_client_.get(reverse("sampler:training-run", kwargs={"run_id": run.pk}))

    html = page.content.decode()
    listed = re.search(r'<ul class="filter-items">(.*?)</ul>', html).group(1)
    assert re.findall(r"<li>(.*?)</li>", listed) == [
        "Pairs: per ranker",
        "Split: test",
        "Held-out fraction: 0.1",
        "Split seed: 0",
        "From: any",
        "To: any",
        "Minimum agreement: 0.5",
        "Model versions (ids): all",
        "Exclude trainers (ids): 7",
        "Exclude flagged as: none",
        "Projects (ids): all",
        "Red-team data: include",
        "Guideline versions: all",
        "Pseudonymise trainers: yes",
    ]
    assert "&#x27;split&#x27;" not in html  # the dict, as Python prints it


def test_the_run_page_shows_its_config_as_labelled_items_not_a_dict(admin_client_, policy):
    config = {
        "learning_rate": 2e-05,
        "batch_size": 8,
        "max_steps": None,
        "weight_by_trust": False,
        "sources": "thumbs_up,<b>flags</b>",
        "lora_targets": "",
        "setting_from_an_older_version": 3,
    }
    run = _run(policy, config=config)

    page = admin_client_.get(reverse("sampler:training-run", kwargs={"run_id": run.pk}))

    html = page.content.decode()
    (listed,) = re.findall(
        r'<summary>7 settings</summary><ul class="filter-items">(.*?)</ul>', html
    )
    # Each by its label on the Training page and in the train_* commands (SETTINGS).
    assert re.findall(r"<li>(.*?)</li>", listed) == [
        "Learning rate: 0.00002",  # as the Training page and the refusals write it
        "Batch size: 8",
        "Max steps: —",
        "Weigh by trust: no",
        "KTO learns from: thumbs_up,&lt;b&gt;flags&lt;/b&gt;",  # as stored, escaped
        "LoRA target modules: —",
        "setting_from_an_older_version: 3",  # no label: its own name
    ]
    assert "batch_size" not in listed and "learning_rate" not in listed
    assert "&#x27;learning_rate&#x27;" not in html  # the dict, as Python prints it


def test_admin_cancels_a_queued_run(admin_client_, policy):
    run = _run(policy)
    admin_client_.post(reverse("sampler:training-run-cancel", kwargs={"run_id": run.pk}))
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED and run.finished_at is not None


@pytest.mark.parametrize("ended", ["succeeded", "failed"])
def test_cancelling_a_run_that_has_ended_says_it_was_refused_in_the_apis_words(
    admin_client_, policy, ended
):
    run = _run(policy, status=ended, finished_at=timezone.now())
    response = admin_client_.post(
        reverse("sampler:training-run-cancel", kwargs={"run_id": run.pk}), follow=True
    )
    (message,) = response.context["messages"]
    assert str(message) == f"The job has already {ended}: nothing to cancel."
    assert message.level_tag == "error"
    run.refresh_from_db()
    assert run.status == ended


def test_cancelling_a_queued_run_says_it_is_cancelled(admin_client_, policy):
    run = _run(policy)
    response = admin_client_.post(
        reverse("sampler:training-run-cancel", kwargs={"run_id": run.pk}), follow=True
    )
    (message,) = response.context["messages"]
    assert str(message) == f"Run {run.pk} is cancelled." and message.level_tag == "info"


def test_admin_launches_dpo_and_kto_runs_from_the_training_page(admin_client_, policy, request):
    page = admin_client_.get(reverse("sampler:training"))
    assert b"DPO policy" in page.content and b"KTO policy" in page.content
    common = {"source": "database", "test_fraction": "0.1", "split_seed": "0", "lora_r": "4"}
    dpo = {**common, "kind": "dpo", "dpo_mode": "pairwise", "dpo_loss": "ipo", "beta": "0.5"}
    # No ranking at all: it trained on nothing held out, or failed late.
    for fraction in ("0.1", "0"):
        response = admin_client_.post(
            reverse("sampler:training-run-start"), {**dpo, "test_fraction": fraction}
        )
        assert response.status_code == 422 and not TrainingRun.objects.exists()
        assert response.context["form"].errors == {
            "__all__": [
                "Nothing to train on: there is no prompt yet (no ranking). Add more rankings first."
            ]
        }
    request.getfixturevalue("ranked")
    response = admin_client_.post(
        reverse("sampler:training-run-start"), {**dpo, "test_fraction": "0"}
    )
    assert response.status_code == 302
    run = TrainingRun.objects.get(kind="dpo")
    assert run.config["mode"] == "pairwise" and run.config["loss_type"] == "ipo"
    assert run.config["beta"] == 0.5 and run.config["lora_r"] == 4
    assert run.dataset["format"] == "rankings"
    response = admin_client_.post(
        reverse("sampler:training-run-start"),
        {**common, "kind": "kto", "kto_sources": ["thumbs_down", "flags"], "test_fraction": "0"},
    )
    assert response.status_code == 302
    run = TrainingRun.objects.get(kind="kto")
    assert run.config["sources"] == "thumbs_down,flags"
    assert run.dataset["sources"] == ["thumbs_down", "flags"]


def test_a_reward_upload_that_normalises_needs_demonstrations(admin_client_, policy, settings):
    response = admin_client_.post(
        reverse("sampler:training-run-start"),
        {
            "kind": "reward",
            "source": "upload",
            "upload": _upload(),
            "test_fraction": "0.1",
            "split_seed": "0",
            "normalize_to_demonstrations": "on",
        },
    )
    assert response.status_code == 422
    assert b"normalised on demonstrations" in response.content
    assert (
        "choose demonstrations to normalise it on, or untick "
        "“Normalise reward scores to mean 0 on demonstrations”."
    ) in unescape(response.content.decode())
    assert not TrainingRun.objects.exists()
    # The refused run's upload is not kept: no run will ever read it.
    uploads = settings.MEDIA_ROOT / "training-data"
    assert not [path for path in uploads.rglob("*") if path.is_file()]


def test_the_normalise_box_posts_its_value_and_is_ticked_by_default(admin_client_, policy):
    page = admin_client_.get(reverse("sampler:training")).content.decode()
    assert re.search(
        r'<input type="checkbox" name="normalize_to_demonstrations" value="on"[^>]* checked', page
    )


@pytest.mark.parametrize("value", ["false", "0", "abc", "yes", ""])
@pytest.mark.usefixtures("ranked")
def test_a_normalise_value_other_than_the_boxs_is_refused_and_nothing_started(
    admin_client_, policy, value
):
    response = admin_client_.post(
        reverse("sampler:training-run-start"),
        {"kind": "reward", "source": "database", "test_fraction": "0", "split_seed": "0",
         "normalize_to_demonstrations": value},
    )  # fmt: skip
    assert response.status_code == 422
    label = "Normalise reward scores to mean 0 on demonstrations"
    assert f"{label} is a checkbox: tick it or leave it unticked." in response.content.decode()
    assert not TrainingRun.objects.exists()


# Bytes of each uploaded file that reached the handler writing it to a temporary file.
written_to_disk: list[int] = []


class RecordingTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Django's handler that writes an upload to a temporary file, counting what it wrote."""

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        written_to_disk.append(0)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        written_to_disk[-1] += len(raw_data)
        return super().receive_data_chunk(raw_data, start)


@pytest.fixture
def uploads_to_disk(settings, tmp_path) -> Path:
    """Every upload goes to a temporary file (none is kept in memory), in a folder of its own,
    through the recording handler; the folder is returned."""
    written_to_disk.clear()
    folder = tmp_path / "upload-temp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    settings.FILE_UPLOAD_HANDLERS = [f"{__name__}.RecordingTemporaryFileUploadHandler"]
    return folder


def _post_upload(client, upload, **fields):
    return client.post(
        reverse("sampler:training-run-start"),
        {
            "kind": "reward",
            "source": "upload",
            "upload": upload,
            "test_fraction": "0.2",
            "split_seed": "0",
            "output_name": "rm-upload",
            **fields,
        },
    )


def test_an_upload_at_the_size_limit_is_taken_and_one_byte_more_is_stopped_while_it_streams(
    admin_client_, policy, settings, uploads_to_disk, django_capture_on_commit_callbacks
):
    content = _upload().read()
    settings.TRAINING_UPLOAD_MAX_BYTES = len(content)

    with django_capture_on_commit_callbacks():
        taken = _post_upload(admin_client_, SimpleUploadedFile("at-limit.jsonl", content))
    assert taken.status_code == 302 and TrainingRun.objects.count() == 1
    assert written_to_disk == [len(content)]

    written_to_disk.clear()
    refused = _post_upload(admin_client_, SimpleUploadedFile("over.jsonl", content + b"\n"))
    assert refused.status_code == 422
    assert "larger than" in str(refused.context["form"].errors["upload"])
    assert TrainingRun.objects.count() == 1
    # Never more than the limit went to disk, and what did is gone, like the refused file.
    assert all(size <= len(content) for size in written_to_disk)
    assert not list(uploads_to_disk.iterdir())
    kept = list((settings.MEDIA_ROOT / "training-data").rglob("*.jsonl"))
    assert [path.name for path in kept] == ["at-limit.jsonl"]


def test_an_upload_whose_request_is_already_too_long_writes_nothing(
    admin_client_, policy, settings, uploads_to_disk
):
    """The request's Content-Length alone says the file cannot fit: not one byte of it is
    written, and the page says why, keeping what else was filled in."""
    settings.TRAINING_UPLOAD_MAX_BYTES = 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    upload = SimpleUploadedFile("huge.jsonl", b"x" * (2 * 1024 * 1024))

    response = _post_upload(admin_client_, upload)

    assert response.status_code == 422
    form = response.context["form"]
    assert "larger than" in str(form.errors["upload"])
    assert form["output_name"].value() == "rm-upload"
    assert written_to_disk == []
    assert not list(uploads_to_disk.iterdir())
    assert not TrainingRun.objects.exists()


def test_the_upload_limit_comes_before_the_csrf_check_which_still_holds(
    admin_user, policy, settings, uploads_to_disk
):
    """The limit is installed before the CSRF check reads the body, and the check still runs."""
    from django.test import Client

    settings.TRAINING_UPLOAD_MAX_BYTES = 16
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    without_token = _post_upload(client, SimpleUploadedFile("a.jsonl", b"x" * 17))
    assert without_token.status_code == 403

    client.get(reverse("sampler:training"))
    token = client.cookies["csrftoken"].value
    upload = SimpleUploadedFile("a.jsonl", b"x" * 17)
    response = _post_upload(client, upload, csrfmiddlewaretoken=token)
    assert response.status_code == 422
    assert "larger than" in str(response.context["form"].errors["upload"])
    assert all(size <= 16 for size in written_to_disk)
    assert not TrainingRun.objects.exists()


def test_a_data_file_that_is_not_utf8_from_its_first_line_is_refused_naming_line_1(
    policy, tmp_path
):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff")
    assert data_file_problem("sft", str(path)) == "bin.jsonl line 1 is not UTF-8 text."


def test_an_unreadable_data_file_is_a_clear_refusal_not_an_error(policy, tmp_path):
    folder = tmp_path / "a-folder.jsonl"
    folder.mkdir()
    assert data_file_problem("sft", str(folder)) == "Cannot read a-folder.jsonl: Is a directory."


@pytest.mark.django_db(transaction=True)
def test_a_run_launched_while_the_job_queue_is_down_is_kept_and_its_page_says_so_until_sent(
    admin_client_, policy, broker, other_trainer, settings
):
    """The warning was a message at the top of the run's page, which stayed there once the
    queue was back and the run ran. The part the page polls says it, while the run is not
    published."""
    broker.down = True
    ranked_in_halves(other_trainer, settings, "first")
    fields = {"source": "database", "test_fraction": "0", "split_seed": "3", "kind": "reward"}
    response = admin_client_.post(reverse("sampler:training-run-start"), fields, follow=True)
    assert response.status_code == 200
    run = TrainingRun.objects.get()
    page = response.content.decode()
    said = f"Run {run.pk} is saved, but the job queue is unreachable right now: it starts as soon "
    assert said in page and "queued for a training worker" not in page
    url = reverse("sampler:training-run", kwargs={"run_id": run.pk})
    says_unpublished_until_published(
        admin_client_, broker, job=run, parts={url: said}, pages=(url,)
    )
    assert "queued for a training worker" in admin_client_.get(url).content.decode()


@pytest.mark.parametrize("name", ["...", "....", ". .", "rankings.jsonl"])
def test_an_upload_is_kept_as_a_file_whatever_its_name(name, settings, tmp_path):
    """A name of dots only came down to no name at all: the upload was written onto its
    folder (an error, a 500 on the Training page)."""
    from sampler.runs.services import training_data_store

    settings.MEDIA_ROOT = tmp_path
    path = Path(training_data_store(uploaded=SimpleUploadedFile(name, b'{"a": 1}\n')))
    assert path.is_file() and path.read_bytes() == b'{"a": 1}\n'
    assert path.parent.parent == tmp_path / "training-data" and not path.name.startswith(".")


def test_admin_trains_a_reward_model_on_one_half_from_the_training_page(
    admin_client_, policy, other_trainer, settings
):
    """An independent judge for a PPO policy is a reward model on the other half of the
    rankings: the page could not train one (train_reward --data-half only)."""
    page = admin_client_.get(reverse("sampler:training")).content.decode()
    assert 'name="data_half"' in page
    ranked_in_halves(other_trainer, settings, "first", "second")
    fields = {"kind": "reward", "source": "database", "test_fraction": "0", "split_seed": "0"}
    response = admin_client_.post(
        reverse("sampler:training-run-start"), {**fields, "data_half": "second"}
    )
    assert response.status_code == 302
    assert TrainingRun.objects.get().config["data_half"] == "second"
    refused = admin_client_.post(
        reverse("sampler:training-run-start"), {**fields, "data_half": "third"}
    )
    assert refused.status_code == 422 and "data_half" in refused.context["form"].errors
    # Left out (a client posting what it posted before): every conversation.
    admin_client_.post(reverse("sampler:training-run-start"), fields)
    assert TrainingRun.objects.latest("pk").config.get("data_half", "all") == "all"


def test_a_failed_run_page_shows_the_reason_in_one_line_not_the_traceback(
    admin_client_, policy, django_capture_on_commit_callbacks
):
    """An SFT upload whose third line is not JSON once the run reads it (written after the run
    was made, which reads every line) fails then. The record keeps the traceback (the admin's
    record, the worker's log); the page shows the reason the jobs API gives, not server
    paths."""
    turn = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    lines = f"{json.dumps(turn)}\n{json.dumps(turn)}\n"
    upload = SimpleUploadedFile("sft_bad.jsonl", lines.encode(), "application/jsonl")
    with django_capture_on_commit_callbacks():
        response = admin_client_.post(
            reverse("sampler:training-run-start"),
            {"kind": "sft", "source": "upload", "upload": upload, "test_fraction": "0",
             "split_seed": "0", "max_steps": "1", "learning_rate": "0.001"},
        )  # fmt: skip
    assert response.status_code == 302, response.content.decode()
    with Path(TrainingRun.objects.get().dataset["path"]).open("a") as stream:
        stream.write("not json\n")
    with pytest.raises(DataError):  # run in this process, the error is raised on as well
        training_run_run_inline(run_id=TrainingRun.objects.get().pk)
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.FAILED
    assert "sft_bad.jsonl line 3 is not JSON" in run.error and '  File "' in run.error

    page = admin_client_.get(reverse("sampler:training-run", kwargs={"run_id": run.pk}))
    shown = re.search(r'<pre class="run-error">(.*?)</pre>', page.content.decode(), re.S).group(1)
    api = admin_client_.get(f"/api/jobs/training/{run.pk}/")
    assert "sft_bad.jsonl line 3 is not JSON" in shown and shown == api.json()["error"]
    assert "File &quot;" not in page.content.decode() and "data.py" not in page.content.decode()


@pytest.mark.parametrize("page", ["list", "run"])
def test_training_runs_stop_polling_while_they_wait_for_no_worker(admin_client_, page):
    """A run queued where no live worker serves the training queue cannot move: the Training
    page's runs table and the run's own page stop asking every 2 seconds, name the queue and
    offer "Check again". Before, both asked for as long as they were open."""
    run = TrainingRun.objects.create(kind="reward", output_name="rm", config={}, dataset={})
    url, element = {
        "list": (reverse("sampler:training-runs"), "run-table"),
        "run": (reverse("sampler:training-run", args=[run.pk]), "run-status"),
    }[page]
    polls_only_while_work_can_move(
        admin_client_, url, job=run, element=element, trigger='hx-trigger="every 2s"'
    )


def test_an_upload_with_an_unpaired_surrogate_is_refused_naming_its_line_before_any_run(
    admin_client_, policy
):
    """A lone surrogate (JSON's ``\\ud800``) passed the first-record check and failed the run on
    its worker, in the tokenizer; it is refused by the line it is on, whatever line that is."""
    lines = _upload().read().decode().splitlines()
    lines[2] = lines[2].replace('"content": "', '"content": "a\\ud800b', 1)
    assert "\\ud800" in lines[2]
    upload = SimpleUploadedFile("sur.jsonl", ("\n".join(lines) + "\n").encode())
    response = _post_upload(admin_client_, upload)
    assert response.status_code == 422
    assert response.context["form"].non_field_errors() == [
        "sur.jsonl line 3 holds unpaired surrogate characters (\\ud800-\\udfff), which are not "
        "allowed."
    ]
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("deep", "line"),
    [
        ("[" * 10000 + "]" * 10000, 1),
        ('{"a":' * 100000, 1),
        ("[" * 10000 + "]" * 10000, 2),
    ],
)
def test_an_upload_nested_too_deeply_is_refused_naming_its_line(
    admin_client_, policy, compress, deep, line
):
    """A line nested thousands deep was a RecursionError, which the first-record check and the
    check of every line let through: a 500."""
    lines = _upload().read().decode().splitlines()
    lines.insert(line - 1, deep)
    content = ("\n".join(lines) + "\n").encode()
    name = "deep.jsonl.gz" if compress else "deep.jsonl"
    upload = SimpleUploadedFile(name, gzip.compress(content) if compress else content)
    response = _post_upload(admin_client_, upload)
    assert response.status_code == 422
    assert response.context["form"].non_field_errors() == [
        f"{name} line {line} is nested too deeply (more than 32 levels)."
    ]
    assert not TrainingRun.objects.exists()


def test_a_gzip_upload_that_decompresses_past_its_read_limit_is_refused_when_that_is_read(
    admin_client_, policy
):
    """A few kilobytes of gzip holding megabytes of blank lines were read whole by the web
    request (200 MiB of them: about 48 s) before it answered that the file "holds no record".
    The check reads up to its limit, and stops there."""
    from sampler.runs.data_files import UPLOAD_READ_FLOOR

    read = []
    content = _upload().read() + b"\n" * (2 * UPLOAD_READ_FLOOR)
    upload = SimpleUploadedFile("blank.jsonl.gz", gzip.compress(content))
    assert 50 * upload.size < UPLOAD_READ_FLOOR  # the floor is the limit here
    real_read = gzip.GzipFile.read

    def counted_read(self, size=-1):
        data = real_read(self, size)
        read.append(len(data))
        return data

    with mock.patch.object(gzip.GzipFile, "read", counted_read):
        response = _post_upload(admin_client_, upload)
    assert response.status_code == 422
    assert response.context["form"].non_field_errors() == [
        "blank.jsonl.gz is too large decompressed: an uploaded gzip file is read up to 50 times "
        "its size or 4.0\xa0MB, whichever is more (4.0\xa0MB here), and this one holds more. "
        "Upload it uncompressed, or copy it to the server and train with manage.py train_*."
    ]
    assert sum(read) <= UPLOAD_READ_FLOOR + (1 << 20)  # its first line, then the limit
    assert not TrainingRun.objects.exists()


def test_a_gzip_upload_within_its_read_limit_is_read_whole(admin_client_, policy):
    """Below the limit every line is checked, as before: a bad line at its end is refused."""
    lines = _upload().read() + b"\n" * (1 << 20) + b"not json\n"
    upload = SimpleUploadedFile("late.jsonl.gz", gzip.compress(lines))
    response = _post_upload(admin_client_, upload)
    assert response.status_code == 422
    number = lines.count(b"\n")
    assert response.context["form"].non_field_errors() == [
        f"late.jsonl.gz line {number} is not JSON: Expecting value (column 1)."
    ]


@pytest.mark.parametrize("rows", [1, 2])
def test_the_run_page_and_the_models_page_count_a_runs_records_in_the_right_number(
    admin_client_, policy, rows
):
    """A run of one record said "1 records"."""
    dataset = {"source": "file", "format": "rankings", "path": "/data/r.jsonl", "rows": rows}
    run = _run(policy, dataset=dataset)
    model_version_register(name="trained-1", path=policy.path, training_run_id=run.pk)
    shown = "1 record<" if rows == 1 else "2 records<"
    run_page = admin_client_.get(reverse("sampler:training-run", kwargs={"run_id": run.pk}))
    models_page = admin_client_.get(reverse("sampler:models"))
    for page in (run_page, models_page):
        assert shown in re.sub(r"\s*<", "<", page.content.decode())


@pytest.mark.django_db(transaction=True)
def test_the_queued_note_goes_once_the_run_has_run(
    admin_client_, policy, monkeypatch, other_trainer, settings
):
    """It was a message at the top of the page: it stayed there, above a run the poll showed
    succeeded. The part of the page that polls says it now, while the run waits."""
    monkeypatch.setattr(app, "send_task", mock.Mock())
    worker_seen()
    ranked_in_halves(other_trainer, settings, "first")
    fields = {"source": "database", "test_fraction": "0", "split_seed": "3", "kind": "reward"}
    response = admin_client_.post(reverse("sampler:training-run-start"), fields)
    run = TrainingRun.objects.get()
    url = reverse("sampler:training-run", kwargs={"run_id": run.pk})
    assert response.status_code == 302 and response.url == url
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.SUCCEEDED)
    for answer in (admin_client_.get(url), admin_client_.get(url, HTTP_HX_REQUEST="true")):
        assert "queued for a training worker" not in answer.content.decode()

    other = TrainingRun.objects.create(
        kind="reward", output_name="again", config={}, published_at=timezone.now()
    )
    url = reverse("sampler:training-run", kwargs={"run_id": other.pk})
    polled = admin_client_.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert f"Run {other.pk} is queued for a training worker." in polled
