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


def _reward_run(settings, tmp_path, **config) -> TrainingRun:
    settings.MODEL_ROOT = tmp_path / "models"
    data = tmp_path / "rankings.jsonl"
    write_jsonl(iter(synthetic_rankings(12)), data)
    return training_services.training_run_create(
        kind="reward",
        config={"normalize_to_demonstrations": False, **config},
        data_path=str(data),
        queue=False,
    )


@pytest.fixture
def run(settings, tmp_path, policy) -> TrainingRun:
    return _reward_run(settings, tmp_path, max_steps=2)


def _claim(run: TrainingRun, worker: str) -> JobContext:
    kind = job_kind_named("training")
    job = services.job_claim(kind=kind, job_id=run.pk, token=None, worker=worker)
    assert job is not None
    return JobContext(kind=kind, job=job, token=job.publish_token, worker=worker)


def _claim_stalled(run: TrainingRun, settings) -> JobContext:
    """Another worker claims the run while its worker stalls past JOB_STALE_AFTER."""
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER + 5)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=long_ago)
    return _claim(run, "new/2")


def _take_over(run: TrainingRun, settings) -> JobContext:
    """What happens while the run's worker stalls past JOB_STALE_AFTER: another worker claims
    the run, loads the data and writes its log."""
    new = _claim_stalled(run, settings)
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


def _stalled_worker_runs_and_is_stopped(run: TrainingRun) -> None:
    """The stalled worker's attempt (claimed now) runs, and stops on finding the run taken
    over."""
    stalled = _claim(run, "stalled/1")
    with pytest.raises(JobCancelled):
        training_services._execute(stalled)


def test_a_stalled_worker_that_loaded_the_data_during_a_takeover_writes_nothing_and_stops(
    run, settings, monkeypatch
):
    taken = _stalling_in_load(monkeypatch, settings)
    _stalled_worker_runs_and_is_stopped(run)
    _held_by_new_worker(run, *taken)


def test_a_stalled_worker_failing_after_a_takeover_leaves_the_new_workers_log(
    run, settings, monkeypatch
):
    # The stalled worker then fails (its data file is gone by the time it reads it).
    taken = _stalling_in_load(
        monkeypatch, settings, then=lambda run: Path(run.dataset["path"]).unlink()
    )
    _stalled_worker_runs_and_is_stopped(run)
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


def _new_workers_partial_output_kept(run: TrainingRun, new: JobContext) -> None:
    """The new worker's model is still in the run's partial folder, none was moved in place,
    and the run is still the new worker's."""
    partial, final = _folders(run)
    assert (partial / "new-worker.bin").is_file() and not final.exists()
    _held_by_new_worker(run, new)


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
    _stalled_worker_runs_and_is_stopped(run)
    _new_workers_partial_output_kept(run, *taken)


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
    _stalled_worker_runs_and_is_stopped(run)
    _new_workers_partial_output_kept(run, *taken)


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


# ---- checkpoints: each attempt saves into its own folder ----------------------------------------


class Stalled(Exception):
    """A worker that stops right after a checkpoint (its heartbeat stalls, or it dies)."""


@pytest.fixture
def checkpointed_run(settings, tmp_path, policy) -> TrainingRun:
    return _reward_run(settings, tmp_path, max_steps=4, checkpoint_every=2, batch_size=4)


def _real_trainer(monkeypatch, adjust) -> None:
    """The reward trainer as it is (not as an earlier call replaced it), its arguments first
    changed by ``adjust(arguments)``."""
    from sampler.training import reward

    real = getattr(reward.train_reward, "real", reward.train_reward)

    def train(**arguments):
        return real(**adjust(arguments))

    train.real = real
    monkeypatch.setattr(reward, "train_reward", train)


def _stalling_after_checkpoint(arguments: dict) -> dict:
    """The worker reports its checkpoint at step 2, then stops."""
    report = arguments["callback"]

    def callback(event) -> None:
        report(event)
        if event.kind == "checkpoint":
            raise Stalled

    return {**arguments, "callback": callback}


def _checkpoint_files(run: TrainingRun) -> dict[str, bytes]:
    root = Path(run.checkpoint_dir)
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*.*")}


def _resumes_to_the_end(run: TrainingRun, context: JobContext, monkeypatch) -> None:
    _real_trainer(monkeypatch, lambda arguments: arguments)
    training_services._execute(context)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED
    assert "resumed at step 2 of 4" in run.log
    assert _folders(run)[1].is_dir()


