"""A red-team run taken over from a worker that stalled: the stalled worker, when it wakes,
writes nothing on the run (its start, its replies' jobs, its scores) and stops."""

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling.redteam import services as redteam_services
from labeling.redteam.models import AttackRun
from sampler.generation.models import GenerationJob
from sampler.jobs import services
from sampler.jobs.kinds import JobCancelled, JobContext, job_kind_named
from sampler.registry.models import ModelVersion
from tests.labeling.redteam.conftest import stored_attacks

pytestmark = pytest.mark.django_db

# What the worker that took the run over recorded when it started.
NEW_START = {"filter_name": "the new worker's filter 2", "attack_count": 7}


@pytest.fixture
def run(policy, trainer, admin_user, settings) -> AttackRun:
    settings.RANKING_MAX_NEW_TOKENS = 8
    stored_attacks(trainer, policy, 2)
    return redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )


@pytest.fixture
def reward_versions(db) -> tuple[ModelVersion, ModelVersion]:
    """The reward model active when the stalled worker starts, and the one the worker that
    took the run over recorded (active when it started)."""
    active = ModelVersion.objects.create(name="rm-2", path="/rm-2", kind="reward", is_active=True)
    earlier = ModelVersion.objects.create(name="rm-1", path="/rm-1", kind="reward")
    return active, earlier


def _claim(run: AttackRun, worker: str) -> JobContext:
    kind = job_kind_named("attack_run")
    job = services.job_claim(kind=kind, job_id=run.pk, token=None, worker=worker)
    assert job is not None
    return JobContext(kind=kind, job=job, token=job.publish_token, worker=worker)


def _take_over(run: AttackRun, settings, **fields) -> JobContext:
    """What happens while the run's worker stalls past JOB_STALE_AFTER: another worker claims
    the run and records ``fields``."""
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER + 5)
    AttackRun.objects.filter(pk=run.pk).update(heartbeat_at=long_ago)
    new = _claim(run, "new/2")
    new.heartbeat(**fields)
    return new


def _taking_over_in(monkeypatch, name: str, run: AttackRun, settings, **fields) -> list:
    """``redteam_services.<name>`` takes the run over (recording ``fields``) the first time the
    stalled worker calls it, then does what it does. The new worker's context lands in the
    list."""
    original = getattr(redteam_services, name)
    taken: list[JobContext] = []

    def stalling(*args, **kwargs):
        if not taken:
            taken.append(_take_over(run, settings, **fields))
        return original(*args, **kwargs)

    monkeypatch.setattr(redteam_services, name, stalling)
    return taken


def _held_by_new_worker(run: AttackRun, new: JobContext, **fields) -> AttackRun:
    run.refresh_from_db()
    assert run.status == AttackRun.Status.RUNNING and run.publish_token == new.token
    assert {name: getattr(run, name) for name in fields} == fields
    return run


def test_a_stalled_worker_taken_over_before_it_started_records_nothing_of_its_start(
    run, settings, monkeypatch, reward_versions
):
    _active, earlier = reward_versions
    new_start = {**NEW_START, "reward_model_version": earlier}
    taken = _taking_over_in(monkeypatch, "content_filter_ready", run, settings, **new_start)
    stalled = _claim(run, "stalled/1")

    with pytest.raises(JobCancelled):
        redteam_services.attack_run_execute(stalled)

    _held_by_new_worker(run, *taken, **new_start)
    assert not run.results.exists() and not GenerationJob.objects.exists()


def test_a_stalled_worker_taken_over_once_it_started_makes_no_job_for_a_reply(run, settings):
    stalled = _claim(run, "stalled/1")
    taken: list[JobContext] = []
    beat = stalled.heartbeat

    def beat_then_stall(**fields):
        # It records its start, then stalls and is taken over before it makes a reply's job.
        beat(**fields)
        if not taken:
            taken.append(_take_over(run, settings, **NEW_START))

    stalled.heartbeat = beat_then_stall

    with pytest.raises(JobCancelled):
        redteam_services.attack_run_execute(stalled)

    _held_by_new_worker(run, *taken, **NEW_START)
    # The new worker makes the reply's job itself: none made by the stalled one is run, or
    # named by the run's set.
    assert not GenerationJob.objects.exists()
    assert not run.entries.filter(generation_job__isnull=False).exists()
    assert not run.results.exists()


def test_a_stalled_worker_taken_over_while_it_scores_writes_no_score_and_stops(
    run, settings, monkeypatch, reward_versions
):
    def scores(*, version, conversations):
        return [0.5] * len(conversations)

    monkeypatch.setattr(redteam_services, "reward_version_score", scores)
    taken = _taking_over_in(monkeypatch, "reward_version_score", run, settings, **NEW_START)
    stalled = _claim(run, "stalled/1")

    with pytest.raises(JobCancelled):
        redteam_services.attack_run_execute(stalled)

    _held_by_new_worker(run, *taken, **NEW_START)
    assert not run.results.filter(reward_score__isnull=False).exists()
    assert not run.results.filter(failed_reply_reward_score__isnull=False).exists()


def test_a_stalled_worker_taken_over_as_it_finishes_stops_without_finishing(
    run, settings, monkeypatch, reward_versions
):
    taken: list[JobContext] = []
    # Its results stored, the takeover lands while it scores them (writing no score).
    monkeypatch.setattr(
        redteam_services,
        "_score_results",
        lambda **_: taken.append(_take_over(run, settings, **NEW_START)),
    )
    stalled = _claim(run, "stalled/1")

    with pytest.raises(JobCancelled):
        redteam_services.attack_run_execute(stalled)

    run = _held_by_new_worker(run, *taken, **NEW_START)
    assert run.finished_at is None and run.progress < 1.0
