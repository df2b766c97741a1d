"""The Celery doors of conversations: the content filter on model-written texts that are no
sample's (edited suggestions, imported replies)."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from labeling.conversations import services
from labeling.redteam.services import attack_results_verdicts_record

# The periodic sweep leaves a message this long to the task published when it was saved.
SWEEP_GRACE_SECONDS = 60
# The texts one sweep filters at the most: a backlog (an outage's, or the replies labeling 0020
# marked) is filtered this many a minute, and the default queue's other tasks run in between.
SWEEP_MAX_TEXTS = 2000
# The messages one sweep looks at for those to judge again (by no filter configured now): a
# bounded share of a walk of the table (a median of 13 ms at 200,000 messages, 19 ms at a
# million: bench/bench_rejudge.py), so a quiet minute costs about the same whatever the
# table's size; a million messages are gone through in 100 runs, about 100 minutes at the
# sweep's one run a minute.
SWEEP_SCAN_MESSAGES = 10000


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def moderate_message_texts(message_ids: list[int]) -> int:
    """Filter these messages' texts, those still waiting for a verdict (published on commit by
    the service that saved them)."""
    return services.message_texts_moderate(message_ids=message_ids)


@shared_task(ignore_result=True)
def moderate_pending_message_texts() -> int:
    """The sweep (from beat): filter every message still waiting for a verdict on its text a
    minute after it was saved, whose publication was lost (the broker was down) or whose
    worker stopped, then the samples stored while the filter could not run (their verdicts
    given to the red-team results made of them, which recorded none), then the messages
    whose verdict is by no filter configured now (another filter or version, or none; a
    suggestion used as it is, by its sample's) among the next ``SWEEP_SCAN_MESSAGES`` of the
    walk of the messages table; ``SWEEP_MAX_TEXTS`` of them at the most, the rest at the next
    minutes."""
    return services.message_texts_sweep(
        created_before=timezone.now() - timedelta(seconds=SWEEP_GRACE_SECONDS),
        most=SWEEP_MAX_TEXTS,
        scan=SWEEP_SCAN_MESSAGES,
        samples_judged=attack_results_verdicts_record,
    )
