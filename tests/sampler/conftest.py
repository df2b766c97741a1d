"""What every sampler test shares."""

import pytest
import torch

from sampler.generation import services
from sampler.generation.models import GenerationJob

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


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One compute thread while a test trains or samples, whatever ``TORCH_THREADS`` says, so
    that a test run takes one core of a shared machine; the pool is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
