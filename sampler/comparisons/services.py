"""Head-to-head comparisons of two policy versions (a job), judged by reward models the
policies were not optimised against, and by people (side-by-side votes).

A policy was optimised against the reward model its PPO run used (recorded on the version as
``reward_version``), and so were its descendants: that model (or an ensemble holding it) always
says the policy got better (Goodhart), so it is refused as a judge. By default the judge is the
active reward model when it is independent of both, else the newest reward model that is.
"""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.crypto import salted_hmac

from ranking.exports.filters import ExportFilters
from ranking.projects.selectors import project_ids_open_to_all
from sampler.comparisons.models import ModelComparison, SideBySide, SideBySideVote
from sampler.comparisons.selectors import LineageHeldOut, lineage_held_out
from sampler.generation.params import GenerationParams, context_room_error
from sampler.generation.services import generation_replies
from sampler.jobs.services import JobContext, JobError, job_enqueue
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_versions_named
from sampler.runs.data import held_out_prompts, missing_held_out_prompt
from sampler.runs.versions import validated_version

# Prompts a comparison samples when not told otherwise: enough for a win rate within ~6 points.
COMPARISON_PROMPTS = 64


MAX_COMPARISON_PROMPTS = 2000
MAX_JUDGES = 8
# The Compare form's empty project choice: the default project's comparison, whose prompts come
# from every project open to all trainers (its side-by-sides are shown to each of them).
EVERY_OPEN_PROJECT = "Every project open to all trainers"
# What a voter can answer, by the place of the reply on the page: the page never names versions.
POSITIONS = ("first", "second", "tie")
ORDER_SALT = "tandem.side_by_side_order"


def optimised_against(version: ModelVersion) -> set[str]:
    """Names of the reward models ``version`` or any of its ancestors was optimised against, as
    their metrics spell them: each names the version it is in any letter case
    (``model_versions_named``)."""
    names, current, seen = set(), version, set()
    while current is not None and current.pk not in seen:
        seen.add(current.pk)
        name = (current.metrics or {}).get("reward_version")
        if isinstance(name, str) and name:
            names.add(name)
        current = current.parent
    return names


def _halves_overlap(judge: ModelVersion, proxies: set[str]) -> list[str]:
    """Proxies whose training rankings may overlap the judge's (neither trained on one half
    while the other trained on the other half)."""
    judge_half = (judge.metrics or {}).get("data_half", "all")
    overlapping = []
    for proxy in model_versions_named(names=proxies):
        proxy_half = (proxy.metrics or {}).get("data_half", "all")
        if "all" in (judge_half, proxy_half) or judge_half == proxy_half:
            overlapping.append(proxy.name)
    return sorted(overlapping)


def independent_judges(*, version_a: ModelVersion, version_b: ModelVersion) -> list[ModelVersion]:
    """Reward versions neither policy was optimised against (named in any letter case), the
    active one first."""
    excluded = optimised_against(version_a) | optimised_against(version_b)
    candidates = ModelVersion.objects.filter(kind=ModelVersion.Kind.REWARD).exclude(
        pk__in=model_versions_named(names=excluded).values("pk")
    )
    return sorted(candidates.exclude(path=""), key=lambda v: (not v.is_active, -v.pk))


def no_held_out_prompt(*, filters: ExportFilters, largest: float | None = None) -> str:
    """Why a comparison on ``filters`` has nothing to compare on ("" when it has a held-out
    prompt): the same selection its job samples from. ``largest``: the largest fraction the
    policies' training held out, past which a larger one is no advice (it would be refused)."""
    if largest is not None and filters.test_fraction >= largest:
        advice = (
            f" (the policies' training held out only {largest:g}: a larger fraction would add "
            "prompts it trained on)"
        )
    else:
        advice = (
            ", or choose a larger held-out fraction (a policy trained with a smaller one has "
            "trained on some of the prompts it adds)"
        )
    return missing_held_out_prompt(filters=filters, purpose="compare on", advice=advice)


