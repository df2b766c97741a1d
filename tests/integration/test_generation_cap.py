"""The cap on a trainer's unfinished generation jobs, on PostgreSQL, with two requests at once.

Each request counts the trainer's unfinished jobs and then adds one. Were the count not
serialised, a request made while another's job is written but not yet committed would count
one too few, and both would pass the cap."""

import pytest

from sampler.generation import services
from sampler.generation.models import GenerationJob
from tests.conftest import broker_at, racing, recording_thread

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PROMPT = [{"role": "user", "content": "Hello?"}]


def _ask(trainer) -> GenerationJob:
    return services.generation_job_create(
        messages=PROMPT, n=1, params={"max_new_tokens": 4}, requested_by=trainer
    )


@pytest.fixture
def no_worker_takes_the_jobs():
    """The jobs stay unfinished: published where no worker reads (a worker this run started for
    other tests would finish the first job while the second request waits, and the count the
    cap makes would rightly let it through)."""
    with broker_at("memory://"):
        yield


def test_two_requests_at_once_cannot_both_take_the_last_place(
    policy, trainer, settings, no_worker_takes_the_jobs
):
    settings.GENERATION_MAX_UNFINISHED_PER_USER = 2
    _ask(trainer)
    outcome: dict[str, object] = {}
    second = recording_thread(
        lambda: _ask(trainer),
        outcome,
        "job",
        refusal=(services.TooManyUnfinishedJobs, lambda error: error.messages[0]),
    )
    with racing(second, what="the second request"):
        # The first request is under way: its job (the last place) written, not committed.
        _ask(trainer)

    assert "refused" in outcome, outcome
    assert "2 generation jobs waiting or running" in outcome["refused"]
    assert GenerationJob.objects.filter(requested_by=trainer).count() == 2
