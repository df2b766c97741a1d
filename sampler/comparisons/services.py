"""Head-to-head comparisons of two policy versions, judged by a reward model (a job)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from ranking.exports.filters import ExportFilters
from sampler.comparisons.models import ModelComparison
from sampler.jobs.services import JobContext, JobError, job_enqueue
from sampler.registry.models import ModelVersion
from sampler.runs.kinds import held_out_prompts, validated_version

# Prompts a comparison samples when not told otherwise: enough for a win rate within ~6 points.
COMPARISON_PROMPTS = 64


MAX_COMPARISON_PROMPTS = 2000


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
    reward = validated_version(reward_version, ModelVersion.Kind.REWARD, "reward_version")
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
            job_enqueue(job=comparison)
    return comparison


def model_comparison_execute(context: JobContext) -> None:
    """Sample both versions on held-out prompts and store the reward model's verdict."""
    # torch loads in workers only: the web process imports this module to record comparisons.
    from sampler.generation.sampling import pick_device
    from sampler.training.compare import ComparisonSettings, compare_policies

    comparison = ModelComparison.objects.select_related(
        "version_a", "version_b", "reward_version"
    ).get(pk=context.job.pk)
    config = comparison.config
    prompts = held_out_prompts(
        filters=ExportFilters.from_dict(config["filters"]), limit=config["prompts"]
    )
    if not prompts:
        raise JobError("No held-out conversation has a user turn yet: nothing to compare on.")
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
    context.check()
    context.succeed(results=results)