def held_out_refusals(*, lineage: LineageHeldOut, filters: ExportFilters) -> dict[str, str]:
    """Why ``filters``' test split would hold prompts a compared policy trained on, by field
    (empty: it is held out for every run of the policies' lineages)."""
    errors = {}
    other_seed = [split for split in lineage.splits if split.split_seed != filters.split_seed]
    if other_seed:
        named = "; ".join(
            f"{split.policy} was trained by {split.run} with split seed {split.split_seed}"
            for split in other_seed
        )
        advice = (
            f"use split seed {lineage.split_seed}"
            if lineage.split_seed is not None
            else "no seed holds out the same conversations for all of them: compare policies "
            "trained with the same split seed"
        )
        errors["split_seed"] = (
            f"A comparison with split seed {filters.split_seed} samples prompts these policies "
            f"trained on ({named}): {advice}."
        )
    too_large = [split for split in lineage.splits if split.test_fraction < filters.test_fraction]
    if too_large:
        named = "; ".join(
            f"{split.policy} was trained by {split.run}, which held out {split.test_fraction:g}"
            for split in too_large
        )
        errors["test_fraction"] = (
            f"A held-out fraction of {filters.test_fraction:g} adds prompts these policies "
            f"trained on ({named}): choose at most {lineage.test_fraction:g}."
        )
    return errors


def _held_out_record(*, lineage: LineageHeldOut, filters: ExportFilters, chosen_by: str) -> dict:
    """What the comparison's config keeps of its held-out split and of the check behind it."""
    return {
        "test_fraction": filters.test_fraction,
        "split_seed": filters.split_seed,
        # "lineage": the policies' training's; "given": asked for; "default": no run recorded.
        "chosen_by": chosen_by,
        "checked": bool(lineage.splits),
        "runs": [split.as_dict() for split in lineage.splits],
        "unchecked": list(lineage.unchecked),
    }


