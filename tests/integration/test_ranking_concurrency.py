"""Twenty trainers claim and rank at once on PostgreSQL: no task over-ranked, none lost."""

import contextlib
import random
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from unittest import mock

import pytest
from django.db import connection
from django.db.models import Count, F

from accounts.services import user_create_trainer
from ranking.models import Assignment, Ranking, RankingTask
from ranking.rank import services
from ranking.rank.services import RankingInput
from tests.conftest import PASSWORD, WAIT_SECONDS
from tests.ranking.conftest import finished_conversation

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TASKS = 10
OVERLAP = 3
TRAINERS = 20


@dataclass
class TrainerLog:
    rankings: list[int] = field(default_factory=list)  # ids returned by a successful submit
    tasks: list[int] = field(default_factory=list)
    # Claims that answered "nothing for you" while a task still had room for this trainer:
    # SKIP LOCKED passed over rows other claimers held at that instant.
    empty_claims_with_work_left: int = 0
    errors: list[str] = field(default_factory=list)


def _prepared_tasks(writer) -> list[RankingTask]:
    for index in range(TASKS):
        finished_conversation(writer, turns=(f"question {index}?", f"answer {index}."))
    rng = random.Random(0)
    tasks = []
    for _ in range(100):  # the source pick is random: a few attempts may miss
        task = services.ranking_task_create(rng=rng, alternatives=3, overlap=OVERLAP, queue=False)
        if task is not None:
            tasks.append(services.ranking_task_prepare(task_id=task.pk))
        if len(tasks) == TASKS:
            break
    assert len(tasks) == TASKS
    assert all(task.status == RankingTask.Status.READY for task in tasks)
    return tasks


def _work_left_for(trainer) -> bool:
    return (
        RankingTask.objects.filter(
            status=RankingTask.Status.READY,
            overlap_required__gt=F("rankings_count") + F("leased_count"),
        )
        .exclude(source_owner=trainer)
        .exclude(assignments__trainer=trainer)
        .exists()
    )


def _rank_until_done(trainer, barrier: threading.Barrier, log: TrainerLog) -> None:
    try:
        barrier.wait(timeout=WAIT_SECONDS)
        for _ in range(200):  # a bound, far above the TASKS claims a trainer can make
            assignment = services.task_claim_next(trainer=trainer)
            if assignment is None:
                if not _work_left_for(trainer):
                    return
                log.empty_claims_with_work_left += 1
                time.sleep(0.005)
                continue
            ranking = services.ranking_submit(
                assignment=assignment,
                trainer=trainer,
                ranking=RankingInput([[candidate] for candidate in assignment.presentation_order]),
            )
            log.rankings.append(ranking.pk)
            log.tasks.append(ranking.task_id)
        log.errors.append("still claiming after 200 rounds")
    except Exception:
        log.errors.append(traceback.format_exc())
    finally:
        connection.close()


def test_twenty_trainers_at_once_fill_every_task_exactly_to_its_overlap(policy, settings):
    settings.RANKING_MAX_NEW_TOKENS = 8
    writer = user_create_trainer(username="writer", password=PASSWORD)
    tasks = _prepared_tasks(writer)
    trainers = [
        user_create_trainer(username=f"ranker{i:02d}", password=PASSWORD) for i in range(20)
    ]
    logs = [TrainerLog() for _ in trainers]
    barrier = threading.Barrier(TRAINERS)
    threads = [
        threading.Thread(target=_rank_until_done, args=(trainer, barrier, log))
        for trainer, log in zip(trainers, logs, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a trainer thread hung"

    errors = [error for log in logs for error in log.errors]
    assert not errors, "trainer threads failed:\n" + "\n".join(errors)

    per_task = {task.pk: task for task in RankingTask.objects.filter(pk__in=[t.pk for t in tasks])}
    stored = Counter(Ranking.objects.values_list("task_id", flat=True))
    for task_id, task in per_task.items():
        assert stored[task_id] <= OVERLAP, f"task {task_id} has {stored[task_id]} rankings"
        assert task.rankings_count <= OVERLAP
        assert stored[task_id] == OVERLAP == task.rankings_count, (
            f"task {task_id}: {stored[task_id]} rankings stored, counter says "
            f"{task.rankings_count}, {OVERLAP} wanted"
        )
        assert task.status == RankingTask.Status.COMPLETE
        assert task.leased_count == 0, f"task {task_id} still counts {task.leased_count} leases"

    returned = [ranking_id for log in logs for ranking_id in log.rankings]
    assert len(returned) == len(set(returned)) == TASKS * OVERLAP
    assert set(Ranking.objects.filter(pk__in=returned).values_list("pk", flat=True)) == set(
        returned
    ), "a submit reported success but its ranking is not stored"
    assert Ranking.objects.count() == TASKS * OVERLAP

    for trainer, log in zip(trainers, logs, strict=True):
        assert len(log.tasks) == len(set(log.tasks)), f"{trainer} ranked a task twice"
    twice = Ranking.objects.values("task_id", "ranker_id").annotate(n=Count("id")).filter(n__gt=1)
    assert not twice.exists()
    assert not Ranking.objects.filter(ranker=writer).exists()
    assert not Assignment.objects.filter(status=Assignment.Status.LEASED).exists()
    # Claims, submits and leases only ever take slots away, so a claim that found nothing while
    # a slot was open for that trainer would be a claim that skipped a locked row and gave up.
    assert sum(log.empty_claims_with_work_left for log in logs) == 0
    # Spread: with 20 trainers and 30 slots, work is shared rather than taken by a few threads.
    assert sum(1 for log in logs if log.rankings) >= OVERLAP


def test_two_pool_fills_at_once_make_the_pool_once_not_twice(policy):
    """A fill slower than the schedule overlaps the next one on another worker. Both counted
    the open tasks before either made one, so each made the whole pool: twice the tasks."""
    writer = user_create_trainer(username="writer", password=PASSWORD)
    for index in range(12):
        finished_conversation(writer, turns=(f"question {index}?", f"answer {index}."))
    wanted = 4
    create = services.ranking_task_create
    first_calls = threading.Barrier(2)
    errors: list[str] = []

    def create_once_both_are_making(**kwargs):
        # Each fill's first task waits (a while) for the other fill to be making one too: they
        # meet when nothing keeps them apart, and the check below sees the pool made twice.
        if not getattr(local, "waited", False):
            local.waited = True
            # Broken (a timeout): the other fill waits for this one's turn, the fix at work.
            with contextlib.suppress(threading.BrokenBarrierError):
                first_calls.wait(timeout=10)
        # Not queued: this run's Celery worker (started by an earlier test) would prepare the
        # tasks while the test's database is emptied after it, and the two could deadlock.
        return create(**kwargs, queue=False)

    local = threading.local()
    services_create = mock.patch.object(
        services, "ranking_task_create", create_once_both_are_making
    )

    def fill(start: threading.Barrier) -> None:
        try:
            start.wait(timeout=WAIT_SECONDS)
            services.ranking_pool_fill(target=wanted, rng=random.Random())
        except Exception:
            errors.append(traceback.format_exc())
        finally:
            connection.close()

    start = threading.Barrier(2)
    with services_create:
        threads = [threading.Thread(target=fill, args=(start,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=WAIT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a fill hung"
    assert not errors, "\n".join(errors)
    tasks = RankingTask.objects.all()
    assert tasks.count() == wanted
    sources = list(tasks.values_list("source_message_id", flat=True))
    assert len(set(sources)) == len(sources)
