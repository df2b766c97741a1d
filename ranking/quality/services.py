"""Writes of the quality features: the stored trust estimates."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from ranking.projects.models import Project
from ranking.quality.models import TrainerTrust, TrustEstimate
from ranking.quality.selectors import (
    trainer_trust,
    trust_estimate_is_current,
    trust_estimate_latest,
    trust_scope_state,
)

logger = logging.getLogger(__name__)


def trust_refresh(*, project_id: int | None) -> TrustEstimate:
    """Estimate trust over one project's rankings (``None``: every project's together) and
    store it in place of the scope's older estimates."""
    rankings, last_ranking_id = trust_scope_state(project_id=project_id)
    estimates = trainer_trust(project_ids=[project_id] if project_id is not None else [])
    with transaction.atomic():
        TrustEstimate.objects.filter(project_id=project_id).delete()
        estimate = TrustEstimate.objects.create(
            project_id=project_id,
            rankings=rankings,
            last_ranking_id=last_ranking_id,
            estimated_at=timezone.now(),
        )
        TrainerTrust.objects.bulk_create(
            TrainerTrust(
                estimate=estimate,
                trainer_id=trainer_id,
                trust=value.trust,
                judgements=value.judgements,
                gold_judgements=value.gold_judgements,
            )
            for trainer_id, value in estimates.items()
        )
    return estimate


def trust_refresh_if_stale(*, project_ids: tuple[int, ...] | list[int] = ()) -> bool:
    """Bring the stored estimate of one project (none named: of all of them) up to date with
    its rankings; True when it had to be estimated again. Several projects together have no
    stored estimate (an export naming them estimates over them as it reads)."""
    if len(project_ids) > 1:
        return False
    project_id = project_ids[0] if project_ids else None
    estimate = trust_estimate_latest(project_id=project_id)
    if estimate is not None and trust_estimate_is_current(estimate):
        return False
    trust_refresh(project_id=project_id)
    return True


def trust_refresh_all() -> int:
    """The periodic refresh: every project's estimate and the all-projects one, where new
    rankings arrived since; returns how many were estimated again."""
    scopes = [None, *Project.objects.order_by("pk").values_list("pk", flat=True)]
    refreshed = 0
    for scope in scopes:
        try:
            refreshed += trust_refresh_if_stale(project_ids=[] if scope is None else [scope])
        except Exception:
            # One scope's trouble leaves the others' estimates current.
            logger.exception("Estimating trust for project %s failed", scope or "(all)")
    return refreshed