def model_comparison_create(
    *,
    version_a: ModelVersion,
    version_b: ModelVersion,
    reward_version: ModelVersion | None = None,
    extra_judges: list[ModelVersion] | tuple[ModelVersion, ...] = (),
    prompts: int = COMPARISON_PROMPTS,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    seed: int = 0,
    filters: ExportFilters | None = None,
    test_fraction: float | None = None,
    split_seed: int | None = None,
    requested_by: AbstractBaseUser | None = None,
    project=None,
    queue: bool = True,
) -> ModelComparison:
    """Record (and queue) a head-to-head of two policy versions on held-out prompts: the test
    split of ``filters`` (default: the export's default split, which PPO runs also use).

    ``project``: the comparison belongs to it and draws its prompts from its data only (none:
    the default project, prompts from the projects open to every trainer but drafts, or those
    of ``filters`` among the open ones, drafts included, when it names some: its side-by-sides
    are shown to every trainer).

    The held-out split: ``test_fraction`` and ``split_seed`` when given, else ``filters``' when
    given, else the largest the policies' training held out (``lineage_held_out``: the smallest
    fraction its runs recorded, with their seed), else the export's default. A split that holds
    prompts a run of either policy's lineage trained on (a larger fraction, another seed) is
    refused, naming the policy and the run; policies with no recorded run are not checked.
    ``comparison.publication`` says whether the job queue took it (it is kept either way)."""
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
    if "max_new_tokens" not in errors:
        # Both versions must leave room for a prompt, as a generation job's version must.
        for version in (version_a, version_b):
            too_long = context_room_error(
                context_length=version.context_length,
                max_new_tokens=max_new_tokens,
                version_name=version.name,
            )
            if too_long:
                errors["max_new_tokens"] = too_long
                break
    if errors:
        raise ValidationError(errors)
    excluded = optimised_against(version_a) | optimised_against(version_b)
    if reward_version is None:
        independent = independent_judges(version_a=version_a, version_b=version_b)
        if not independent and not excluded:
            # Neither policy was optimised against one: there is no reward model at all.
            raise ValidationError(
                {
                    "reward_version": (
                        "No reward model to judge with yet: train one on the rankings (a reward "
                        "model run on the Training page, or manage.py train_reward)."
                    )
                }
            )
        if not independent:
            raise ValidationError(
                {
                    "reward_version": (
                        "No reward model is independent of these policies (each was optimised "
                        f"against {', '.join(sorted(excluded))}): train one on the other half of "
                        "the rankings (train_reward --data-half second, or the second half on "
                        "the Training page) or on new rankings."
                    )
                }
            )
        reward_version = independent[0]
    reward = validated_version(reward_version, ModelVersion.Kind.REWARD, "reward_version")
    # Each judge once (in the order named): the ensemble averages its judges.
    judges = list({judge.pk: judge for judge in [reward, *extra_judges]}.values())
    proxies = set(model_versions_named(names=excluded).values_list("pk", flat=True))
    for judge in judges:
        if judge.kind != ModelVersion.Kind.REWARD or not judge.path:
            raise ValidationError({"extra_judges": f"{judge.name} is not a local reward model."})
        if judge.pk in proxies:
            # Said under the field that named it: the judge, or one of the more judges.
            field = "reward_version" if judge.pk == reward.pk else "extra_judges"
            raise ValidationError(
                {
                    field: (
                        f"{judge.name} cannot judge: a policy compared here was optimised against "
                        "it, so it would favour that policy whatever people think."
                    )
                }
            )
    if len(judges) > MAX_JUDGES:
        raise ValidationError({"extra_judges": f"At most {MAX_JUDGES} judges."})
    overlap = sorted({name for judge in judges for name in _halves_overlap(judge, excluded)})
    lineage = lineage_held_out(versions=(version_a, version_b))
    filters, chosen_by = _held_out_split(
        lineage=lineage, filters=filters, test_fraction=test_fraction, split_seed=split_seed
    )
    if refusals := held_out_refusals(lineage=lineage, filters=filters):
        raise ValidationError(refusals)
    if project is not None:
        filters = replace(filters, project_ids=(project.pk,))
    else:
        # Its side-by-sides are the default project's, which every trainer may vote on: the
        # prompts come only from projects open to every trainer. A draft's data (a project not
        # started yet, perhaps a trial) only when ``filters`` name it.
        given = filters.project_ids
        if given:
            chosen = tuple(pk for pk in project_ids_open_to_all() if pk in given)
        else:
            chosen = project_ids_open_to_all(drafts=False)
        if not chosen:
            meant = "Each project meant is open to some trainer groups only"
            if not given and project_ids_open_to_all():
                meant = "Each project open to all trainers is a draft"
            raise ValidationError(
                {
                    "project": f"{meant}: choose the project the comparison is for (its "
                    "trainers vote on it)."
                }
            )
        filters = replace(filters, project_ids=chosen)
    # Checked again when it runs (data can go in between); refused here, not found out then.
    if missing := no_held_out_prompt(filters=filters, largest=lineage.test_fraction):
        raise ValidationError({"test_fraction": missing})
    with transaction.atomic():
        comparison = ModelComparison.objects.create(
            **({"project": project} if project is not None else {}),
            version_a=version_a,
            version_b=version_b,
            reward_version=reward,
            config={
                "prompts": prompts,
                "max_new_tokens": max_new_tokens,
                "temperature": temperature,
                "seed": seed,
                "filters": {**filters.as_dict(), "split": "test"},
                "judges": [{"id": judge.pk, "name": judge.name} for judge in judges],
                "optimised_against": sorted(excluded),
                # Judges trained on rankings a proxy may also have seen: independent of the
                # proxy's scores, not of its data.
                "judge_data_overlaps": overlap,
                "held_out": _held_out_record(lineage=lineage, filters=filters, chosen_by=chosen_by),
            },
            requested_by=requested_by,
        )
        comparison.publication = job_enqueue(job=comparison) if queue else None
    return comparison


def _held_out_split(
    *,
    lineage: LineageHeldOut,
    filters: ExportFilters | None,
    test_fraction: float | None,
    split_seed: int | None,
) -> tuple[ExportFilters, str]:
    """``filters`` with the comparison's held-out split, and what chose it."""
    given = filters is not None or test_fraction is not None or split_seed is not None
    base = filters or ExportFilters()
    if filters is None:
        base = replace(
            base,
            test_fraction=(
                lineage.test_fraction if lineage.test_fraction is not None else base.test_fraction
            ),
            split_seed=lineage.split_seed if lineage.split_seed is not None else base.split_seed,
        )
    chosen = replace(
        base,
        test_fraction=base.test_fraction if test_fraction is None else test_fraction,
        split_seed=base.split_seed if split_seed is None else split_seed,
    )
    if given:
        return chosen, "given"
    return chosen, "lineage" if lineage.splits else "default"