def test_a_stalled_worker_saving_a_checkpoint_after_a_takeover_leaves_the_new_workers_intact(
    checkpointed_run, settings, monkeypatch
):
    run = checkpointed_run
    # Between two checkpoints the stalled worker writes no progress (its writes are throttled).
    monkeypatch.setattr(training_services, "PROGRESS_WRITE_SECONDS", 3600.0)
    theirs: dict[str, bytes] = {}
    taken: list[JobContext] = []

    def new_worker_checkpoints_and_stops() -> None:
        taken.append(_claim_stalled(run, settings))
        with pytest.raises(Stalled):
            training_services._execute(taken[0])
        theirs.update(_checkpoint_files(run))

    def adjust(arguments: dict) -> dict:
        if taken:  # the worker that took the run over
            return _stalling_after_checkpoint(arguments)
        # The stalled worker trains on another data order, so its weights differ; it stalls
        # after its first step, while another worker takes the run over, saves its checkpoint
        # at step 2 and stops in turn. Then it wakes, saves its own step 2, and its checkpoint
        # report stops it.
        config = dataclasses.replace(arguments["config"], seed=arguments["config"].seed + 1)
        report = arguments["callback"]

        def callback(event) -> None:
            report(event)
            if event.kind == "train" and event.step == 1:
                new_worker_checkpoints_and_stops()

        return {**arguments, "config": config, "callback": callback}

    _real_trainer(monkeypatch, adjust)
    with pytest.raises(JobCancelled):
        training_services._execute(_claim(run, "stalled/1"))
    assert any(name.endswith("trainer_state.json") for name in theirs)
    after = _checkpoint_files(run)
    assert {name: after.get(name) for name in theirs} == theirs
    assert len(after) > len(theirs)  # the stalled worker's checkpoint, beside theirs
    _resumes_to_the_end(run, taken[0], monkeypatch)


def test_a_run_taken_over_resumes_from_the_checkpoint_of_the_worker_that_stalled(
    checkpointed_run, settings, monkeypatch
):
    run = checkpointed_run
    stalled = _claim(run, "stalled/1")
    _real_trainer(monkeypatch, _stalling_after_checkpoint)
    with pytest.raises(Stalled):
        training_services._execute(stalled)
    _resumes_to_the_end(run, _claim_stalled(run, settings), monkeypatch)


def _checkpoints_of_attempts(run: TrainingRun) -> dict[str, list[str]]:
    """Each attempt folder of the run and its complete checkpoints."""
    return {
        attempt.name: sorted(path.parent.name for path in attempt.glob("step-*/trainer_state.json"))
        for attempt in sorted(Path(run.checkpoint_dir).glob("attempt-*"))
    }


def _first_attempt_stopped_at_step_2(settings, tmp_path, monkeypatch) -> tuple:
    """(a run of 6 steps with a checkpoint every 2, its first attempt): that attempt stopped
    right after its checkpoint at step 2."""
    run = _reward_run(settings, tmp_path, max_steps=6, checkpoint_every=2, batch_size=4)
    first = _claim(run, "stalled/1")
    _real_trainer(monkeypatch, _stalling_after_checkpoint)
    with pytest.raises(Stalled):
        training_services._execute(first)
    return run, first


def test_an_attempt_that_saved_past_the_checkpoint_it_resumed_from_removes_the_earlier_ones(
    settings, tmp_path, policy, monkeypatch
):
    run, first = _first_attempt_stopped_at_step_2(settings, tmp_path, monkeypatch)
    earlier = {f"attempt-{first.token}": ["step-00000002"]}
    assert _checkpoints_of_attempts(run) == earlier
    seen: dict[str, dict] = {}

    def adjust(arguments: dict) -> dict:
        report = arguments["callback"]

        def callback(event) -> None:
            report(event)
            if event.kind in {"start", "checkpoint"}:
                seen[event.kind] = _checkpoints_of_attempts(run)
            if event.kind == "message" and event.message.startswith("removed"):
                raise Stalled

        return {**arguments, "callback": callback}

    second = _claim_stalled(run, settings)
    _real_trainer(monkeypatch, adjust)
    with pytest.raises(Stalled):
        training_services._execute(second)
    # The checkpoint it resumed from stays until its own is saved whole, then goes.
    assert seen["start"] == earlier
    assert seen["checkpoint"] == {**earlier, f"attempt-{second.token}": ["step-00000004"]}
    assert _checkpoints_of_attempts(run) == {f"attempt-{second.token}": ["step-00000004"]}
    run.refresh_from_db()
    assert "resumed at step 2 of 6" in run.log
    assert "removed 1 checkpoint of the run's other attempts, at step-00000004 or before" in (
        run.log
    )
    # The next attempt resumes from what is left, and the run's success removes it too.
    _real_trainer(monkeypatch, lambda arguments: arguments)
    training_services._execute(_claim_stalled(run, settings))
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED
    assert "resumed at step 4 of 6" in run.log
    assert not Path(run.checkpoint_dir).exists()


