"""A red-team run reading a waiting sample's verdict while the sweep judges it, on PostgreSQL.

A run that found no filter to run at its start reads, as it stores each result, the verdict its
sample got since. It holds the sample's row while its transaction lasts, whether the sample
still waits or not: a sweep then passes the sample over (it takes only rows no one holds) and
judges it on a later run, once the result is stored to receive the verdict. Were the row held
only once judged, a sweep could judge it meanwhile, find no result to give the verdict to, and
the result would show none for good."""

import pytest

from labeling.redteam.services import _verdict_judged_meanwhile
from sampler.generation.models import GenerationJob, Sample
from sampler.moderation.services import waiting_judge
from tests.conftest import racing, recording_thread

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_sweep_passes_over_a_waiting_sample_a_run_is_reading(policy):
    job = GenerationJob.objects.create(
        model_version=policy,
        prompt_messages=[{"role": "user", "content": "hello"}],
        n=1,
        params={"max_new_tokens": 8},
        seed=1,
        purpose=GenerationJob.Purpose.MANUAL,
        status=GenerationJob.Status.SUCCEEDED,
    )
    sample = Sample.objects.create(
        job=job,
        index=0,
        text="a reply",
        token_count=2,
        finish_reason=Sample.FinishReason.END_OF_TURN,
        moderation_pending=True,
    )
    judged: list[int] = []
    outcome: dict[str, object] = {}
    sweep = recording_thread(
        lambda: waiting_judge(
            Sample.objects.filter(moderation_pending=True),
            judge=lambda batch: judged.extend(row.pk for row in batch),
            most=None,
            batch_size=10,
            noun="samples",
        ),
        outcome,
        "counts",
    )
    with racing(sweep, what="the sweep"):
        # The run reads the verdict as it stores its result: not judged yet.
        assert _verdict_judged_meanwhile(sample) is None

    assert "error" not in outcome, outcome
    assert judged == [] and outcome["counts"] == (0, 0)
