"""The checks on a run's data file when the run is made: each record is read as its trainer
reads it, and a record it cannot read is refused by its line."""

import json
from dataclasses import replace

import pytest
from django.core.exceptions import ValidationError

from sampler.runs import kinds as run_kinds
from sampler.runs import services as training_services
from sampler.runs.data import BY_FILE_CONVERSATION
from sampler.runs.models import TrainingRun
from sampler.training.config import SFTConfig
from sampler.training.records import none_in_half, numbered_records

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def model_root(settings, tmp_path):
    settings.MODEL_ROOT = tmp_path / "models"


def _demonstration(number: int) -> dict:
    return {
        "messages": [
            {"role": "user", "content": f"Hi {number}"},
            {"role": "assistant", "content": "Hello"},
        ]
    }


def _write(path, records) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


@pytest.mark.usefixtures("policy")
def test_a_record_of_the_wrong_shape_is_refused_by_its_line(tmp_path):
    """A demonstration whose turns are text, not objects, was refused as "cannot read a
    record of x" without saying which."""
    data = _write(tmp_path / "demos.jsonl", [{"messages": ["hi", "hello"]}, _demonstration(1)])
    with pytest.raises(ValidationError) as refused:
        training_services.training_run_create(
            kind="sft", data_path=data, config={"test_fraction": 0}, queue=False
        )
    (message,) = refused.value.message_dict["data_path"]
    assert message.startswith("A supervised fine-tuning run cannot read line 1 of demos.jsonl: ")
    assert not TrainingRun.objects.exists()


def test_a_fault_in_a_kind_is_raised_not_said_as_a_record_it_cannot_read(tmp_path):
    """The check caught AttributeError (and any KeyError or TypeError) wherever it was raised,
    so a fault of the code itself was told to users as a record their file could not give."""

    def faulty(dataset, config):
        return dataset.missing_attribute  # a dict has none: a fault of the kind's code

    kind = replace(run_kinds.SFT, counted=faulty)
    data = _write(tmp_path / "demos.jsonl", [_demonstration(1), _demonstration(2)])
    dataset = {"source": "file", "format": "demonstrations", "path": data}
    with pytest.raises(AttributeError):
        run_kinds.data_split_problems(kind, SFTConfig(), dataset)


@pytest.mark.usefixtures("policy")
@pytest.mark.parametrize(
    ("kind", "good", "short", "refusal"),
    [
        (
            "sft",
            _demonstration(1),
            {"prompt": "Hi"},
            "A supervised fine-tuning run reads records with `messages`; line 3 of data.jsonl "
            "has `prompt`.",
        ),
        (
            "dpo",
            {"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"},
            {"prompt": "Hi", "chosen": "Hello"},
            "A DPO run reads records with `candidates`, `ordering` or `chosen`, `rejected`; "
            "line 3 of data.jsonl has `chosen`, `prompt`.",
        ),
    ],
)
def test_a_later_record_without_the_keys_its_kind_reads_is_refused_by_its_line(
    tmp_path, kind, good, short, refusal
):
    """Only the first record's keys were checked: a later one without them was found by the
    trainer on its worker (or skipped)."""
    data = _write(tmp_path / "data.jsonl", [good, good, short, good])
    with pytest.raises(ValidationError) as refused:
        training_services.training_run_create(
            kind=kind, data_path=data, config={"test_fraction": 0}, queue=False
        )
    assert refused.value.message_dict["data_path"] == [refusal]
    assert not TrainingRun.objects.exists()


@pytest.mark.usefixtures("policy")
def test_a_run_of_one_record_says_1_record_loaded(tmp_path):
    """The log said "1 demonstrations records loaded"."""
    data = _write(tmp_path / "one.jsonl", [_demonstration(1)])
    run = training_services.training_run_create(
        kind="sft", data_path=data, config={"test_fraction": 0, "max_steps": 1}, queue=False
    )
    run = training_services.training_run_run_inline(run_id=run.pk)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert "] 1 demonstrations record loaded\n" in run.log


def test_a_half_of_one_record_says_the_record_was_read():
    """ "1 records were read, and none of their conversations is in the first half"."""
    assert none_in_half(1, "first").startswith(
        "1 record was read, and its conversation is not in the first half this run trains on"
    )
    assert none_in_half(2, "first").startswith("2 records were read, and none of their")


def test_the_split_checks_read_a_file_once_however_many_checks_go_over_it(tmp_path, monkeypatch):
    """Each check of a file's split (enough to train on, its own split, what the fraction holds
    out on each side) opened and read the file again: 3 readings of an upload in the one
    request that made its run, beside the check of every line. They now share one reading,
    and say what they said."""
    opened = []

    def counted_reading(path):
        opened.append(path)
        return numbered_records(path)

    monkeypatch.setattr(run_kinds, "numbered_records", counted_reading)
    records = [_demonstration(number) for number in range(40)]
    data = _write(tmp_path / "demos.jsonl", records)
    dataset = {"source": "file", "format": "demonstrations", "path": data}
    config = SFTConfig(test_fraction=0.5)
    assert run_kinds.data_split_problems(run_kinds.SFT, config, dataset) == {}
    assert opened == [data]
    # A fraction that holds out every record is refused as before, from the same one reading.
    opened.clear()
    refused = run_kinds.data_split_problems(
        run_kinds.SFT, SFTConfig(test_fraction=0.99, seed=0), dataset
    )
    assert len(opened) == 1
    assert refused == {
        "test_fraction": "No demonstration to train on: a held-out fraction of 0.99 holds out "
        f"all 40 demonstrations in demos.jsonl {BY_FILE_CONVERSATION}. Add more records to "
        "demos.jsonl, or choose a smaller held-out fraction."
    }


def test_a_file_longer_than_the_records_kept_is_read_again_and_checked_the_same(
    tmp_path, monkeypatch
):
    """Past the records kept for the checks to go over again, a check reads the file again
    rather than holding it whole: the answer is the same."""
    monkeypatch.setattr(run_kinds, "KEPT_RECORDS", 3)
    data = _write(tmp_path / "demos.jsonl", [_demonstration(number) for number in range(40)])
    dataset = {"source": "file", "format": "demonstrations", "path": data}
    refused = run_kinds.data_split_problems(
        run_kinds.SFT, SFTConfig(test_fraction=0.99, seed=0), dataset
    )
    assert refused["test_fraction"].startswith(
        "No demonstration to train on: a held-out fraction of 0.99 holds out all 40 "
    )
    assert run_kinds.data_split_problems(run_kinds.SFT, SFTConfig(test_fraction=0.5), dataset) == {}
