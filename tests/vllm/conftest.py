"""The vllm tier (`make test-vllm`, in .venv-vllm): vLLM's engine in this process, and its
OpenAI-compatible server started here as a subprocess, both on the embedded model (vLLM's CPU
attention has no kernel for the micro model's 16-wide heads; the embedded model's are 64)."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, WAIT_SECONDS, free_port

# The engine's KV cache on the CPU, in GiB: the embedded model needs little.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
# The engine core in this process (as in a Celery pool process), not a spawned one.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
SERVED_NAME = "micro"
MAX_MODEL_LEN = 256


EMBEDDED_MODEL_DIR = ROOT / "assets" / "models" / "tandem-chitchat-tiny"


@pytest.fixture(scope="session")
def vllm_model_dir() -> Path:
    return EMBEDDED_MODEL_DIR


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def _is_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def vllm_server(vllm_model_dir, tmp_path_factory) -> Iterator[Server]:
    """vLLM's OpenAI-compatible server on the embedded model (`vllm serve` needs a package named
    `vllm`; the CPU build is `vllm-cpu`, so the module is started directly)."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-server") / f"vllm-server-{port}.log"
    environment = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    with open(log, "w") as output:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(vllm_model_dir), "--served-model-name", SERVED_NAME,
                "--max-model-len", str(MAX_MODEL_LEN), "--dtype", "float32",
                "--host", "127.0.0.1", "--port", str(port),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )  # fmt: skip
    server = Server(process=process, port=port, log=log)
    deadline = time.monotonic() + WAIT_SECONDS
    while not _is_up(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"vLLM's server did not start; its log:\n{log.read_text()[-4000:]}")
        time.sleep(1)
    yield server
    # The server and its engine core: the whole process group it leads.
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
