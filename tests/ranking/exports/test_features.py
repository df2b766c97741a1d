"""Every export format loads with the Hugging Face ``datasets`` library, with one type per
column, wherever its nulls and values fall in the file."""

import gzip
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from labeling.conversations import services as conversation_services
from labeling.conversations.models import Conversation
from labeling.redteam import services as redteam_services
from ranking.exports import services as export_services
from ranking.exports.features import export_features, features_path
from ranking.exports.filters import SCHEMA_VERSION, ExportFilters
from ranking.exports.pipeline import records
from sampler.jobs.services import job_run_inline
from sampler.models import ModerationResult, Sample
from tests.labeling.conftest import model_reply
from tests.ranking.conftest import (
    finished_conversation,
    model_version_create,
    quick_trainer,
    rank,
    task_from_source,
)

# Each record is longer than a chunk: ``datasets`` infers each chunk's types on its own.
LONG = "lorem ipsum dolor sit amet " * 60
CHUNK_BYTES = 1000


@pytest.fixture
def nulls_first(db):
    """Records whose nullable columns are null first and set last, in every format: rankings
    without an order (no order_unchanged, no first placement) before a ranked one whose
    replies the content filter judged; pairs of rankings before a red-team pair (attack id
    and category); demonstrations without a guideline version or an attack before a corrected
    attack's."""
    writer, ranker = quick_trainer("writer"), quick_trainer("ranker")
    policy = model_version_create("v1")
    tasks = [
        task_from_source(
            finished_conversation(writer, turns=(f"{index}: {LONG}", LONG)).active_leaf,
            model_version=policy,
        )
        for index in range(3)
    ]
    for task in tasks[:2]:
        rank(task, ranker, [], verdict="all_equal", rationale="the same")
    rank(tasks[2], ranker, [[0], [1], [2], [3]], first_placement_ms=900)
    for sample in Sample.objects.filter(job=tasks[2].generation_job):
        ModerationResult.objects.create(
            sample=sample,
            filter_name="builtin",
            filter_version="1",
            flagged=True,
            categories=["harmful"],
        )
    conversation = conversation_services.conversation_create(
        owner=writer, title="Locks", mode=Conversation.Mode.RED_TEAM
    )
    prompt = conversation_services.message_append(
        conversation=conversation, author=writer, content=LONG
    )
    reply = model_reply(conversation, prompt, policy, text="sure, a tension wrench")
    attack = redteam_services.attack_record(message=reply, user=writer, category="jailbreak")
    redteam_services.attack_correct(attack=attack, author=writer, content=LONG)
    conversation_services.conversation_finish(conversation=conversation, user=writer)
    return attack


def readme_load(data_file, features_file, **options):
    """The README's call (its "Export formats" snippet)."""
    from datasets import Features, load_dataset

    with open(features_file) as file:
        features = Features.from_dict(json.load(file))
    return load_dataset(
        "json", data_files=str(data_file), features=features, split="train", **options
    )


@pytest.mark.parametrize("pseudonymize", [True, False])
@pytest.mark.parametrize("format", ["rankings", "pairs", "demonstrations"])
def test_every_format_loads_with_one_type_per_column_whatever_comes_first(
    nulls_first, tmp_path, format, pseudonymize
):
    from datasets import Features

    path = tmp_path / f"{format}.jsonl.gz"
    options = () if pseudonymize else ("--no-pseudonymize",)
    call_command(
        "export_comparisons", "--format", format, "--out", str(path), *options, verbosity=0
    )
    features_file = tmp_path / f"{format}.features.json"
    # A chunk per record: datasets would type each chunk from its own rows.
    dataset = readme_load(
        path, features_file, chunksize=CHUNK_BYTES, cache_dir=str(tmp_path / "cache")
    )
    with open(features_file) as file:
        assert dataset.features == Features.from_dict(json.load(file))
    rows = gzip.decompress(path.read_bytes()).splitlines()
    assert len(dataset) == len(rows) > 1 and dataset[-1]["schema_version"] == SCHEMA_VERSION
    last = dataset[-1]
    if format == "rankings":
        assert dataset[0]["first_placement_ms"] is None and last["first_placement_ms"] is not None
        assert dataset[0]["order_unchanged"] is None and last["order_unchanged"] is not None
        assert last["candidates"][1]["moderation"]["categories"] == ["harmful"]
        assert isinstance(last["ranker"], str if pseudonymize else int)
    else:
        assert dataset[0]["attack_id"] is None and last["attack_id"] == nulls_first.pk
    if format == "pairs":
        assert last["attack_category"] == "jailbreak"
    if format == "demonstrations":
        assert dataset[0]["guideline_version"] is None and last["guideline_version"] == 1


@pytest.mark.parametrize("format", ["rankings", "pairs", "demonstrations"])
def test_the_features_name_every_column_of_every_record(nulls_first, format):
    features = export_features(format)
    modes = ("per_ranker", "aggregated") if format == "pairs" else ("per_ranker",)
    for mode in modes:
        for record in records(format, ExportFilters(pair_mode=mode)):
            # In the README's order (the features' too): a loader without the features takes
            # its columns in the first record's order, ranking pairs and red-team pairs alike.
            assert list(record) == list(features)
            if format == "rankings":
                for candidate in record["candidates"]:
                    assert set(candidate) == set(features["candidates"][0])


def test_an_export_job_writes_its_features_beside_its_file_and_serves_them(
    nulls_first, admin_user, client
):
    export = export_services.dataset_export_create(
        created_by=admin_user, format="pairs", filters=ExportFilters(), queue=False
    )
    export = job_run_inline(job=export)
    beside = features_path(Path(export.file_path))
    assert beside.name == f"export-{export.pk}-pairs.features.json"
    assert json.loads(beside.read_bytes()) == export_features("pairs")
    client.force_login(admin_user)
    response = client.get(reverse("ranking:export-features", args=[export.pk]))
    assert response.status_code == 200
    assert json.loads(b"".join(response.streaming_content)) == export_features("pairs")
    api = client.get(reverse("api-export-features"), {"format": "pairs", "pseudonymize": "false"})
    assert api.status_code == 200 and api.json() == export_features("pairs", pseudonymize=False)
    assert api.json()["ranker"] == {"dtype": "int64", "_type": "Value"}
    # An export made before exports carried their types (or whose types file is gone): made
    # from its format and filters, the same; once the export itself is gone, nothing.
    beside.unlink()
    again = client.get(reverse("ranking:export-features", args=[export.pk]))
    assert again.status_code == 200 and again.json() == export_features("pairs")
    assert again["Content-Disposition"] == f'attachment; filename="{beside.name}"'
    Path(export.file_path).unlink()
    gone = client.get(reverse("ranking:export-features", args=[export.pk]))
    assert gone.status_code == 404


def test_standard_output_has_no_features_unless_asked(nulls_first, tmp_path, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    call_command("export_comparisons", "--format", "pairs", "--out", "-", verbosity=0)
    assert list(tmp_path.iterdir()) == []
    target = tmp_path / "types" / "pairs.json"
    call_command(
        "export_comparisons",
        "--format",
        "pairs",
        "--out",
        "-",
        "--features-out",
        str(target),
        verbosity=0,
    )
    assert json.loads(target.read_bytes()) == export_features("pairs")
