"""The accounts' periodic task (scheduled in config/celery.py)."""

from celery import shared_task

from accounts import services


@shared_task(ignore_result=True)
def delete_expired_idempotency_keys() -> int:
    return services.idempotency_keys_delete_expired()
