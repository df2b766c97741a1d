"""Undos and submits at once, on PostgreSQL: none of them fails on a deadlock (a 500).

Two trainers each ranked a task and went on to the task the other ranked. Both take their
ranking back at once, and one's submit on the next task is on its way too (a second tab, a
click on "Submit" just as the undo toast is clicked). An undo gives the next task's lease back,
so it touches both tasks and both of the trainer's assignments; a submit takes its assignment,
then its task. When the undo took its own task first, the three closed a circle of waits: x's
undo held the first task and waited for the assignment x's submit held, that submit waited for
the second task, which w's undo held while waiting for the first, and PostgreSQL aborted one
of them."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from ranking.gold.services import gold_task_create
from ranking.models import Assignment, Project, Ranking, RankingTask
from ranking.rank import services
from ranking.rank.services import RankingInput
from tests.conftest import WAIT_SECONDS, racing, recording_thread, wait_for_lock_or_end
from tests.ranking.conftest import (
    candidate_ids,
    finished_conversation,
    model_version_create,
    quick_trainer,
    task_from_source,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _two_tasks() -> tuple[RankingTask, RankingTask]:
    """Two tasks of one policy, each from its own finished conversation."""
    writer = quick_trainer("writer")
    policy = model_version_create("policy")
    first, second = (
        task_from_source(
            finished_conversation(writer, turns=(f"q{i}?", f"a{i}.")).active_leaf,
            model_version=policy,
        )
        for i in range(2)
    )
    return first, second


def _lease(task: RankingTask, trainer) -> Assignment:
    """What a claim leaves: the trainer's lease on ``task``, holding one of its slots."""
    RankingTask.objects.filter(pk=task.pk).update(leased_count=task.leased_count + 1)
    task.refresh_from_db()
    return Assignment.objects.create(
        task=task,
        trainer=trainer,
        presentation_order=candidate_ids(task),
        expires_at=timezone.now() + timedelta(hours=1),
    )


def _strict(task: RankingTask) -> RankingInput:
    return RankingInput([[candidate] for candidate in candidate_ids(task)])


def _in_thread(name: str, work, outcomes: dict) -> threading.Thread:
    def run() -> None:
        try:
            work()
            outcomes[name] = "done"
        except services.RankingConflict as conflict:
            outcomes[name] = f"conflict: {conflict}"
        except Exception as error:  # what the request would answer as a 500
            outcomes[name] = f"error: {error!r}"
        finally:
            connection.close()

    return threading.Thread(target=run, name=name)


def test_two_undos_racing_submits_on_the_next_tasks_never_deadlock():
    first, second = _two_tasks()
    RankingTask.objects.update(overlap_required=2)
    first.refresh_from_db()
    second.refresh_from_db()
    x, w = quick_trainer("x"), quick_trainer("w")
    x_first = services.ranking_submit(
        assignment=_lease(first, x), trainer=x, ranking=_strict(first)
    )
    second.refresh_from_db()
    w_second = services.ranking_submit(
        assignment=_lease(second, w), trainer=w, ranking=_strict(second)
    )
    second.refresh_from_db()
    x_next = _lease(second, x)  # x went on to the task w ranked
    first.refresh_from_db()
    w_next = _lease(first, w)  # and w to the one x ranked

    outcomes: dict[str, str] = {}
    threads = [
        _in_thread(
            "undo x", lambda: services.ranking_undo(ranking_id=x_first.pk, trainer=x), outcomes
        ),
        _in_thread(
            "undo w", lambda: services.ranking_undo(ranking_id=w_second.pk, trainer=w), outcomes
        ),
        _in_thread(
            "submit x",
            lambda: services.ranking_submit(assignment=x_next, trainer=x, ranking=_strict(second)),
            outcomes,
        ),
    ]
    # Both tasks held (as a claim or another trainer's submit holds one) while the three start
    # one after the other, each waiting behind the one before: then all go at once. (Three
    # threads and this one: the four connections of the pool.)
    with transaction.atomic():
        list(RankingTask.objects.select_for_update().filter(pk__in=[first.pk, second.pk]))
        for started, thread in enumerate(threads, start=1):
            thread.start()
            wait_for_lock_or_end(thread, what=thread.name, sessions=started)
            assert thread.is_alive(), f"{thread.name} did not wait: {outcomes}"
    for thread in threads:
        thread.join(WAIT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"

    errors = {name: outcome for name, outcome in outcomes.items() if outcome.startswith("error")}
    assert not errors, errors
    # Both undos went through; the submit came too late for the lease x's undo gave back.
    assert outcomes["undo x"] == outcomes["undo w"] == "done"
    assert outcomes["submit x"].startswith("conflict: This task is no longer yours")
    assert not Ranking.objects.filter(pk__in=[x_first.pk, w_second.pk]).exists()
    assert not Assignment.objects.filter(pk__in=[x_next.pk, w_next.pk]).exists()
    for task in (first, second):
        task.refresh_from_db()
        assert (task.rankings_count, task.leased_count) == (0, 1)
        assert task.status == RankingTask.Status.READY


def test_a_claim_holding_its_task_does_not_wait_for_a_busy_gold_copy():
    """A claim that picked its task and then, at the project's gold rate, looks for a gold copy
    to give instead must not wait for one another transaction holds: it would wait while
    holding its task, and an undo that locks the two the other way round (by id) closes a
    circle. A busy gold copy is passed over: the task picked is given."""
    original, regular = _two_tasks()
    gold = gold_task_create(task=original, ordering=[[each] for each in candidate_ids(original)])
    RankingTask.objects.filter(pk=original.pk).update(status=RankingTask.Status.COMPLETE)
    Project.objects.filter(pk=regular.project_id).update(gold_rate=1.0)
    trainer = quick_trainer("t")

    outcome: dict = {}
    thread = recording_thread(
        lambda: services.task_claim_next(trainer=trainer).task_id, outcome, "task"
    )
    with racing(thread, what="the claim") as race:
        # The gold copy held, as another trainer's claim or undo holds it for a moment.
        list(RankingTask.objects.select_for_update().filter(pk=gold.pk))

    assert not race.waited, "the claim waited for the gold copy while holding its task"
    assert outcome == {"task": regular.pk}
