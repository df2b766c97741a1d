from __future__ import annotations

from django.db.models import QuerySet

from sampler.comparisons.models import ModelComparison


def model_comparison_list(*, limit: int = 20) -> QuerySet[ModelComparison]:
    return ModelComparison.objects.select_related(
        "version_a", "version_b", "reward_version"
    ).order_by("-created_at")[:limit]
