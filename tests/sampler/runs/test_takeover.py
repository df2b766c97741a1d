"""A training run taken over from a worker that stalled: the stalled worker, when it wakes,
writes nothing on the run and leaves alone what the worker that took it over writes."""

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from ranking.exports.pipeline import write_jsonl
from sampler.jobs import services
from sampler.jobs.kinds import JobCancelled, JobContext, job_kind_named
from sampler.runs import kinds as training_kinds
from sampler.runs import services as training_services
from sampler.runs.models import TrainingRun
from sampler.training.synthetic import synthetic_rankings

pytestmark = pytest.mark.django_db

NEW_LOG = "[new worker] 13 rankings records loaded\n"
# What the new worker read (a database export read later holds more rows).
LOADED = {"rows": 13, "sha256": "0" * 64}


@pytest.fixture
def run(settings, tmp_path, policy) -> TrainingRun:
    settings.MODEL_ROOT = tmp_path / "models"
    data = tmp_path / "rankings.jsonl"
    write_jsonl(iter(synthetic_rankings(12)), data)
    return training_services.training_run_create(
        kind="reward",
        config={"max_steps": 2, "normalize_to_demonstrations": False},
        data_path=str(data),
        queue=False,
    )


def _claim(run: TrainingRun, worker: str) -> JobContext:
    kind = job_kind_named("training")
    job = services.job_claim(kind=kind, job_id=run.pk, token=None, worker=worker)
    assert job is not None
    return JobContext(kind=kind, job=job, token=job.publish_token, worker=worker)


def _take_over(run: TrainingRun, settings) -> JobContext:
    """What happens while the run's worker stalls past JOB_STALE_AFTER: another worker claims
    the run, loads the data and writes its log."""
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER + 5)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=long_ago)
    new = _claim(run, "new/2")
    new.heartbeat(dataset={**run.dataset, **LOADED}, log=NEW_LOG)
    return new


def _stalling_in_load(monkeypatch, settings, *, then=None) -> list[JobContext]:
    """The reward kind's worker stalls while it loads the data (taken over meanwhile); ``then``
    runs after the takeover, before the load. The new worker's context lands in the list."""
    reward = training_kinds.TRAINING_KINDS["reward"]
    taken: list[JobContext] = []

    def load(run, config):
        if then is None:
            data = reward.load(run, config)
            taken.append(_take_over(run, settings))
            return data
        taken.append(_take_over(run, settings))
        then(run)
        return reward.load(run, config)

    monkeypatch.setitem(
        training_kinds.TRAINING_KINDS, "reward", dataclasses.replace(reward, load=load)
    )
    return taken


def _held_by_new_worker(run: TrainingRun, new: JobContext) -> None:
    run.refresh_from_db()
    assert run.dataset == {**run.dataset, **LOADED} and run.log == NEW_LOG
    assert run.status == TrainingRun.Status.RUNNING and run.publish_token == new.token


def test_a_stalled_worker_that_loaded_the_data_during_a_takeover_writes_nothing_and_stops(
    run, settings, monkeypatch
):
    taken = _stalling_in_load(monkeypatch, settings)
    stalled = _claim(run, "stalled/1")
    with pytest.raises(JobCancelled):
        training_services._execute(stalled)
    _held_by_new_worker(run, *taken)


def test_a_stalled_worker_failing_after_a_takeover_leaves_the_new_workers_log(
    run, settings, monkeypatch
):
    # The stalled worker then fails (its data file is gone by the time it reads it).
    taken = _stalling_in_load(
        monkeypatch, settings, then=lambda run: Path(run.dataset["path"]).unlink()
    )
    stalled = _claim(run, "stalled/1")
    with pytest.raises(JobCancelled):
        training_services._execute(stalled)
    _held_by_new_worker(run, *taken)


# ---- the files every attempt of a run shares ---------------------------------------------------


def _folders(run: TrainingRun) -> tuple[Path, Path]:
    final = Path(training_services.settings.MODEL_ROOT) / run.output_name
    return final.with_name(f".{final.name}.partial"), final


def _new_worker_trains(run: TrainingRun, settings) -> JobContext:
    """The run taken over; the new worker writes its model into the run's partial folder."""
    new = _take_over(run, settings)
    partial, _ = _folders(run)
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "new-worker.bin").write_text("the new worker's weights")
    return new


def _trainer(monkeypatch, trains) -> None:
    """The reward trainer replaced by ``trains(output_dir, callback)``, which returns the
    result a trainer would."""
    from sampler.training import reward
    from sampler.training.loop import RunResult

    def train(*, output_dir, callback, **_):
        trains(Path(output_dir), callback)
        return RunResult(output_dir=output_dir, metrics={}, history={}, data={}, steps=2)

    monkeypatch.setattr(reward, "train_reward", train)


def test_a_stalled_worker_stopped_mid_training_leaves_the_new_workers_partial_output(
    run, settings, monkeypatch
):
    from sampler.training.loop import ProgressEvent

    taken: list[JobContext] = []

    def trains(output_dir: Path, callback) -> None:
        taken.append(_new_worker_trains(run, settings))
        # The stalled worker's next progress write finds the run taken over.
        callback(ProgressEvent(kind="checkpoint", step=1, total_steps=2, message="checkpoint"))

    _trainer(monkeypatch, trains)
    stalled = _claim(run, "stalled/1")
    with pytest.raises(JobCancelled):
        training_services._execute(stalled)
    partial, final = _folders(run)
    assert (partial / "new-worker.bin").is_file() and not final.exists()
    _held_by_new_worker(run, *taken)


def test_a_stalled_worker_that_finished_training_during_a_takeover_moves_nothing(
    run, settings, monkeypatch
):
    taken: list[JobContext] = []

    def trains(output_dir: Path, callback) -> None:
        output_dir.mkdir(parents=True)
        (output_dir / "stalled.bin").write_text("the stalled worker's weights")
        # It stalls after its last progress write, before it moves its model in place.
        taken.append(_new_worker_trains(run, settings))

    _trainer(monkeypatch, trains)
    stalled = _claim(run, "stalled/1")
    with pytest.raises(JobCancelled):
        training_services._execute(stalled)
    partial, final = _folders(run)
    assert (partial / "new-worker.bin").is_file() and not final.exists()
    _held_by_new_worker(run, *taken)


def test_a_stalled_worker_starting_late_leaves_the_model_the_new_worker_moved_in_place(
    run, settings
):
    stalled = _claim(run, "stalled/1")
    new = _take_over(run, settings)
    # The new worker trained and moved its model in place; it is about to register it.
    _, final = _folders(run)
    final.mkdir(parents=True)
    (final / training_services.RUN_MARKER).write_text(f"{run.pk}\n")
    (final / "new-worker.bin").write_text("the new worker's weights")
    with pytest.raises(JobCancelled):
        training_services._execute(stalled)
    assert (final / "new-worker.bin").is_file()
    _held_by_new_worker(run, new)


def test_a_run_cancelled_mid_training_removes_its_partial_output(run, monkeypatch):
    from sampler.training.loop import ProgressEvent

    def trains(output_dir: Path, callback) -> None:
        output_dir.mkdir(parents=True)
        (output_dir / "weights.bin").write_text("half trained")
        training_services.training_run_cancel(run=run)
        callback(ProgressEvent(kind="checkpoint", step=1, total_steps=2, message="checkpoint"))

    _trainer(monkeypatch, trains)
    with pytest.raises(JobCancelled):
        training_services._execute(_claim(run, "here/1"))
    partial, final = _folders(run)
    assert not partial.exists() and not final.exists()
