"""Training runs: record and queue them, feed them data, store their progress and output.

The training itself lives in ``sampler.training`` (no Django). Here: a run is validated and
recorded (``training_run_create``), then executed (``training_run_execute``) by the command
line or a Celery worker: the data comes from the database (export filters) or a JSONL file, the
loop reports progress into the TrainingRun row, and a successful run registers its model as a
new ModelVersion, never promoted. A failed or interrupted run changes no active model.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ranking.exports import ExportFilters, records
from sampler.models import ModelVersion, TrainingRun
from sampler.selectors import model_version_active
from sampler.services import model_version_register
from sampler.training.config import CONFIGS, ConfigError, TrainingConfig
from sampler.training.data import file_sha256, read_jsonl, records_sha256
from sampler.training.loop import ProgressEvent

logger = logging.getLogger(__name__)

# What each kind of run reads, as an export format.
DATA_FORMATS = {TrainingRun.Kind.SFT: "demonstrations", TrainingRun.Kind.REWARD: "rankings"}
# Progress reaches the database at most this often (plus at every eval and at the end).
PROGRESS_WRITE_SECONDS = 2.0
# A running run whose heartbeat is older than this lost its worker and may be taken over.
HEARTBEAT_STALE_SECONDS = 180
LOG_LIMIT = 50_000


class RunBusy(Exception):
    """Another worker is training this run right now (its heartbeat is fresh)."""


class RunCancelled(Exception):
    """An admin cancelled the run while it trained."""


# ---- create -----------------------------------------------------------------------------------


def _validated_config(kind: str, values: dict | None) -> TrainingConfig:
    try:
        return CONFIGS[kind].from_dict(values or {})
    except ConfigError as error:
        raise ValidationError(error.errors) from error


def _validated_data_path(path: str, allowed_roots: list[Path] | None) -> str:
    resolved = Path(path).expanduser().resolve()
    if allowed_roots is not None and not any(
        resolved.is_relative_to(Path(root).resolve()) for root in allowed_roots
    ):
        raise ValidationError({"data_path": "That file is not in a folder training may read."})
    if not resolved.is_file():
        raise ValidationError({"data_path": f"No file at {path}."})
    return str(resolved)


def _validated_base(kind: str, base_version: ModelVersion | None) -> ModelVersion:
    base = base_version or model_version_active()
    if base is None:
        raise ValidationError({"base_version": "No active policy: name the version to start from."})
    if kind == TrainingRun.Kind.SFT and base.kind != ModelVersion.Kind.POLICY:
        raise ValidationError({"base_version": "SFT starts from a policy version."})
    return base


def training_run_create(
    *,
    kind: str,
    config: dict | None = None,
    base_version: ModelVersion | None = None,
    filters: ExportFilters | None = None,
    data_path: str | None = None,
    demonstrations_path: str | None = None,
    output_name: str = "",
    started_by: AbstractBaseUser | None = None,
    allowed_data_roots: list[Path] | None = None,
    queue: bool = True,
) -> TrainingRun:
    """Validate and record a run; ``queue`` sends it to a GPU worker once committed.

    Data: ``filters`` (read from the database when the run starts) or ``data_path`` (a JSONL
    export, possibly gzipped). Reward runs normalise on demonstrations: from the database with
    the same dates and trainers, or from ``demonstrations_path``. ``allowed_data_roots`` limits
    the files a web request may name. Bad input raises ``ValidationError`` before anything runs.
    """
    if kind not in DATA_FORMATS:
        raise ValidationError({"kind": "kind must be 'sft' or 'reward'."})
    training_config = _validated_config(kind, config)
    base = _validated_base(kind, base_version)
    if (filters is None) == (data_path is None):
        raise ValidationError({"data": "Give either database filters or a data file."})
    data_format = DATA_FORMATS[kind]
    if data_path is not None:
        dataset = {
            "source": "file",
            "format": data_format,
            "path": _validated_data_path(data_path, allowed_data_roots),
        }
    else:
        dataset = {"source": "database", "format": data_format, "filters": filters.as_dict()}
    if demonstrations_path:
        if kind != TrainingRun.Kind.REWARD:
            raise ValidationError({"demonstrations_path": "Only reward runs use demonstrations."})
        dataset["demonstrations"] = {
            "source": "file",
            "path": _validated_data_path(demonstrations_path, allowed_data_roots),
        }
    output_name = output_name.strip()
    if output_name and ModelVersion.objects.filter(name=output_name).exists():
        raise ValidationError({"output_name": f"A model version named {output_name} exists."})
    if output_name and (Path(output_name).name != output_name or output_name.startswith(".")):
        raise ValidationError({"output_name": "The name becomes a folder: no slashes, no dot."})
    with transaction.atomic():
        run = TrainingRun.objects.create(
            kind=kind,
            base_version=base,
            config=training_config.as_dict(),
            dataset=dataset,
            output_name=output_name,
            started_by=started_by,
        )
        run.output_name = output_name or f"{base.name}-{kind}-run{run.pk}"
        run.checkpoint_dir = str(Path(settings.MODEL_ROOT) / "runs" / f"run-{run.pk}")
        run.save(update_fields=["output_name", "checkpoint_dir"])
        if queue:
            from sampler.tasks import run_training

            transaction.on_commit(lambda: run_training.delay(run.pk))
    return run


def training_data_roots() -> list[Path]:
    """Folders a run launched from the web may read: exports and uploads."""
    return [Path(settings.EXPORT_ROOT), Path(settings.MEDIA_ROOT) / "training-data"]


def training_data_store(*, uploaded) -> str:
    """Keep an uploaded JSONL file for a run; returns its path (under a fresh folder, with the
    file's own name reduced to safe characters)."""
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(uploaded.name).name)[-100:] or "data.jsonl"
    folder = training_data_roots()[1] / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe_name.lstrip(".")
    with path.open("wb") as stream:
        for chunk in uploaded.chunks():
            stream.write(chunk)
    return str(path)


