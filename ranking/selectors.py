from django.db.models import Count, Q, QuerySet

from ranking.models import DatasetExport, RankingTask


def ranking_queue_summary() -> dict[str, int]:
    counts = RankingTask.objects.aggregate(
        ready=Count("id", filter=Q(status=RankingTask.Status.READY)),
        preparing=Count("id", filter=Q(status=RankingTask.Status.PREPARING)),
        complete=Count("id", filter=Q(status=RankingTask.Status.COMPLETE)),
    )
    return {key: value or 0 for key, value in counts.items()}


def dataset_export_list() -> QuerySet[DatasetExport]:
    return DatasetExport.objects.select_related("created_by").order_by("-created_at")
