"""Uncertainty selection: of the tasks a project prepared ahead, offer those its reward models
disagree on most, plus a random exploration share."""

from __future__ import annotations

import random

from django.db.models import F

from labeling.conversations.selectors import message_path
from ranking.projects.models import Project
from ranking.projects.selectors import project_pool_size
from ranking.rank.models import RankingTask
from ranking.rank.selectors import source_finished
from sampler.registry.selectors import reward_versions
from sampler.registry.services import reward_version_score
from sampler.training.uncertainty import pairwise_spread, select_uncertain

# The ensemble: the newest reward versions (two at least, or selection falls back to random).
ENSEMBLE_SIZE = 3


def _task_uncertainty(task: RankingTask, ensemble: list) -> float:
    prefix = [
        {"role": m.role, "content": m.content} for m in message_path(message=task.prefix_message)
    ]
    conversations = [
        [*prefix, {"role": "assistant", "content": candidate.message.content}]
        for candidate in task.candidates.select_related("message").order_by("position")
    ]
    scores = [
        reward_version_score(version=version, conversations=conversations) for version in ensemble
    ]
    return pairwise_spread([[value or 0.0 for value in row] for row in scores])


def ranking_tasks_select(
    *, project: Project, rng: random.Random | None = None, wanted: int | None = None
) -> int:
    """Release held-back tasks until the project offers ``wanted`` open tasks (None: its pool
    size; the pool fill passes what its trainers want now, ``ranking_pool_wanted``); returns
    how many were released. Each held task is scored once (its uncertainty is stored). Tasks
    of a conversation reopened or discarded (``source_finished``) are not offered: they are
    neither counted as offered nor released."""
    rng = rng or random.Random()
    offered = RankingTask.objects.filter(
        source_finished(),
        project=project,
        held_back=False,
        gold_ordering__isnull=True,
        status=RankingTask.Status.READY,
        overlap_required__gt=F("rankings_count"),
    ).count()
    needed = (project_pool_size(project) if wanted is None else wanted) - offered
    held = list(
        RankingTask.objects.filter(
            source_finished(), project=project, held_back=True, status=RankingTask.Status.READY
        ).order_by("pk")
    )
    if needed <= 0 or not held:
        return 0
    ensemble = list(reward_versions()[:ENSEMBLE_SIZE])
    share = project.exploration_share
    if len(ensemble) < 2:
        uncertainties, share = [0.0] * len(held), 1.0  # nothing to disagree: random
    else:
        for task in held:
            if task.uncertainty is None:
                task.uncertainty = _task_uncertainty(task, ensemble)
                RankingTask.objects.filter(pk=task.pk).update(uncertainty=task.uncertainty)
        uncertainties = [task.uncertainty for task in held]
    chosen = [
        held[index].pk
        for index in select_uncertain(uncertainties, needed, exploration_share=share, rng=rng)
    ]
    return RankingTask.objects.filter(pk__in=chosen, held_back=True).update(held_back=False)
