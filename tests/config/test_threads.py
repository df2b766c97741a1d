"""TORCH_THREADS caps torch's and the numeric libraries' threads where models run."""

import os
from pathlib import Path

import pytest

from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[2]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _run(code: list[str], **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    environment.pop("TORCH_THREADS", None)
    environment.update(env)
    return run_python(*code, env=environment).stdout.split()


REPORT = (
    "import os, torch; "
    f"print(torch.get_num_threads(), *(os.environ[name] for name in {THREAD_VARIABLES!r}))"
)


@pytest.mark.parametrize("setting, threads", [(None, 1), ("2", 2)])
def test_the_cap_applies_before_torch_starts(setting, threads):
    env = {} if setting is None else {"TORCH_THREADS": setting}
    code = f"from config.threads import thread_caps_apply; thread_caps_apply(); {REPORT}"

    # torch never starts more intra-op threads than there are cores.
    expected = [str(min(threads, os.cpu_count())), *[str(threads)] * 3]
    assert _run(["-c", code], **env) == expected


def test_the_cap_resizes_torch_when_it_is_already_running():
    code = (
        "import torch; torch.set_num_threads(2); "
        f"from config.threads import thread_caps_apply; thread_caps_apply(); {REPORT}"
    )

    assert _run(["-c", code]) == ["1"] * 4


def test_manage_py_commands_run_with_the_cap(tmp_path):
    # Uncapped, torch would start a thread per core.
    printed = _run(["manage.py", "shell", "-v", "0", "-c", REPORT], VAR_DIR=str(tmp_path))

    assert printed == ["1"] * 4