def model_comparison_execute(context: JobContext) -> None:
    """Sample both versions on held-out prompts, store the judges' verdict, and keep every
    prompt's two replies for people to vote on."""
    # torch loads in workers only: the web process imports this module to record comparisons.
    from sampler.generation.sampling import pick_device
    from sampler.training.compare import Reply, judge_replies

    comparison = ModelComparison.objects.select_related(
        "version_a", "version_b", "reward_version"
    ).get(pk=context.job.pk)
    config = comparison.config
    judges = _judge_paths(comparison)
    filters = ExportFilters.from_dict(config["filters"])
    prompts = held_out_prompts(filters=filters, limit=config["prompts"])
    if not prompts:
        # (Prompts that came back since read as none to this run.)
        runs = (config.get("held_out") or {}).get("runs") or []
        largest = min((run["test_fraction"] for run in runs), default=None)
        missing = no_held_out_prompt(filters=filters, largest=largest)
        raise JobError(missing or "No held-out prompt to compare on.")
    # Both policies sample through their own backends (a version served only by vLLM or an
    # endpoint can be compared), from the full distribution at PPO's temperature, same seeds.
    params = GenerationParams(
        temperature=config["temperature"],
        top_p=1.0,
        top_k=0,
        max_new_tokens=config["max_new_tokens"],
    )
    replies = {}
    for side, version in (("a", comparison.version_a), ("b", comparison.version_b)):
        results = generation_replies(
            version=version,
            prompts=prompts,
            params=params,
            seed=config["seed"],
            attempts=context.job.attempts,
        )
        replies[side] = [
            Reply(text=c.text, token_count=c.token_count, finished=c.finished)
            for result in results
            for c in result.completions
        ]
        context.heartbeat()
    results = judge_replies(
        reward_model=judges,
        prompts=prompts,
        replies_a=replies["a"],
        replies_b=replies["b"],
        device=pick_device(settings.SAMPLER_DEVICE)[0],
    )
    context.check()
    items = results.pop("items")
    with transaction.atomic():
        if context.succeed(results=results):
            SideBySide.objects.filter(comparison=comparison).delete()
            SideBySide.objects.bulk_create(
                SideBySide(
                    comparison=comparison,
                    version_a=comparison.version_a,
                    version_b=comparison.version_b,
                    prompt=item["prompt"],
                    reply_a=item["a"][:20000],
                    reply_b=item["b"][:20000],
                )
                for item in items
            )


def _judge_paths(comparison: ModelComparison) -> list[str]:
    """The directories of the judges the comparison was asked with, in their order; one deleted
    since fails it (a smaller ensemble's verdict would pass for the one asked for)."""
    named = comparison.config.get("judges") or []
    if not named:  # recorded before comparisons named their judges: the reward version alone
        return [comparison.reward_version.path]
    paths = dict(
        ModelVersion.objects.filter(pk__in=[judge["id"] for judge in named]).values_list(
            "pk", "path"
        )
    )
    gone = [judge["name"] for judge in named if judge["id"] not in paths]
    if gone:
        raise JobError(
            f"Judge {', '.join(gone)} was deleted after this comparison was asked for: start a "
            "new comparison with the judges there are."
        )
    return [paths[judge["id"]] for judge in named]


# ---- people's votes ---------------------------------------------------------------------------


def side_by_side_order(*, item: SideBySide, voter: AbstractBaseUser) -> bool:
    """Whether A is shown first (on the left) to ``voter``: a coin keyed by the server's secret,
    so the server knows the order shown without the page carrying it (which would tell a voter
    which reply is A, and let a vote misstate it); the same on every showing of the pair."""
    digest = salted_hmac(ORDER_SALT, f"{item.pk}:{voter.pk}", algorithm="sha256").digest()
    return digest[0] & 1 == 1


def side_by_side_vote(
    *, item: SideBySide, voter: AbstractBaseUser, position: str
) -> SideBySideVote:
    """Store one trainer's verdict by what they saw: the ``first`` or the ``second`` reply
    better, or a ``tie`` (which version that is follows from ``side_by_side_order``); voting
    again changes it."""
    if position not in POSITIONS:
        raise ValidationError({"choice": "Choose one of the two replies, or about the same."})
    a_shown_first = side_by_side_order(item=item, voter=voter)
    if position == "tie":
        choice = SideBySideVote.Choice.TIE
    else:
        choice = "a" if (position == "first") == a_shown_first else "b"
    vote, _ = SideBySideVote.objects.update_or_create(
        item=item,
        voter=voter,
        defaults={"choice": choice, "a_shown_first": a_shown_first},
    )
    return vote
