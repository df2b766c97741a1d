"""PPO runs and policy comparisons: the last two steps of an iteration, before promotion.

A PPO run is a TrainingRun of kind ``ppo``: the policy it starts from (``base_version``, by
default the active one), the reward model it optimises (``dataset["reward_version"]``, by
default the active one) and its prompts: conversation prefixes ending in a user turn, from the
database (every user turn of the finished conversations and the prompts of the rankings, with
the export's filters and its split by conversation) or from a JSONL file. It records progress
like the other runs and registers the new policy as a ModelVersion (parent: the start policy),
never promoted. A comparison samples both policies on held-out prompts and lets the reward
model judge them.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ranking.exports import ExportFilters, records
from sampler.models import ModelComparison, ModelVersion, TrainingRun
from sampler.selectors import model_version_active
from sampler.services import model_version_register
from sampler.training.config import ConfigError
from sampler.training.data import file_sha256, read_jsonl, records_sha256
from sampler.training.loop import ProgressEvent
from sampler.training.ppo_config import PPOConfig
from sampler.training.rollout import prompt_key, prompt_prefixes
from sampler.training_services import (
    RunCancelled,
    _describe,
    _is_main_process,
    _run_claim,
    _RunRecorder,
    _validated_data_path,
    training_run_fail,
)

logger = logging.getLogger(__name__)

PROMPTS_FORMAT = "prompts"
# Prompts a comparison samples when not told otherwise: enough for a win rate within ~6 points.
COMPARISON_PROMPTS = 64
MAX_COMPARISON_PROMPTS = 2000


# ---- prompts ----------------------------------------------------------------------------------


def ppo_prompt_records(*, filters: ExportFilters) -> Iterator[dict]:
    """Records holding prompts, from the database: demonstrations (each user turn of a finished
    conversation ends a prefix) and rankings (their prompt), with the export's ``split``."""
    return chain(records("demonstrations", filters), records("rankings", filters))


def held_out_prompts(*, filters: ExportFilters | None = None, limit: int) -> list[list[dict]]:
    """Distinct prefixes ending in a user turn from held-out conversations, oldest first."""
    base = filters or ExportFilters()
    values = {**base.as_dict(), "split": "test"}
    prompts, seen = [], set()
    for record in ppo_prompt_records(filters=ExportFilters.from_dict(values)):
        for messages in prompt_prefixes(record):
            key = prompt_key(messages)
            if key not in seen:
                seen.add(key)
                prompts.append(messages)
                if len(prompts) >= limit:
                    return prompts
    return prompts


# ---- PPO runs ---------------------------------------------------------------------------------


def _validated_version(version: ModelVersion | None, kind: str, field: str) -> ModelVersion:
    version = version or model_version_active(kind=kind)
    if version is None:
        what = "policy" if kind == ModelVersion.Kind.POLICY else "reward model"
        raise ValidationError({field: f"No active {what}: promote one or name the version."})
    if version.kind != kind:
        raise ValidationError({field: f"{version.name} is not a {kind} version."})
    return version


