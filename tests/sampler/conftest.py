"""What every sampler test shares."""

import pytest
import torch

from sampler.generation import services
from sampler.generation.models import GenerationJob, Sample

PROMPT = [{"role": "user", "content": "hi! how was your weekend?"}]


def job_unqueued(trainer, **overrides) -> GenerationJob:
    """A generation job of PROMPT (3 samples of up to 12 tokens, seed 1234) that is stored but
    not published: run it with ``generation_job_run_inline``."""
    arguments = {
        "messages": PROMPT,
        "n": 3,
        "params": {"max_new_tokens": 12},
        "seed": 1234,
        "requested_by": trainer,
        "queue": False,
    }
    arguments.update(overrides)
    return services.generation_job_create(**arguments)


def suggestion_job(requested_by, model_version, prefix, *, role="assistant") -> GenerationJob:
    """A queued suggestion job (one sample, seed 1) for the ``role`` turn after message
    ``prefix``, stored as it is, never run."""
    return GenerationJob.objects.create(
        model_version=model_version,
        prefix_message=prefix,
        n=1,
        seed=1,
        purpose=GenerationJob.Purpose.SUGGESTION,
        requested_by=requested_by,
        role=role,
    )


def suggestion_sample(
    requested_by, model_version, prefix, *, role="assistant", text="Hello"
) -> Sample:
    """The one sample of a ``suggestion_job``: ``text``, ended at the end of its turn."""
    job = suggestion_job(requested_by, model_version, prefix, role=role)
    return Sample.objects.create(
        job=job, index=0, text=text, token_count=1, finish_reason="end_of_turn"
    )


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One compute thread while a test trains or samples, whatever ``TORCH_THREADS`` says, so
    that a test run takes one core of a shared machine; the pool is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
