"""Training runs: record and queue them, run them through the executor, register the output.

The training itself lives in ``sampler.training`` (no Django). Here: a run is validated and
recorded (``training_run_create``), then run by the job executor (``sampler.jobs``) on a
``training`` worker, or in the calling process by a ``manage.py train_*`` command
(``training_run_run_inline``). The data comes from the database (export filters) or a JSONL
file; the loop reports progress into the TrainingRun row (which is also its heartbeat and where
a cancellation is noticed); a successful run registers its model as a new ModelVersion, never
promoted. A failed or interrupted run changes no active model and resumes from its last
checkpoint when it is retried.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from config.text import counted, one_line_problem
from ranking.exports.filters import ExportFilters
from sampler.jobs.services import (
    JobCancelled,
    JobContext,
    Publication,
    job_cancel,
    job_enqueue,
    job_execute,
    job_retry,
    worker_stopping,
)
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_name_taken
from sampler.registry.services import model_version_register
from sampler.runs.data import is_main_process
from sampler.runs.data_files import data_file_problem, data_path_checker
from sampler.runs.kinds import (
    TrainingKind,
    data_split_problems,
    lora_targets_problem,
    training_kind,
    validated_config,
)
from sampler.runs.models import TrainingRun
from sampler.runs.versions import model_folder_problem, validated_version

if TYPE_CHECKING:
    from sampler.training.loop import ProgressEvent

logger = logging.getLogger(__name__)

# Progress reaches the database at most this often (plus at every eval and at the end).
PROGRESS_WRITE_SECONDS = 2.0
LOG_LIMIT = 50_000
JOB_KIND = "training"
# Written into a trained model's folder before it is moved in place: which run made it, so the
# run's retry can tell its own unregistered folder (its worker stopped between the move and the
# registration) from a folder that is someone else's.
RUN_MARKER = ".tandem_run"
# The folder of MODEL_ROOT that keeps every run's checkpoints (``run-<id>`` in it).
CHECKPOINTS_FOLDER = "runs"
# Each attempt of a run (each claim or takeover: a new token) saves its checkpoints into its own
# folder in the run's, ``attempt-<token>``; the training loop resumes from the newest complete
# one of the run's attempts, and once an attempt saved one of its own removes the other
# attempts' up to its step (``sampler.training.loop.ATTEMPT_PREFIX``, ``prune_checkpoints``);
# an attempt that starts over (``resume`` False) resumes from none and, once it saved one of its
# own, removes every one it found, at any step (``checkpoint_plan``, ``remove_abandoned``).
ATTEMPT_PREFIX = "attempt-"


# ---- create -----------------------------------------------------------------------------------


def _validated_output_name(output_name: str) -> str:
    output_name = output_name.strip()
    # It becomes the model version's name, which is one line: refused here, before the run
    # trains, rather than when its version is registered at the end.
    if output_name and (problem := one_line_problem(output_name)) is not None:
        raise ValidationError({"output_name": problem})
    if output_name and (Path(output_name).name != output_name or output_name.startswith(".")):
        raise ValidationError({"output_name": "The name becomes a folder: no slashes, no dot."})
    if output_name == CHECKPOINTS_FOLDER:
        raise ValidationError(
            {
                "output_name": f"{CHECKPOINTS_FOLDER} is the folder of MODEL_ROOT that keeps the "
                "runs' checkpoints: choose another name."
            }
        )
    if output_name and (taken := model_version_name_taken(name=output_name)):
        raise ValidationError({"output_name": taken})
    if output_name and (Path(settings.MODEL_ROOT) / output_name).exists():
        raise ValidationError(
            {"output_name": f"{output_name} exists already in MODEL_ROOT: choose another name."}
        )
    return output_name


# The longest folder name most filesystems take, in bytes (a version's name is also its folder).
MAX_FOLDER_NAME_BYTES = 255


def _automatic_output_name(*, base: ModelVersion, kind: str, run_id: int) -> str:
    """``<base>-<kind>-run<id>`` as one plain folder name: a base's name may be a hub id
    (``org/model``, as SAMPLER_MODEL registers) or hold dots and slashes that would put the
    folder elsewhere than directly in MODEL_ROOT, or hide it. Numbered (``-2``, ``-3``, ...)
    when a version has that name in any letter case, or MODEL_ROOT a folder of it: the run
    would fail on it when it starts. The base's part is cut so that the whole fits a version's
    name (its ``max_length``) and a folder's (``MAX_FOLDER_NAME_BYTES``): a base named at
    that length would leave a name its registration refuses."""
    stem = re.sub(r"[^\w.-]+", "-", base.name).lstrip(".-") or "model"
    longest = ModelVersion._meta.get_field("name").max_length
    number = 1
    while True:
        suffix = f"-{kind}-run{run_id}" + (f"-{number}" if number > 1 else "")
        kept = stem[: longest - len(suffix)]
        while len((kept + suffix).encode()) > MAX_FOLDER_NAME_BYTES:
            kept = kept[:-1]
        name = kept + suffix
        if (
            not model_version_name_taken(name=name)
            and not (Path(settings.MODEL_ROOT) / name).exists()
        ):
            return name
        number += 1


def training_run_create(
    *,
    kind: str,
    config: dict | None = None,
    base_version: ModelVersion | None = None,
    filters: ExportFilters | None = None,
    data_path: str | None = None,
    output_name: str = "",
    started_by: AbstractBaseUser | None = None,
    allowed_data_roots: list[Path] | None = None,
    data_read_limit: int | None = None,
    queue: bool = True,
    **kind_inputs,
) -> TrainingRun:
    """Validate and record a run of any kind; ``queue`` sends it to a training worker.

    Data: ``filters`` (read from the database when the run starts) or ``data_path`` (a JSONL
    export, possibly gzipped). ``kind_inputs`` are the kind's own (reward:
    ``demonstrations_path``; PPO: ``reward_version``). ``allowed_data_roots`` limits the files a
    web request may name; ``data_read_limit`` is the most its checks read of an upload
    (``upload_read_limit``). Bad input raises ``ValidationError`` before anything is stored.
    ``run.publication`` says whether the job queue took it (the run is kept either way).
    """
    training = training_kind(kind)
    training_config = validated_config(training, config)
    base = validated_version(base_version, ModelVersion.Kind.POLICY, "base_version")
    if problem := lora_targets_problem(training, training_config, base):
        raise ValidationError({"lora_targets": problem})
    if (filters is None) == (data_path is None):
        raise ValidationError({"data": "Give either database filters or a data file."})
    if filters is not None:
        filters.check_format(training.data_format)
    check_path = data_path_checker(allowed_data_roots)
    if data_path is not None:
        dataset = {"source": "file", "format": training.data_format, "path": check_path(data_path)}
        problem = data_file_problem(training.name, dataset["path"], max_bytes=data_read_limit)
        if problem:
            raise ValidationError({"data_path": problem})
    else:
        dataset = {
            "source": "database",
            "format": training.data_format,
            "filters": filters.as_dict(),
        }
    dataset.update(
        training.inputs(
            validate_path=check_path,
            config=training_config,
            dataset=dataset,
            base=base,
            **kind_inputs,
        )
    )
    # Found out when the run starts, it would fail, or train and report no held-out metric.
    if problems := data_split_problems(training, training_config, dataset):
        raise ValidationError(problems)
    output_name = _validated_output_name(output_name)
    with transaction.atomic():
        run = TrainingRun.objects.create(
            kind=training.name,
            base_version=base,
            config=training_config.as_dict(),
            dataset=dataset,
            output_name=output_name,
            started_by=started_by,
        )
        run.output_name = output_name or _automatic_output_name(
            base=base, kind=training.name, run_id=run.pk
        )
        run.checkpoint_dir = str(Path(settings.MODEL_ROOT) / CHECKPOINTS_FOLDER / f"run-{run.pk}")
        run.save(update_fields=["output_name", "checkpoint_dir"])
        run.publication = job_enqueue(job=run) if queue else None
    return run


def training_data_roots() -> list[Path]:
    """Folders a run launched from the web may read: exports and uploads."""
    return [Path(settings.EXPORT_ROOT), Path(settings.MEDIA_ROOT) / "training-data"]


def training_data_store(*, uploaded) -> str:
    """Keep an uploaded JSONL file for a run; returns its path (under a fresh folder, with the
    file's own name reduced to safe characters)."""
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(uploaded.name).name)[-100:].lstrip(".")
    folder = training_data_roots()[1] / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    # A name of dots only (".." included) is no name: the file would be its folder.
    path = folder / (safe_name or "data.jsonl")
    with path.open("wb") as stream:
        for chunk in uploaded.chunks():
            stream.write(chunk)
    return str(path)