def ppo_run_create(
    *,
    config: dict | None = None,
    base_version: ModelVersion | None = None,
    reward_version: ModelVersion | None = None,
    filters: ExportFilters | None = None,
    data_path: str | None = None,
    output_name: str = "",
    started_by: AbstractBaseUser | None = None,
    allowed_data_roots: list[Path] | None = None,
    queue: bool = True,
) -> TrainingRun:
    """Validate and record a PPO run; ``queue`` sends it to a GPU worker once committed.

    Prompts come from the database (``filters``) or a JSONL file (``data_path``: exported
    demonstrations, rankings or pairs, or records with ``messages`` ending in a user turn).
    """
    try:
        ppo_config = PPOConfig.from_dict(config or {})
    except ConfigError as error:
        raise ValidationError(error.errors) from error
    base = _validated_version(base_version, ModelVersion.Kind.POLICY, "base_version")
    reward = _validated_version(reward_version, ModelVersion.Kind.REWARD, "reward_version")
    if (filters is None) == (data_path is None):
        raise ValidationError({"data": "Give either database filters or a data file."})
    if data_path is not None:
        path = _validated_data_path(data_path, allowed_data_roots)
        dataset = {"source": "file", "format": PROMPTS_FORMAT, "path": path}
    else:
        dataset = {"source": "database", "format": PROMPTS_FORMAT, "filters": filters.as_dict()}
    dataset["reward_version"] = {"id": reward.pk, "name": reward.name}
    output_name = output_name.strip()
    if output_name and (Path(output_name).name != output_name or output_name.startswith(".")):
        raise ValidationError({"output_name": "The name becomes a folder: no slashes, no dot."})
    if output_name and ModelVersion.objects.filter(name=output_name).exists():
        raise ValidationError({"output_name": f"A model version named {output_name} exists."})
    with transaction.atomic():
        run = TrainingRun.objects.create(
            kind=TrainingRun.Kind.PPO,
            base_version=base,
            config=ppo_config.as_dict(),
            dataset=dataset,
            output_name=output_name,
            started_by=started_by,
        )
        run.output_name = output_name or f"{base.name}-ppo-run{run.pk}"
        run.checkpoint_dir = str(Path(settings.MODEL_ROOT) / "runs" / f"run-{run.pk}")
        run.save(update_fields=["output_name", "checkpoint_dir"])
        if queue:
            from sampler.tasks import run_training

            transaction.on_commit(lambda: run_training.delay(run.pk))
    return run


def is_ppo_run(*, run_id: int) -> bool:
    return TrainingRun.objects.filter(pk=run_id, kind=TrainingRun.Kind.PPO).exists()


def _prompt_rows(run: TrainingRun) -> tuple[list[dict], dict]:
    dataset = run.dataset
    if dataset["source"] == "file":
        rows = list(read_jsonl(dataset["path"]))
        return rows, {"rows": len(rows), "sha256": file_sha256(dataset["path"])}
    rows = list(ppo_prompt_records(filters=ExportFilters.from_dict(dataset["filters"])))
    return rows, {"rows": len(rows), "sha256": records_sha256(rows)}


