"""`manage.py train_*` (SFT, reward, DPO, PPO) launched as several processes (as `accelerate
launch` or `torchrun` do on several GPUs), here two CPU processes joined over gloo: one run is
recorded, the data is split between the processes, and only the main process writes the
database and the model."""

import json
import math
import os
import re
import subprocess
import sys

import pytest

from ranking.models import Ranking
from sampler.registry.models import ModelVersion
from sampler.runs.models import TrainingRun
from sampler.training.synthetic import synthetic_demonstrations, synthetic_rankings
from tests.conftest import WAIT_SECONDS, free_port
from tests.integration.processes import ROOT, database_url
from tests.ranking.conftest import ranked, reward_version_untrained  # noqa: F401  (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BATCH_SIZE = 4
PROCESSES = 2


def _torchrun(*arguments: str, processes: int, environment: dict) -> subprocess.CompletedProcess:
    """``arguments`` (a script and its arguments) as ``processes`` processes under torchrun,
    with one compute thread each; their exit status asserted to be 0."""
    environment = {
        **environment,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TORCH_THREADS": "1",
    }
    launched = subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)),
            *("--master_port", str(free_port()), *arguments),
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    return launched


def _launch(
    command: str, tmp_path, *arguments: str
) -> tuple[subprocess.CompletedProcess, TrainingRun]:
    """``manage.py command`` as ``PROCESSES`` processes on the test database, and the one run it
    recorded, asserted to have succeeded."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MODEL_ROOT": str(tmp_path / "models"),
    }
    launched = _torchrun(
        "manage.py", command, *arguments, processes=PROCESSES, environment=environment
    )
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error + run.log
    return launched, run


def _records_file(tmp_path, records) -> str:
    data = tmp_path / "records.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(data)


@pytest.mark.parametrize(
    ("command", "records", "extra", "train_count"),
    [
        ("train_sft", lambda: synthetic_demonstrations(40, seed=1), [], "examples/train"),
        (
            "train_reward",
            lambda: synthetic_rankings(40, k=3, seed=4),
            ["--normalize-to-demonstrations", "no"],
            "rankings/train",
        ),
        # Accumulating over two micro-batches: gradients synchronised once per step.
        (
            "train_dpo",
            lambda: synthetic_rankings(40, k=3, seed=4),
            ["--gradient-accumulation-steps", "2"],
            "rankings/train",
        ),
    ],
)
def test_a_run_launched_as_two_processes_trains_once_on_split_data(
    policy, tmp_path, command, records, extra, train_count
):
    launched, run = _launch(
        command,
        tmp_path,
        *("-v", "0", "--data", _records_file(tmp_path, records()), "--max-steps", "4"),
        *("--batch-size", str(BATCH_SIZE), "--max-length", "48", "--eval-every", "2"),
        *("--name", "two-processes", *extra),
    )
    # One run, recorded and reported by the main process only.
    assert launched.stdout.count("training run ") == 1
    assert launched.stdout.count("succeeded: two-processes") == 1
    # Each process took its share of every batch: half as many batches per epoch as one
    # process would have.
    version = run.output_versions.get()
    trained_on = version.metrics["data"][train_count]
    batches = int(re.search(r"(\d+) batch(?:es)? per epoch", run.log).group(1))
    assert (
        batches
        == math.ceil(trained_on / (BATCH_SIZE * PROCESSES))
        < math.ceil(trained_on / BATCH_SIZE)
    )
    assert [step for step, _ in run.metrics["accuracy/eval"]] == [2, 4]
    assert version == ModelVersion.objects.get(name="two-processes")
    assert not version.is_active
    assert (tmp_path / "models" / "two-processes" / "config.json").is_file()


@pytest.mark.usefixtures("ranked")
def test_a_run_from_the_database_launched_as_two_processes_reads_it_in_the_main_one(
    policy, tmp_path
):
    """The main process reads the database and keeps the rows beside the run's checkpoints;
    the other waits for them and trains on the same rows (``_database_rows_once``)."""
    _, run = _launch(
        "train_reward",
        tmp_path,
        *("-v", "0", "--max-steps", "2", "--batch-size", "2", "--max-length", "48"),
        *("--test-fraction", "0", "--normalize-to-demonstrations", "no", "--name", "from-db"),
    )
    assert run.dataset["source"] == "database" and run.dataset["rows"] == Ranking.objects.count()
    assert run.output_versions.get().metrics["steps"] == 2


def test_a_ppo_run_launched_as_two_processes_trains_once_and_evaluates(policy, tmp_path):
    reward = reward_version_untrained(policy.path, tmp_path / "rm", seed=0)
    launched, run = _launch(
        "train_ppo",
        tmp_path,
        *("-v", "0", "--data", _records_file(tmp_path, synthetic_demonstrations(40, seed=1))),
        *("--reward-model", reward.name, "--max-steps", "2", "--batch-size", str(BATCH_SIZE)),
        *("--name", "ppo-two-processes"),
    )
    assert launched.stdout.count("training run ") == 1
    version = run.output_versions.get()
    # Fewer held-out prompts than processes: one process evaluates nothing, yet takes part, and
    # the evaluation is the other one's.
    assert version.metrics["data"]["prompts/test"] < PROCESSES
    assert [step for step, _ in run.metrics["eval/scores"]][:1] == [0]
    assert version.metrics["steps"] == 2 and "eval/scores" in version.metrics


def _run_script(script: str, *arguments: str, processes: int) -> subprocess.CompletedProcess:
    """``tests/integration/<script>`` as ``processes`` processes under torchrun."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    script_path = str(ROOT / "tests" / "integration" / script)
    return _torchrun(script_path, *arguments, processes=processes, environment=environment)


