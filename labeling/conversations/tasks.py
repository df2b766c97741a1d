"""The Celery doors of conversations: the content filter on model-written texts that are no
sample's (edited suggestions, imported replies)."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from labeling.conversations import services

# The periodic sweep leaves a message this long to the task published when it was saved.
SWEEP_GRACE_SECONDS = 60


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def moderate_message_texts(message_ids: list[int]) -> int:
    """Filter these messages' texts, those still waiting for a verdict (published on commit by
    the service that saved them)."""
    return services.message_texts_moderate(message_ids=message_ids)


@shared_task(ignore_result=True)
def moderate_pending_message_texts() -> int:
    """The sweep (from beat): filter every message still waiting for a verdict on its text a
    minute after it was saved, whose publication was lost (the broker was down) or whose
    worker stopped."""
    return services.message_texts_moderate(
        created_before=timezone.now() - timedelta(seconds=SWEEP_GRACE_SECONDS)
    )