@transaction.atomic
def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Stop a queued or running run; the worker sees it at its next progress write."""
    TrainingRun.objects.filter(
        pk=run.pk, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
    ).update(status=TrainingRun.Status.CANCELLED, finished_at=timezone.now())
    run.refresh_from_db()
    return run


# ---- execute ----------------------------------------------------------------------------------


def _is_main_process() -> bool:
    """Under ``accelerate launch`` every process runs this service; one writes the database."""
    from accelerate import PartialState

    return PartialState().is_main_process


def _run_claim(*, run_id: int, worker: str) -> TrainingRun | None:
    """Mark the run running; None when there is nothing to do (finished or cancelled).

    A failed run may be claimed again: that is a resume. A running one only when its heartbeat
    went stale (its worker died); otherwise ``RunBusy``.
    """
    with transaction.atomic():
        # Lock the run row only: PostgreSQL refuses FOR UPDATE on the nullable side of the join.
        runs = TrainingRun.objects.select_for_update(of=("self",)).select_related("base_version")
        run = runs.get(pk=run_id)
        if run.status in {TrainingRun.Status.SUCCEEDED, TrainingRun.Status.CANCELLED}:
            return None
        stale_before = timezone.now() - timedelta(seconds=HEARTBEAT_STALE_SECONDS)
        if (
            run.status == TrainingRun.Status.RUNNING
            and run.heartbeat_at is not None
            and run.heartbeat_at > stale_before
        ):
            raise RunBusy(f"Run {run_id} is being trained by {run.worker or 'another worker'}.")
        run.status = TrainingRun.Status.RUNNING
        run.started_at = run.started_at or timezone.now()
        run.heartbeat_at = timezone.now()
        run.worker = worker[:200]
        run.error = ""
        run.save(update_fields=["status", "started_at", "heartbeat_at", "worker", "error"])
    return run


@dataclass
class _Data:
    rows: list[dict]
    description: dict


def _read_source(source: dict, data_format: str, *, limit: int | None = None) -> _Data:
    if source["source"] == "file":
        rows = list(islice(read_jsonl(source["path"]), limit))
        return _Data(rows, {**source, "rows": len(rows), "sha256": file_sha256(source["path"])})
    filters = ExportFilters.from_dict(source["filters"])
    rows = list(islice(records(data_format, filters), limit))
    return _Data(rows, {**source, "rows": len(rows), "sha256": records_sha256(rows)})


def _demonstrations_source(run: TrainingRun) -> dict | None:
    """Reward runs: demonstrations named for normalisation, else the database's with the run's
    dates and trainers (a file-trained run without them skips normalisation)."""
    if "demonstrations" in run.dataset:
        return run.dataset["demonstrations"]
    if run.dataset["source"] != "database":
        return None
    filters = dict(run.dataset["filters"])
    kept = {"date_from", "date_to", "exclude_trainer_ids", "pseudonymize"}
    return {
        "source": "database",
        "filters": {key: value for key, value in filters.items() if key in kept},
    }


def _load_data(run: TrainingRun, config: TrainingConfig) -> tuple[_Data, _Data | None]:
    main = _read_source(run.dataset, run.dataset["format"])
    recorded = run.dataset.get("sha256")
    if recorded and recorded != main.description["sha256"]:
        raise ValidationError(
            {"data": "The data changed since this run started; start a new run to use it."}
        )
    demonstrations = None
    source = _demonstrations_source(run) if run.kind == TrainingRun.Kind.REWARD else None
    if source is not None and config.normalize_to_demonstrations:
        demonstrations = _read_source(source, "demonstrations", limit=config.normalization_samples)
    return main, demonstrations


class _RunRecorder:
    """The loop's progress callback: curves, progress and log into the run row, throttled.

    Each write is also the run's heartbeat and the moment a cancellation is noticed.
    """

    def __init__(self, run: TrainingRun, echo: Callable[[ProgressEvent], None] | None = None):
        self.run_id = run.pk
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
        if not event.is_main_process:
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

    def write(self) -> None:
        self.last_write = time.monotonic()
        updated = TrainingRun.objects.filter(
            pk=self.run_id, status=TrainingRun.Status.RUNNING
        ).update(
            progress=self.progress,
            metrics=self.history,
            log=self.log,
            heartbeat_at=timezone.now(),
        )
        if not updated:
            raise RunCancelled(f"Run {self.run_id} was cancelled.")


def _train(run: TrainingRun, config: TrainingConfig, data: _Data, demonstrations, **arguments):
    from sampler.training.reward import train_reward
    from sampler.training.sft import train_sft

    if run.kind == TrainingRun.Kind.REWARD:
        return train_reward(
            config=config,
            records=data.rows,
            demonstrations=demonstrations.rows if demonstrations else None,
            **arguments,
        )
    return train_sft(config=config, records=data.rows, **arguments)


def training_run_execute(
    *,
    run_id: int,
    worker: str = "",
    resume: bool = True,
    echo: Callable[[ProgressEvent], None] | None = None,
) -> TrainingRun:
    """Train the run, register its model (not promoted) and mark it succeeded; idempotent.

    Resumes from the run's last checkpoint when there is one (``resume``). Any error, an
    interrupt included, marks the run failed (cancelled stays cancelled) and is raised again.
    """
    is_main = _is_main_process()
    run = (
        _run_claim(run_id=run_id, worker=worker) if is_main else TrainingRun.objects.get(pk=run_id)
    )
    if run is None:
        return TrainingRun.objects.get(pk=run_id)
    recorder = _RunRecorder(run, echo=echo)
    final_dir = Path(settings.MODEL_ROOT) / run.output_name
    partial_dir = final_dir.with_name(f".{final_dir.name}.partial")
    try:
        config = CONFIGS[run.kind].from_dict(run.config)
        if ModelVersion.objects.filter(name=run.output_name).exists() or final_dir.exists():
            raise ValidationError({"output_name": f"{run.output_name} exists already."})
        data, demonstrations = _load_data(run, config)
        if is_main:
            dataset = {**run.dataset, **data.description}
            if demonstrations is not None:
                dataset["demonstrations"] = demonstrations.description
            TrainingRun.objects.filter(pk=run_id).update(dataset=dataset)
            recorder.note(f"{data.description['rows']} {run.dataset['format']} records loaded")
            recorder.write()
        result = _train(
            run,
            config,
            data,
            demonstrations,
            base_model=run.base_version.path,
            output_dir=partial_dir,
            checkpoint_dir=run.checkpoint_dir or None,
            resume=resume,
            callback=recorder,
        )
        if not is_main:
            return TrainingRun.objects.get(pk=run_id)
        partial_dir.replace(final_dir)
        with transaction.atomic():
            model_version_register(
                name=run.output_name,
                path=str(final_dir),
                kind=ModelVersion.Kind.REWARD
                if run.kind == TrainingRun.Kind.REWARD
                else ModelVersion.Kind.POLICY,
                source=ModelVersion.Source.TRAINED,
                parent=run.base_version,
                training_run_id=run.pk,
                metrics={**result.metrics, "data": result.data},
                description=f"{run.get_kind_display()} run {run.pk} from {run.base_version.name}.",
            )
            recorder.note(f"registered {run.output_name} (not promoted)")
            TrainingRun.objects.filter(pk=run_id).update(
                status=TrainingRun.Status.SUCCEEDED,
                progress=1.0,
                metrics=result.history,
                log=recorder.log,
                heartbeat_at=timezone.now(),
                finished_at=timezone.now(),
            )
        if run.checkpoint_dir:
            shutil.rmtree(run.checkpoint_dir, ignore_errors=True)
    except RunCancelled:
        shutil.rmtree(partial_dir, ignore_errors=True)
        raise
    except BaseException as error:
        if is_main:
            shutil.rmtree(partial_dir, ignore_errors=True)
            recorder.note(f"failed: {type(error).__name__}: {error}")
            training_run_fail(run_id=run_id, error=_describe(error), log=recorder.log)
        raise
    return TrainingRun.objects.get(pk=run_id)


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "Interrupted; resume it from its last checkpoint."
    if isinstance(error, ValidationError):
        return " ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())
    return f"{type(error).__name__}: {error}\n" + "".join(traceback.format_exception(error)[-3:])


def training_run_fail(*, run_id: int, error: str, log: str | None = None) -> None:
    """Mark the run failed (not when it succeeded or was cancelled); the registry is untouched."""
    values = {
        "status": TrainingRun.Status.FAILED,
        "error": error[:5000],
        "finished_at": timezone.now(),
    }
    if log is not None:
        values["log"] = log
    TrainingRun.objects.filter(pk=run_id).exclude(
        status__in=[TrainingRun.Status.SUCCEEDED, TrainingRun.Status.CANCELLED]
    ).update(**values)
