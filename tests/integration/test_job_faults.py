"""Jobs survive faults: each test owns its redis-server (killed and restarted here) and its
workers (killed whole), against this session's PostgreSQL database. Deadlines come from the
suite's wait setting; nothing asserts how long a recovery took."""

import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from ranking.rank.models import RankingTask
from ranking.rank.services import ranking_task_create
from sampler.generation.models import GenerationJob
from sampler.generation.services import generation_job_create
from sampler.jobs import services
from sampler.registry.models import ModelVersion
from tests.conftest import WAIT_SECONDS, wait_until
from tests.integration.processes import RedisServer, Worker, publishing_to
from tests.ranking.conftest import finished_conversation

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ALL_QUEUES = "interactive,generation,training,default"
# Short lifecycle timings so a recovery happens within the test's deadline (the defaults are
# minutes; the mechanism is the same).
FAST = {
    "JOB_HEARTBEAT_SECONDS": "2",
    "JOB_STALE_AFTER": "12",
    "JOB_PUBLISH_GRACE": "3",
    "JOB_REPUBLISH_AFTER": "8",
    "JOB_TICK_SECONDS": "2",
}
EMBEDDED = Path(__file__).resolve().parents[2] / "assets" / "models" / "tandem-chitchat-tiny"


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.kill()


@pytest.fixture
def workers(tmp_path, micro_model_dir):
    started: list[Worker] = []

    def start(broker_url: str, *, queues: str = ALL_QUEUES, beat: bool = False, **environment):
        worker = Worker(
            broker_url=broker_url,
            queues=queues,
            log_dir=tmp_path,
            model_dir=micro_model_dir,
            beat=beat,
            environment={**FAST, **environment},
            name=f"w{len(started)}",
        )
        started.append(worker)
        return worker.wait_ready()

    yield start
    for worker in started:
        worker.stop()


def _job(trainer, **overrides) -> GenerationJob:
    arguments = {
        "messages": [{"role": "user", "content": "hi! what did you do today?"}],
        "n": 2,
        "params": {"max_new_tokens": 8},
        "purpose": GenerationJob.Purpose.MANUAL,
        "requested_by": trainer,
    }
    return generation_job_create(**{**arguments, **overrides})


def _all_succeeded(job_ids) -> bool:
    jobs = GenerationJob.objects.filter(pk__in=job_ids)
    return all(job.status == GenerationJob.Status.SUCCEEDED for job in jobs)


def test_redis_restarted_empty_loses_no_queued_job_nor_a_preparing_ranking_task(
    redis_server, workers, policy, trainer, other_trainer, settings
):
    settings.RANKING_MAX_NEW_TOKENS = 8
    finished_conversation(other_trainer)
    with publishing_to(redis_server.url):
        jobs = [_job(trainer, seed=seed) for seed in range(5)]
        task = ranking_task_create(alternatives=2, overlap=1)
    assert task.status == RankingTask.Status.PREPARING
    assert redis_server.queue_length("generation") == 6
    redis_server.kill()
    redis_server.start()  # same port, nothing kept
    assert redis_server.queue_length("generation") == 0

    # One job per backend call: a worker batching waiting jobs with the one it was handed runs
    # them before their own republished messages, which would leave nothing to assert of those.
    workers(redis_server.url, beat=True, GENERATION_BATCH_JOBS="1")
    ids = [job.pk for job in jobs]
    wait_until(lambda: _all_succeeded(ids))
    for job in GenerationJob.objects.filter(pk__in=ids):
        assert job.attempts == 1 and job.samples.count() == 2
        assert job.publish_count >= 2  # the outbox published it again
    ready = wait_until(lambda: RankingTask.objects.filter(pk=task.pk, status="ready").first())
    assert ready.candidates.count() == 3  # the source and its two alternatives


def test_broker_down_at_enqueue_answers_503_and_the_job_runs_later(
    redis_server, workers, policy, trainer_client
):
    redis_server.kill()
    with publishing_to(redis_server.url):
        response = trainer_client.post(
            "/api/generation-jobs/",
            {
                "messages": [{"role": "user", "content": "hello?"}],
                "n": 2,
                "params": {"max_new_tokens": 8},
            },
            content_type="application/json",
        )
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/json")
    assert int(response["Retry-After"]) > 0
    body = response.json()
    assert "unreachable" in body["detail"] and body["retry_after"] > 0
    job = GenerationJob.objects.get(pk=body["job"]["id"])
    assert job.status == GenerationJob.Status.QUEUED and job.published_at is None

    redis_server.start()
    workers(redis_server.url, beat=True)
    done = wait_until(
        lambda: GenerationJob.objects.filter(pk=job.pk, status="succeeded").first(),
    )
    assert done.samples.count() == 2 and done.attempts == 1


