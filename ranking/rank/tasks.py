"""The ranking app's periodic tasks (scheduled in config/celery.py)."""

from celery import shared_task

from ranking.rank import services


@shared_task(ignore_result=True)
def fill_ranking_pool() -> int:
    return services.ranking_pool_fill()


@shared_task(ignore_result=True)
def expire_ranking_leases() -> int:
    return services.leases_expire()


@shared_task(ignore_result=True)
def delete_expired_undo_removals() -> int:
    return services.undo_removals_delete_expired()