def training_data_discard(*, path: str) -> None:
    """Remove an upload kept by ``training_data_store`` that no run took (a refused run), with
    its folder; a path anywhere else is left alone."""
    file = Path(path)
    if file.parent.parent != training_data_roots()[1]:
        return
    file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        file.parent.rmdir()


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Stop a queued or running run; the worker sees it at its next progress write."""
    return job_cancel(job=run)


def training_run_retry(*, run: TrainingRun) -> Publication:
    """Queue a failed or cancelled run again; it resumes from its last checkpoint."""
    return job_retry(job=run)


# ---- execute ----------------------------------------------------------------------------------


class _RunRecorder:
    """The loop's progress callback: curves, progress and log into the run row, throttled.

    Each write is also the run's heartbeat and the moment a cancellation is noticed (the
    executor's ``JobCancelled``). Without a context (a secondary process under ``accelerate
    launch``) nothing is written.
    """

    def __init__(
        self,
        run: TrainingRun,
        context: JobContext | None,
        echo: Callable[[ProgressEvent], None] | None = None,
    ):
        self.run_id = run.pk
        self.context = context
        self.echo = echo
        self.log = run.log
        self.history: dict = run.metrics or {}
        self.progress = run.progress
        self.last_write = 0.0

    def note(self, message: str) -> None:
        stamp = timezone.now().strftime("%Y-%m-%d %H:%M:%S")
        self.log = (self.log + f"[{stamp}] {message}\n")[-LOG_LIMIT:]
        if self.echo is None:  # on a worker; the command line prints through `echo` instead
            logger.info("Training run %s: %s", self.run_id, message)

    def __call__(self, event: ProgressEvent) -> None:
        if not event.is_main_process or self.context is None:
            return
        if self.echo is not None:
            self.echo(event)
        if event.kind in {"start", "message", "checkpoint"}:
            self.note(event.message)
        elif event.kind == "eval":
            self.note(
                f"step {event.step}: "
                + ", ".join(f"{name} {value:.4f}" for name, value in sorted(event.metrics.items()))
            )
        elif event.kind == "end":
            self.note(f"training finished at step {event.step}")
        if event.total_steps:
            self.progress = min(0.99, event.step / event.total_steps)
            self.history = event.history
        urgent = event.kind in {"start", "eval", "checkpoint", "end"}
        if urgent or time.monotonic() - self.last_write >= PROGRESS_WRITE_SECONDS:
            self.write()

    def write(self, **fields) -> None:
        """Store progress, curves and log (and ``fields``) while this worker holds the run;
        ``JobCancelled`` when it no longer does (cancelled, or taken over after a stall), so
        a stalled worker never overwrites what the one that took the run over wrote."""
        if self.context is None:
            return
        self.last_write = time.monotonic()
        self.context.heartbeat(progress=self.progress, metrics=self.history, log=self.log, **fields)


def _train_run(
    run: TrainingRun,
    training: TrainingKind,
    recorder: _RunRecorder,
    *,
    resume: bool,
    is_main: bool,
):
    """Load the data and train; returns (result, data, final_dir) or raises."""
    config = validated_config(training, run.config)
    final_dir = Path(settings.MODEL_ROOT) / run.output_name
    partial_dir = final_dir.with_name(f".{final_dir.name}.partial")
    if taken := model_version_name_taken(name=run.output_name):
        raise ValidationError({"output_name": taken})
    if _made_by(final_dir, run):
        # This run's own model, moved in place by an attempt stopped before it registered it: set
        # aside in one rename (the other processes of a launch see it or no folder), then removed.
        if is_main:
            _remove_unless_taken_over(recorder.context, final_dir)
    elif final_dir.exists():
        raise ValidationError({"output_name": f"{run.output_name} exists already."})
    if problem := model_folder_problem(run.base_version):
        raise ValidationError({"base_version": problem})
    data = training.load(run, config)
    if is_main:
        rows, data_format = data.description["rows"], data.description["format"]
        recorder.note(f"{counted(rows, f'{data_format} record')} loaded")
        recorder.write(dataset={**run.dataset, **data.description})
    try:
        result = training.train(
            run=run,
            config=config,
            data=data,
            output_dir=partial_dir,
            checkpoint_dir=_attempt_checkpoint_dir(run, recorder.context),
            resume=resume,
            callback=recorder,
        )
    except BaseException:
        if is_main:
            _remove_unless_taken_over(recorder.context, partial_dir)
        raise
    return result, data, partial_dir, final_dir


def _attempt_checkpoint_dir(run: TrainingRun, context: JobContext | None) -> Path | None:
    """Where this attempt of ``run`` saves its checkpoints: a folder of its own, named by the
    token of its claim, so a worker that stalled and lost the run, saving a checkpoint before
    its report tells it to stop, writes beside the checkpoints of the worker that took the run
    over, never over them. A process of a launch other than the main one (no context) is given
    the main one's folder by the training loop."""
    if not run.checkpoint_dir:
        return None
    if context is None:
        return Path(run.checkpoint_dir)
    return Path(run.checkpoint_dir) / f"{ATTEMPT_PREFIX}{context.token}"


