"""One cap on the threads that torch and the numeric libraries start in a process.

torch sizes its intra-op pool to every core it sees, and OpenMP, MKL and OpenBLAS do the same.
Several workers on one machine (one per queue, a test run beside another) then each run as many
threads as there are cores and spend their time descheduling each other: a 2-second generation
takes half a minute. Every process that may run a model applies ``TORCH_THREADS`` (default 1)
before it does: Celery worker processes (config/celery.py), ``manage.py`` (training commands)
and the test suite (tests/conftest.py).
"""

import os
import sys

from config.env import env_int

# The pools each library reads from the environment when it starts.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def torch_threads_setting() -> int:
    """``TORCH_THREADS`` from the environment, read without Django (manage.py applies it before
    Django starts); the same default as ``settings.TORCH_THREADS``."""
    threads = env_int("TORCH_THREADS", 1)
    if threads < 1:
        raise ValueError(f"TORCH_THREADS must be at least 1, got {threads}")
    return threads


def thread_caps_apply(threads: int | None = None) -> int:
    """Cap this process (and the processes it starts) at ``threads`` compute threads.

    Sets the libraries' environment variables, which they read when they start, and resizes
    torch's pool when torch is already imported (a forked worker process inherits its parent's).
    Returns the cap.
    """
    threads = torch_threads_setting() if threads is None else threads
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
