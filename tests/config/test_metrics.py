"""/metrics (unit tier): who may read it, and what it reports from the database and broker."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from ranking.gold.services import gold_task_create
from ranking.models import RankingTask
from ranking.projects.services import project_create
from sampler.jobs.kinds import job_kinds
from sampler.models import GenerationJob
from tests.config.conftest import beat
from tests.conftest import broker_at, free_port
from tests.ranking.conftest import (
    candidate_ids,
    finished_conversation,
    model_version_create,
    quick_trainer,
    rank,
    task_from_source,
)

OUTSIDE = "203.0.113.9"  # an address in no allowed network


def _samples(response) -> dict[tuple[str, tuple], float]:
    """Every sample by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


@pytest.fixture
def scrape(db, memory_broker, settings):
    settings.METRICS_TOKEN = "a-metrics-token-for-tests"
    settings.METRICS_ALLOWED_CIDRS = []

    def get():
        response = Client().get(
            "/metrics",
            HTTP_AUTHORIZATION="Bearer a-metrics-token-for-tests",
            REMOTE_ADDR=OUTSIDE,
        )
        assert response.status_code == 200, response.content
        return _samples(response)

    return get


def test_metrics_are_refused_without_a_token_or_an_allowed_address(db, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_CIDRS = []

    response = Client().get("/metrics", REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 403
    assert b"METRICS_TOKEN" in response.content


def test_a_wrong_token_is_refused_even_from_an_allowed_network(db, settings):
    settings.METRICS_TOKEN = "the-right-token"
    settings.METRICS_ALLOWED_CIDRS = ["127.0.0.0/8"]

    response = Client().get(
        "/metrics", HTTP_AUTHORIZATION="Bearer the-wrong-token", REMOTE_ADDR="127.0.0.1"
    )

    assert response.status_code == 403


@pytest.mark.parametrize(
    "cidrs, address, allowed",
    [
        (["10.0.0.0/8"], "10.1.2.3", True),
        (["10.0.0.0/8", "fd00::/8"], "fd00::1", True),
        (["10.0.0.0/8"], "11.0.0.1", False),
        ([], "127.0.0.1", False),
    ],
)
def test_an_allowed_network_needs_no_token(db, memory_broker, settings, cidrs, address, allowed):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_CIDRS = cidrs

    response = Client().get("/metrics", REMOTE_ADDR=address)

    assert response.status_code == (200 if allowed else 403)


def _job(version, *, purpose, status, created_ago=0.0, started_ago=None, finished_ago=None):
    now = timezone.now()
    job = GenerationJob.objects.create(
        model_version=version, n=1, seed=1, purpose=purpose, status=status
    )
    GenerationJob.objects.filter(pk=job.pk).update(
        created_at=now - timedelta(seconds=created_ago),
        started_at=None if started_ago is None else now - timedelta(seconds=started_ago),
        finished_at=None if finished_ago is None else now - timedelta(seconds=finished_ago),
    )
    return job


def test_metrics_report_jobs_the_ranking_pool_rankings_workers_queues_and_latencies(scrape):
    Client().get("/accounts/login/")  # a request for django-prometheus to count
    version = model_version_create("policy-1")
    conversation = finished_conversation(quick_trainer("writer"))
    task = task_from_source(conversation.active_leaf, model_version=version)
    rank(task, quick_trainer("ranker"), [[0], [1], [2], [3]])
    suggestion = GenerationJob.Purpose.SUGGESTION
    succeeded = GenerationJob.Status.SUCCEEDED
    # Asked 4 s ago, started 3 s ago, done now: a 4 s wait for the trainer, 3 s of generation.
    _job(
        version, purpose=suggestion, status=succeeded, created_ago=4, started_ago=3, finished_ago=0
    )
    waiting = _job(version, purpose=suggestion, status=GenerationJob.Status.QUEUED)
    GenerationJob.objects.filter(pk=waiting.pk).update(queue="interactive")
    beat("interactive@h", ["interactive"], seconds_ago=5)

    samples = scrape()

    assert samples[("tandem_database_up", ())] == 1
    assert samples[("tandem_broker_up", ())] == 1
    assert samples[("tandem_queue_depth", (("queue", "interactive"),))] == 0
    # The database's view: one job waits for an interactive worker, none for the others.
    assert samples[("tandem_jobs_waiting", (("queue", "interactive"),))] == 1
    assert samples[("tandem_jobs_waiting", (("queue", "training"),))] == 0

    # By the kinds the API and retry_job name: the finished and the queued suggestion are
    # generation jobs; the job that prepared the ranking task, a ranking preparation.
    def jobs(kind):
        return {
            status: samples[("tandem_jobs", (("kind", kind), ("status", status)))]
            for status in ("queued", "running", "succeeded", "failed", "cancelled")
        }

    assert jobs("generation") == {
        "queued": 1, "running": 0, "succeeded": 1, "failed": 0, "cancelled": 0
    }  # fmt: skip
    assert jobs("ranking_preparation") == {
        "queued": 0, "running": 0, "succeeded": 1, "failed": 0, "cancelled": 0
    }  # fmt: skip
    kinds = {labels[0][1] for name, labels in samples if name == "tandem_jobs"}
    assert kinds == {job_kind.name for job_kind in job_kinds()}
    assert samples[("tandem_jobs", (("kind", "training"), ("status", "queued")))] == 0
    assert samples[("tandem_ranking_pool_tasks", (("status", "ready"),))] == 1
    assert samples[("tandem_ranking_pool_tasks", (("status", "preparing"),))] == 0
    assert samples[("tandem_rankings_last_hour", ())] == 1
    assert samples[("tandem_workers_live", (("queue", "interactive"),))] == 1
    assert samples[("tandem_workers_live", (("queue", "training"),))] == 0
    assert samples[("tandem_worker_heartbeat_age_seconds", (("worker", "interactive@h"),))] >= 5

    wait = "tandem_suggestion_latency_seconds"
    assert samples[(f"{wait}_bucket", (("le", "3"),))] == 0
    assert samples[(f"{wait}_bucket", (("le", "5"),))] == 1
    assert samples[(f"{wait}_count", ())] == 1
    assert samples[(f"{wait}_sum", ())] == pytest.approx(4, abs=0.01)
    run = "tandem_generation_duration_seconds"
    assert samples[(f"{run}_bucket", (("le", "2"), ("purpose", "suggestion")))] == 0
    assert samples[(f"{run}_bucket", (("le", "5"), ("purpose", "suggestion")))] == 1
    # The ranking job never ran on a worker here (no start time): not in the histogram.
    assert samples[(f"{run}_count", (("purpose", "ranking"),))] == 0

    # django-prometheus: requests and database queries.
    assert samples[("django_http_requests_total_by_method_total", (("method", "GET"),))] >= 1
    assert any(
        name == "django_db_execute_total" and value >= 1 for (name, _), value in samples.items()
    )


def test_metrics_say_the_broker_is_down_and_still_report_the_rest(db, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_CIDRS = ["127.0.0.0/8"]
    with broker_at(f"redis://127.0.0.1:{free_port()}/0"):  # nothing listens there
        response = Client().get("/metrics", REMOTE_ADDR="127.0.0.1")

    samples = _samples(response)
    assert response.status_code == 200
    assert samples[("tandem_broker_up", ())] == 0
    assert not any(name == "tandem_queue_depth" for name, _ in samples)
    assert samples[("tandem_database_up", ())] == 1


def test_the_pool_target_is_what_the_pool_fill_keeps_for_every_active_project(
    scrape, admin_client_, settings
):
    """Not RANKING_POOL_SIZE alone: each active project keeps its own pool (its size, or the
    site's), and one that selects by uncertainty prepares candidate_factor times as many."""
    settings.RANKING_POOL_SIZE = 20  # the default project's (active, no size of its own)
    project_create(name="Small", slug="small", status="active", pool_size=5)
    project_create(
        name="Uncertain", slug="uncertain", status="active", pool_size=2, selection="uncertainty"
    )
    project_create(name="Draft", slug="draft", pool_size=100)  # not filled

    assert scrape()[("tandem_ranking_pool_target_tasks", ())] == 20 + 5 + 2 * 3
    assert "(pool size 31)" in admin_client_.get("/").content.decode()


def test_the_pool_count_leaves_out_gold_copies_and_tasks_of_inactive_projects(
    scrape, admin_client_
):
    """What the pool fill counts toward the target: a gold copy, and a task of a paused or draft
    project, are not in any pool (they made the pool look full while the fill made more)."""
    version = model_version_create("policy-1")
    writer = quick_trainer("writer")
    pooled = task_from_source(finished_conversation(writer).active_leaf, model_version=version)
    gold_task_create(task=pooled, ordering=[[c] for c in candidate_ids(pooled)])
    draft = project_create(name="Draft", slug="draft")
    outside = task_from_source(finished_conversation(writer).active_leaf, model_version=version)
    RankingTask.objects.filter(pk=outside.pk).update(project=draft)

    assert scrape()[("tandem_ranking_pool_tasks", (("status", "ready"),))] == 1
    page = admin_client_.get("/").content.decode()
    assert '<span class="stat-value" id="stat-pool">1</span>' in page


def test_metrics_count_ranking_tasks_by_status_every_status_included(scrape):
    """Ranking tasks by their state, as background work is counted by kind and state: every
    task (gold copies and other projects' too), every status shown, 0 included. Since
    tandem_jobs counts job kinds by their names, a task's own state (complete, failed) was
    nowhere in /metrics."""
    version = model_version_create("policy-1")
    writer = quick_trainer("writer")
    ranked = task_from_source(finished_conversation(writer).active_leaf, model_version=version)
    rank(ranked, quick_trainer("ranker"), [[0], [1], [2], [3]])
    RankingTask.objects.filter(pk=ranked.pk).update(status=RankingTask.Status.COMPLETE)
    failed = task_from_source(finished_conversation(writer).active_leaf, model_version=version)
    RankingTask.objects.filter(pk=failed.pk).update(status=RankingTask.Status.FAILED)
    ready = task_from_source(finished_conversation(writer).active_leaf, model_version=version)
    gold_task_create(task=ready, ordering=[[c] for c in candidate_ids(ready)])

    samples = scrape()

    by_status = {
        status: samples[("tandem_ranking_tasks", (("status", status),))]
        for status in RankingTask.Status.values
    }
    assert by_status == {"preparing": 0, "ready": 2, "complete": 1, "failed": 1}