def _taken_over(context: JobContext | None) -> bool:
    """Whether another worker holds the run now (it took it over after this one stalled), as
    its row, locked until the caller's transaction ends, says: what the run's folders hold is
    then that worker's. False for a run cancelled or queued again (nobody runs it)."""
    if context is None:
        return False
    row = (
        TrainingRun.objects.select_for_update()
        .filter(pk=context.job.pk)
        .values("status", "publish_token")
        .first()
    )
    return (
        row is not None
        and row["status"] == TrainingRun.Status.RUNNING
        and row["publish_token"] != context.token
    )


def _remove_unless_taken_over(context: JobContext | None, folder: Path) -> None:
    """Remove ``folder`` (this run's partial or unregistered model), unless another worker took
    the run over: every attempt of a run writes the same folders, which are then that worker's.
    Set aside in one rename while the row is locked (no worker can claim the run meanwhile),
    then removed. Left in place when the database cannot say (a retry's attempt reuses it)."""
    leftover = folder.with_name(f".{folder.name.lstrip('.')}.{uuid.uuid4().hex}.leftover")
    try:
        with transaction.atomic():
            if _taken_over(context):
                logger.info(
                    "Training run %s: left %s to the worker that took it over",
                    context.job.pk,
                    folder,
                )
                return
            folder.rename(leftover)
    except (FileNotFoundError, DatabaseError):
        return
    shutil.rmtree(leftover, ignore_errors=True)