def test_the_sweeper_leaves_waiting_jobs_alone_and_each_runs_once(
    redis_server, workers, policy, trainer
):
    with publishing_to(redis_server.url):
        jobs = [_job(trainer, seed=seed) for seed in range(3)]
    ids = [job.pk for job in jobs]
    # Only the periodic tasks run: nobody consumes the generation queue for a while.
    workers(redis_server.url, queues="default", beat=True)
    wait_until(
        lambda: all(job.publish_count >= 2 for job in GenerationJob.objects.filter(pk__in=ids)),
    )
    for job in GenerationJob.objects.filter(pk__in=ids):
        assert job.status == GenerationJob.Status.QUEUED and job.error == ""
    workers(redis_server.url, queues="generation")
    wait_until(lambda: _all_succeeded(ids))
    for job in GenerationJob.objects.filter(pk__in=ids):
        # Copies of its message were dropped as stale: one run, one set of samples.
        assert job.attempts == 1 and job.samples.count() == 2


def test_a_job_whose_worker_tree_was_killed_mid_generation_finishes_exactly_once(
    redis_server, workers, trainer
):
    slow = ModelVersion.objects.create(name="embedded-for-kill", path=str(EMBEDDED))
    with publishing_to(redis_server.url):
        # The embedded model at a high temperature rarely ends a turn early: seconds of
        # sampling, a window wide enough to kill the worker in.
        job = _job(
            trainer,
            n=16,
            params={"max_new_tokens": 200, "temperature": 2.0, "top_p": 1.0},
            seed=3,
            model_version=slow,
        )
    first = workers(redis_server.url)
    wait_until(
        lambda: GenerationJob.objects.filter(pk=job.pk, status="running").exists(),
        interval=0.02,
    )
    first.kill_tree()
    assert GenerationJob.objects.get(pk=job.pk).status == GenerationJob.Status.RUNNING

    workers(redis_server.url, beat=True)  # a new worker, with the sweeper
    # The deadline: 3 minutes after the new worker started at the default wait setting
    # (TEST_WAIT_SECONDS=300), scaled with it on a slower machine.
    deadline = time.monotonic() + 0.6 * WAIT_SECONDS
    done = None
    while done is None and time.monotonic() < deadline:
        done = GenerationJob.objects.filter(pk=job.pk, status="succeeded").first()
        time.sleep(0.2)
    assert done is not None, "the job did not finish within its deadline after a new worker"
    assert done.attempts == 2  # the killed run and the one after the sweeper queued it again
    assert sorted(done.samples.values_list("index", flat=True)) == list(range(16))


def test_an_admin_retries_a_failed_job_and_it_runs(
    redis_server, workers, policy, trainer, trainer_client, admin_client_, micro_model_dir
):
    gone = ModelVersion.objects.create(name="moved", path="/nonexistent/model-dir")
    workers(redis_server.url)
    with publishing_to(redis_server.url):
        job = _job(trainer, model_version=gone)
        failed = wait_until(
            lambda: GenerationJob.objects.filter(pk=job.pk, status="failed").first(),
        )
        assert "nonexistent" in failed.error
        # The admin puts the model back where it belongs, then retries.
        ModelVersion.objects.filter(pk=gone.pk).update(path=str(micro_model_dir))
        response = admin_client_.post(f"/api/jobs/generation/{job.pk}/retry/")
        assert response.status_code == 202, response.content
        assert response.json()["status"] == "queued"
        # The admins' job API is theirs alone.
        assert trainer_client.post(f"/api/jobs/generation/{job.pk}/retry/").status_code == 403
    done = wait_until(
        lambda: GenerationJob.objects.filter(pk=job.pk, status="succeeded").first(),
    )
    assert done.samples.count() == 2 and done.error == "" and done.attempts == 1


def _lost_with_redis(redis_server) -> None:
    """Redis restarts empty: every message it held is gone."""
    redis_server.kill()
    redis_server.start()
    assert redis_server.queue_length("generation") == 0


@pytest.mark.parametrize("how", ["retried", "requeued by the sweeper"])
def test_a_job_published_afresh_and_then_lost_is_sent_again_after_the_first_delay(
    redis_server, policy, trainer, settings, how
):
    with publishing_to(redis_server.url):
        job = _job(trainer)
    # It waited long in a busy queue before: the outbox sent it six times, each wait longer.
    GenerationJob.objects.filter(pk=job.pk).update(publish_count=6)
    if how == "retried":
        GenerationJob.objects.filter(pk=job.pk).update(status="failed", error="down")
        with publishing_to(redis_server.url):
            services.job_retry(job=GenerationJob.objects.get(pk=job.pk))
    else:
        stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER + 5)
        GenerationJob.objects.filter(pk=job.pk).update(
            status="running", heartbeat_at=stale, attempts=1, worker="gone/1"
        )
        with publishing_to(redis_server.url):
            assert services.jobs_tick().requeued == 1
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.QUEUED and job.published_at is not None
    _lost_with_redis(redis_server)
    # A new publication waits the first delay, not the longest one its old copies had reached.
    due = job.published_at + timedelta(seconds=settings.JOB_REPUBLISH_AFTER + 1)
    with publishing_to(redis_server.url):
        assert services.jobs_tick(now=due).republished == 1
    assert redis_server.queue_length("generation") == 1
    job.refresh_from_db()
    # Copies of a message that keeps waiting still come less and less often.
    not_yet = job.published_at + timedelta(seconds=settings.JOB_REPUBLISH_AFTER + 1)
    with publishing_to(redis_server.url):
        assert services.jobs_tick(now=not_yet).republished == 0