def _evaluations(model_dir, tmp_path, processes: int) -> dict:
    """``evaluate_across_processes.py`` as ``processes`` processes under torchrun."""
    out = tmp_path / f"evaluations-{processes}.json"
    _run_script("evaluate_across_processes.py", str(model_dir), str(out), processes=processes)
    evaluations = json.loads(out.read_text())
    assert evaluations["processes"] == processes
    return evaluations


def test_held_out_metrics_and_ktos_reference_point_do_not_depend_on_the_processes(
    micro_model_dir, tmp_path
):
    """5 held-out examples in batches of 2 on two processes: Accelerate repeats 3 of them to
    give both the same batches; every evaluation counts each example once, as one process
    does. KTO's z0 is pooled: both processes train against the same one."""
    one = _evaluations(micro_model_dir, tmp_path, 1)
    two = _evaluations(micro_model_dir, tmp_path, 2)
    compared = [(kind, name) for kind in ("sft", "dpo") for name in one[kind]]
    compared += [("kto", "rewards/chosen/eval"), ("kto", "rewards/rejected/eval")]
    for kind, name in compared:
        assert math.isclose(two[kind][name], one[kind][name], rel_tol=1e-4, abs_tol=1e-6), (
            kind,
            name,
            one[kind][name],
            two[kind][name],
        )
    first, second = two["kto_z0"]
    own = [part["own_sum"] / part["own_pairs"] for part in (first, second)]
    pooled = (first["own_sum"] + second["own_sum"]) / (first["own_pairs"] + second["own_pairs"])
    assert pooled > 0 and not math.isclose(own[0], own[1]), (own, pooled)
    assert math.isclose(first["z0"], pooled, rel_tol=1e-5)
    assert math.isclose(second["z0"], pooled, rel_tol=1e-5)


def test_each_process_leaves_the_process_group_before_it_exits():
    """A process group left to the interpreter's teardown can abort a process whose work
    succeeded; ``process_state`` leaves it at exit."""
    launched = _run_script("leave_process_group.py", processes=2)
    assert launched.stdout.count("of 2") == 2, launched.stdout
    assert launched.stdout.count("process group left: True") == 2, launched.stdout