def _made_by(folder: Path, run: TrainingRun) -> bool:
    """Whether ``folder`` holds the model ``run`` trained (its marker names the run)."""
    try:
        return (folder / RUN_MARKER).read_text().strip() == str(run.pk)
    except OSError:
        return False


def _execute(context: JobContext, *, resume: bool = True, echo=None) -> None:
    run = TrainingRun.objects.select_related("base_version").get(pk=context.job.pk)
    training = training_kind(run.kind)
    recorder = _RunRecorder(run, context, echo=echo)
    try:
        result, data, partial_dir, final_dir = _train_run(
            run, training, recorder, resume=resume, is_main=True
        )
    except JobCancelled:
        raise
    except BaseException as error:
        if worker_stopping():
            recorder.note("stopped with its worker: it goes on from its last checkpoint")
        else:
            recorder.note(f"failed: {type(error).__name__}: {error}")
        recorder.write()
        raise
    try:
        # Moved only while this worker holds the run (its row locked meanwhile): the partial
        # folder of a run taken over holds what the new worker writes.
        with transaction.atomic():
            if not context.holds(lock=True):
                _remove_unless_taken_over(context, partial_dir)
                raise JobCancelled(f"Training run {run.pk} is no longer this worker's.")
            (partial_dir / RUN_MARKER).write_text(f"{run.pk}\n")
            partial_dir.replace(final_dir)
    except OSError as error:
        # A folder of that name made while the run trained (a rename replaces only an empty
        # one), or a disk that refused the move: the trained copy, a whole model, is not left
        # behind hidden.
        _remove_unless_taken_over(context, partial_dir)
        message = (
            f"{run.output_name} exists already (made while the run trained)."
            if final_dir.exists()
            else f"The trained model could not be moved to {run.output_name}: "
            f"{error.strerror or error}."
        )
        recorder.note(f"failed: {message}")
        recorder.write()
        raise ValidationError({"output_name": message}) from error
    if result.metrics.get("stopped_early"):
        recorder.note(str(result.metrics["stopped_early"]))
    try:
        with transaction.atomic():
            recorder.note(f"registered {run.output_name} (not promoted)")
            if not context.succeed(progress=1.0, metrics=result.history, log=recorder.log):
                raise JobCancelled(f"Training run {run.pk} was cancelled as it finished.")
            model_version_register(
                name=run.output_name,
                path=str(final_dir),
                kind=training.output_kind,
                source=ModelVersion.Source.TRAINED,
                parent=run.base_version,
                training_run_id=run.pk,
                metrics={**result.metrics, "data": result.data, **training.version_metrics(data)},
                description=training.describe(run, data),
            )
    except BaseException:
        # No version names the folder: left behind, it would refuse the run's retry (and any
        # run of that name) as "exists already". A worker that took the run over meanwhile sets
        # it aside itself, and may have moved its own model there since.
        _remove_unless_taken_over(context, final_dir)
        raise
    if run.checkpoint_dir:
        shutil.rmtree(run.checkpoint_dir, ignore_errors=True)


