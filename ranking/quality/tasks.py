"""The quality features' periodic task (scheduled in config/celery.py)."""

from celery import shared_task

from ranking.quality import services


@shared_task(ignore_result=True)
def refresh_trust() -> int:
    return services.trust_refresh_all()
