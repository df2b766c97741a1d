from django.db.models import QuerySet

from sampler.runs.models import TrainingRun


def training_run_list() -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("base_version", "started_by").order_by("-created_at")