def training_run_execute(context: JobContext) -> None:
    """The executor's entry point for every training kind (on a ``training`` worker, or in
    this process: ``training_run_run_inline``, ``job_run_inline``). Of the run's options it
    reads its own (``resume``, ``echo``); the others are the executor's (``raise_refused``)."""
    options = context.options
    _execute(context, resume=options.get("resume", True), echo=options.get("echo"))


def training_run_run_inline(
    *,
    run_id: int,
    resume: bool = True,
    echo: Callable[[ProgressEvent], None] | None = None,
) -> TrainingRun:
    """Train ``run_id`` in this process (``manage.py train_*``, also under ``accelerate
    launch``), with the same bookkeeping as on a worker; resumes from the run's checkpoint, or
    with ``resume`` False starts over (the run's checkpoints go once it saved one of its own).

    A failed run may be run again this way (a resume, unless ``resume`` is False); a finished
    or cancelled one
    returns as it is. Errors are recorded on the run and raised again.
    """
    if not is_main_process():
        run = TrainingRun.objects.select_related("base_version").get(pk=run_id)
        training = training_kind(run.kind)
        recorder = _RunRecorder(run, None)
        _train_run(run, training, recorder, resume=resume, is_main=False)
        return TrainingRun.objects.get(pk=run_id)
    job_execute(
        kind_name=JOB_KIND,
        job_id=run_id,
        token=None,
        options={"resume": resume, "echo": echo},
        reraise=True,
    )
    return TrainingRun.objects.get(pk=run_id)