def test_an_attempt_whose_checkpoint_failed_to_save_keeps_the_one_it_resumed_from(
    settings, tmp_path, policy, monkeypatch
):
    from sampler.training import loop

    run, first = _first_attempt_stopped_at_step_2(settings, tmp_path, monkeypatch)
    saves = loop.save_checkpoint

    def disk_full(accelerator, checkpoint_dir, state, config):
        (checkpoint_dir / f"step-{state.step:08d}").mkdir(parents=True)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loop, "save_checkpoint", disk_full)
    _real_trainer(monkeypatch, lambda arguments: arguments)
    with pytest.raises(OSError):
        training_services._execute(_claim_stalled(run, settings))
    assert _checkpoints_of_attempts(run)[f"attempt-{first.token}"] == ["step-00000002"]
    monkeypatch.setattr(loop, "save_checkpoint", saves)
    training_services._execute(_claim_stalled(run, settings))
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED
    assert run.log.count("resumed at step 2 of 6") == 2


# ---- starting over (resume=False) --------------------------------------------------------------


def _stopping(*, at_train: int):
    """An ``adjust`` for ``_real_trainer``: the attempt stops (``Stalled``) once it reported its
    step ``at_train``."""

    def adjust(arguments: dict) -> dict:
        report = arguments["callback"]

        def callback(event) -> None:
            report(event)
            if event.kind == "train" and event.step == at_train:
                raise Stalled

        return {**arguments, "callback": callback}

    return adjust


def _first_attempt_stopped_at_step_4(settings, tmp_path, monkeypatch) -> tuple:
    """(a run of 8 steps with a checkpoint every 2, its first attempt's checkpoints): that
    attempt stopped at step 5, its checkpoint at step 4 saved."""
    run = _reward_run(settings, tmp_path, max_steps=8, checkpoint_every=2, batch_size=4)
    first = _claim(run, "first/1")
    _real_trainer(monkeypatch, _stopping(at_train=5))
    with pytest.raises(Stalled):
        training_services._execute(first)
    earlier = {f"attempt-{first.token}": ["step-00000004"]}
    assert _checkpoints_of_attempts(run) == earlier
    return run, earlier


def _retried_to_the_end(run: TrainingRun, settings, monkeypatch) -> str:
    """The run's next attempt, trained to its success; returns the run's log."""
    _real_trainer(monkeypatch, lambda arguments: arguments)
    training_services._execute(_claim_stalled(run, settings))
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED
    return run.log


def test_a_run_started_over_removes_the_earlier_attempts_checkpoints_once_it_saved_its_own(
    settings, tmp_path, policy, monkeypatch
):
    """Started over (not resumed), an attempt's first checkpoint removes every checkpoint the
    run had when it started, past its step too: none is left for a later attempt to resume
    from in its place."""
    run, _ = _first_attempt_stopped_at_step_4(settings, tmp_path, monkeypatch)
    fresh = _claim_stalled(run, settings)
    _real_trainer(monkeypatch, _stopping(at_train=3))
    with pytest.raises(Stalled):
        training_services._execute(fresh, resume=False)
    assert _checkpoints_of_attempts(run) == {f"attempt-{fresh.token}": ["step-00000002"]}
    run.refresh_from_db()
    assert "removed 1 checkpoint saved before this attempt started over" in run.log
    # The next attempt resumes from the one the attempt that started over saved.
    log = _retried_to_the_end(run, settings, monkeypatch)
    assert "resumed at step 2 of 8" in log and "resumed at step 4" not in log


def test_a_run_started_over_that_stops_before_its_first_checkpoint_keeps_the_earlier_ones(
    settings, tmp_path, policy, monkeypatch
):
    """Until the attempt that started over has saved a checkpoint of its own, the run keeps
    those it had: stopped before then, it leaves the run as resumable as it was."""
    run, earlier = _first_attempt_stopped_at_step_4(settings, tmp_path, monkeypatch)
    _real_trainer(monkeypatch, _stopping(at_train=1))
    with pytest.raises(Stalled):
        training_services._execute(_claim_stalled(run, settings), resume=False)
    assert _checkpoints_of_attempts(run) == earlier
    run.refresh_from_db()
    assert "started over: 1 checkpoint saved before (step-00000004 the newest)" in run.log
    assert "resumed at step 4 of 8" in _retried_to_the_end(run, settings, monkeypatch)