def ppo_run_execute(
    *,
    run_id: int,
    worker: str = "",
    resume: bool = True,
    echo: Callable[[ProgressEvent], None] | None = None,
) -> TrainingRun:
    """Train the PPO run, register its policy (not promoted) and mark it succeeded; idempotent.

    Same contract as ``training_run_execute``: resumes from the run's checkpoint, and any
    error marks the run failed (the registry and the active versions stay as they were).
    """
    from sampler.training.ppo import train_ppo

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
        config = PPOConfig.from_dict(run.config)
        if ModelVersion.objects.filter(name=run.output_name).exists() or final_dir.exists():
            raise ValidationError({"output_name": f"{run.output_name} exists already."})
        reward = ModelVersion.objects.get(pk=run.dataset["reward_version"]["id"])
        rows, description = _prompt_rows(run)
        recorded = run.dataset.get("sha256")
        if recorded and recorded != description["sha256"]:
            raise ValidationError(
                {"data": "The prompts changed since this run started; start a new run."}
            )
        if is_main:
            TrainingRun.objects.filter(pk=run_id).update(dataset={**run.dataset, **description})
            recorder.note(
                f"{description['rows']} prompt records loaded; reward model {reward.name}"
            )
            recorder.write()
        result = train_ppo(
            config=config,
            prompts=rows,
            base_model=run.base_version.path,
            reward_model=reward.path,
            output_dir=partial_dir,
            checkpoint_dir=run.checkpoint_dir or None,
            resume=resume,
            callback=recorder,
        )
        if not is_main:
            return TrainingRun.objects.get(pk=run_id)
        partial_dir.replace(final_dir)
        if result.metrics.get("stopped_early"):
            recorder.note(result.metrics["stopped_early"])
        with transaction.atomic():
            model_version_register(
                name=run.output_name,
                path=str(final_dir),
                kind=ModelVersion.Kind.POLICY,
                source=ModelVersion.Source.TRAINED,
                parent=run.base_version,
                training_run_id=run.pk,
                metrics={**result.metrics, "data": result.data, "reward_version": reward.name},
                description=(
                    f"PPO run {run.pk} from {run.base_version.name} against {reward.name}."
                ),
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


# ---- comparisons ------------------------------------------------------------------------------


def model_comparison_create(
    *,
    version_a: ModelVersion,
    version_b: ModelVersion,
    reward_version: ModelVersion | None = None,
    prompts: int = COMPARISON_PROMPTS,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    seed: int = 0,
    filters: ExportFilters | None = None,
    requested_by: AbstractBaseUser | None = None,
    queue: bool = True,
) -> ModelComparison:
    """Record (and queue) a head-to-head of two policy versions on held-out prompts: the test
    split of ``filters`` (default: the export's default split, which PPO runs also use)."""
    errors = {}
    for field, version in (("version_a", version_a), ("version_b", version_b)):
        if version.kind != ModelVersion.Kind.POLICY:
            errors[field] = f"{version.name} is not a policy."
    if version_a.pk == version_b.pk:
        errors["version_b"] = "Pick two different versions."
    if not 1 <= prompts <= MAX_COMPARISON_PROMPTS:
        errors["prompts"] = f"prompts must be between 1 and {MAX_COMPARISON_PROMPTS}."
    if not 1 <= max_new_tokens <= settings.GENERATION_MAX_NEW_TOKENS:
        errors["max_new_tokens"] = (
            f"max_new_tokens must be between 1 and {settings.GENERATION_MAX_NEW_TOKENS}."
        )
    if not 0.05 <= temperature <= 2.0:
        errors["temperature"] = "temperature must be between 0.05 and 2.0."
    if errors:
        raise ValidationError(errors)
    reward = _validated_version(reward_version, ModelVersion.Kind.REWARD, "reward_version")
    with transaction.atomic():
        comparison = ModelComparison.objects.create(
            version_a=version_a,
            version_b=version_b,
            reward_version=reward,
            config={
                "prompts": prompts,
                "max_new_tokens": max_new_tokens,
                "temperature": temperature,
                "seed": seed,
                "filters": {**(filters or ExportFilters()).as_dict(), "split": "test"},
            },
            requested_by=requested_by,
        )
        if queue:
            from config.celery import Queue
            from sampler.tasks import run_model_comparison

            transaction.on_commit(
                lambda: run_model_comparison.apply_async(
                    (comparison.pk,), queue=Queue.GENERATION.value
                )
            )
    return comparison


def model_comparison_run(*, comparison_id: int) -> ModelComparison:
    """Sample both versions on held-out prompts and store the reward model's verdict."""
    from sampler.generation import pick_device
    from sampler.training.compare import ComparisonSettings, compare_policies

    with transaction.atomic():
        comparison = (
            ModelComparison.objects.select_for_update()
            .select_related("version_a", "version_b", "reward_version")
            .get(pk=comparison_id)
        )
        if comparison.is_finished:
            return comparison
        comparison.status = ModelComparison.Status.RUNNING
        comparison.save(update_fields=["status"])
    config = comparison.config
    prompts = held_out_prompts(
        filters=ExportFilters.from_dict(config["filters"]), limit=config["prompts"]
    )
    if not prompts:
        model_comparison_fail(
            comparison_id=comparison_id,
            error="No held-out conversation has a user turn yet: nothing to compare on.",
        )
        return ModelComparison.objects.get(pk=comparison_id)
    results = compare_policies(
        policy_a=comparison.version_a.path,
        policy_b=comparison.version_b.path,
        reward_model=comparison.reward_version.path,
        prompts=prompts,
        settings=ComparisonSettings(
            max_new_tokens=config["max_new_tokens"],
            temperature=config["temperature"],
            seed=config["seed"],
        ),
        device=pick_device(settings.SAMPLER_DEVICE)[0],
    )
    ModelComparison.objects.filter(pk=comparison_id).update(
        status=ModelComparison.Status.SUCCEEDED,
        results=results,
        error="",
        finished_at=timezone.now(),
    )
    return ModelComparison.objects.get(pk=comparison_id)


def model_comparison_fail(*, comparison_id: int, error: str) -> None:
    ModelComparison.objects.filter(pk=comparison_id).exclude(
        status=ModelComparison.Status.SUCCEEDED
    ).update(status=ModelComparison.Status.FAILED, error=error[:5000], finished_at=timezone.now())
