"""Exporting preference pairs from PostgreSQL: 100,000 vs 1,000,000 rows, side by side.

Usage: .venv/bin/python bench/bench_export.py [--rows 100000 1000000]
       DATABASE_URL=postgres://... (default postgres://postgres@127.0.0.1:5432/tandem_bench_export;
       created if missing, migrated, and emptied before each scenario)

Each scenario seeds, with COPY, one ranked task per conversation (a user turn, the source reply
and 4 sampled alternatives, so 5 candidates), each ranked by 3 trainers without ties: 30
per-ranker pairs per task. The export itself runs in a fresh child process (the same code path
as `manage.py export_comparisons --format pairs`), so its peak RSS is its own. Prints rows/s and
peak RSS for each scenario, and the ratios (flat memory: the RSS ratio stays near 1).
Target: >= 30,000 rows/s, peak RSS < 300 MB.

Trainers' trust (which every pair record carries) is estimated by a periodic task and stored, not
by the export: after seeding, that estimate runs once in its own child process (its time and
peak RSS are printed too), then the exports read it, as they do in steady state.

`--baseline REV` also exports the same seeded rows with the code of commit REV (a temporary
git worktree of it; default: the last commit before this round's restructuring, when the
exporter was one module), alternating the two sides `--repeats` times, and prints the ratio of
their best rates. `--baseline none` skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _db  # noqa: E402 - needs the bench folder on sys.path

_db.django_environment("postgres://postgres@127.0.0.1:5432/tandem_bench_export")

CANDIDATES = 5
RANKERS = 3
PAIRS_PER_TASK = RANKERS * CANDIDATES * (CANDIDATES - 1) // 2
# The last commit before the exporter moved into ranking/exports/ (one module, ranking/exports.py).
BEFORE_THE_MOVE = "9620031"


def seed(rows: int, *, rng: random.Random) -> int:
    """Fill the tables with enough ranked tasks for ``rows`` pairs; returns the task count."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from labeling.models import Conversation, Message
    from ranking.models import Assignment, Candidate, Ranking, RankingTask
    from sampler.models import GenerationJob, ModelVersion, Sample

    with connection.cursor() as cursor:
        cursor.execute(
            f'TRUNCATE auth_user, "{ModelVersion._meta.db_table}", '
            f'"{Conversation._meta.db_table}" RESTART IDENTITY CASCADE'
        )
    tasks = -(-rows // PAIRS_PER_TASK)
    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [user_model(username=f"user{i}", password="!") for i in range(20)]
    )
    writer, rankers = users[0].pk, [u.pk for u in users[1:]]
    version = ModelVersion.objects.create(name="bench-policy", path="/nonexistent", is_active=True)
    now = timezone.now()
    params = json.dumps(
        {
            "temperature": 0.8,
            "top_p": 0.9,
            "top_k": 0,
            "max_new_tokens": 96,
            "repetition_penalty": 1.0,
        }
    )
    words = ["the", "a", "weekend", "hiking", "book", "coffee", "music", "friend", "city"]
    words += ["rain", "movie", "dinner"]

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    # Ids: conversation t+1; messages 6t+1 (user), 6t+2 (source), 6t+3..6t+6 (alternatives).
    def conversation_rows():
        for t in range(tasks):
            yield t + 1, writer, "", "", "finished", "imported", 6 * t + 2, now, now, now

    prompts = {}

    def message_rows():
        for t in range(tasks):
            question = text(12) + "?"
            prompts[t] = question
            yield 6 * t + 1, t + 1, None, "user", question, "human", None, None, None, writer, now
            yield (
                6 * t + 2,
                t + 1,
                6 * t + 1,
                "assistant",
                text(25),
                "model",
                None,
                version.pk,
                None,
                None,
                now,
            )
            for a in range(CANDIDATES - 1):
                yield (
                    6 * t + 3 + a, t + 1, 6 * t + 1, "assistant", text(25), "model",
                    t * (CANDIDATES - 1) + a + 1, version.pk, None, None, now,
                )  # fmt: skip

    def job_rows():
        for t in range(tasks):
            prompt = json.dumps([{"role": "user", "content": prompts[t]}])
            yield (
                t + 1, version.pk, 6 * t + 1, prompt, "assistant", CANDIDATES - 1, params,
                rng.randint(0, 2**31 - 1), "ranking", "succeeded", "", "", None, "bench", 1,
                now, now, now, 100,
            )  # fmt: skip

    def sample_rows():
        for t in range(tasks):
            for a in range(CANDIDATES - 1):
                yield (
                    t * (CANDIDATES - 1) + a + 1,
                    t + 1,
                    a,
                    "sampled",
                    25,
                    "end_of_turn",
                    -30.5,
                    now,
                )

    def task_rows():
        for t in range(tasks):
            yield (
                t + 1, 6 * t + 2, 6 * t + 1, version.pk, writer, "complete",
                CANDIDATES - 1, RANKERS, RANKERS, 0, "", now, now, t + 1,
            )  # fmt: skip

    def candidate_rows():
        for t in range(tasks):
            for position in range(CANDIDATES):
                yield (
                    CANDIDATES * t + position + 1,
                    t + 1,
                    6 * t + 2 + position,
                    position == 0,
                    position,
                )

    assignment_rows, ranking_rows = [], []

    def fill_rankings():
        for t in range(tasks):
            for ranker in rng.sample(rankers, RANKERS):
                order = [CANDIDATES * t + p + 1 for p in range(CANDIDATES)]
                rng.shuffle(order)
                shown = json.dumps(order)
                key = len(assignment_rows) + 1
                assignment_rows.append(
                    (
                        key,
                        t + 1,
                        ranker,
                        "submitted",
                        shown,
                        "",
                        now,
                        now + timedelta(minutes=15),
                        now,
                    )
                )
                ranking_rows.append(
                    (key, t + 1, key, ranker, json.dumps([[c] for c in order]), False, "{}", "",
                     shown, now, now, 30000)
                )  # fmt: skip

    fill_rankings()
    with _db.foreign_key_triggers_off():
        _db.copy_rows(
            Conversation,
            ["id", "owner_id", "title", "instructions", "status", "source", "active_leaf_id",
             "created_at", "updated_at", "finished_at"],
            conversation_rows(),
        )  # fmt: skip
        _db.copy_rows(
            Message,
            ["id", "conversation_id", "parent_id", "role", "content", "origin", "sample_id",
             "model_version_id", "edit_distance", "author_id", "created_at"],
            message_rows(),
        )  # fmt: skip
        _db.copy_rows(
            GenerationJob,
            [
                "id",
                "model_version_id",
                "prefix_message_id",
                "prompt_messages",
                "role",
                "n",
                "params",
                "seed",
                "purpose",
                "status",
                "error",
                "notes",
                "requested_by_id",
                "worker",
                "attempts",
                "created_at",
                "started_at",
                "finished_at",
                "duration_ms",
            ],
            job_rows(),
        )
        _db.copy_rows(
            Sample,
            [
                "id",
                "job_id",
                "index",
                "text",
                "token_count",
                "finish_reason",
                "logprob_sum",
                "created_at",
            ],
            sample_rows(),
        )
        _db.copy_ranking_tables(
            task_rows(),
            candidate_rows(),
            assignment_rows,
            ranking_rows,
            task_columns=[*_db.RANKING_TASK_COLUMNS, "generation_job_id"],
        )
    _db.copied_tables_ready(
        (
            Conversation,
            Message,
            GenerationJob,
            Sample,
            RankingTask,
            Candidate,
            Assignment,
            Ranking,
        )
    )
    return tasks


def measure() -> None:
    """Child process: export every pair to a temporary file and report rows/s and peak RSS.

    Runs the code of the folder it was started in (this checkout, or a baseline's worktree).
    """
    sys.path.insert(0, os.getcwd())
    import django

    django.setup()
    try:
        from ranking.exports.filters import ExportFilters
        from ranking.exports.pipeline import records, write_jsonl
    except ImportError:  # a baseline from before the move: one module
        from ranking.exports import ExportFilters, records, write_jsonl

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        written = write_jsonl(records("pairs", ExportFilters()), Path(folder) / "pairs.jsonl")
        seconds = time.perf_counter() - started
    print(
        json.dumps({"rows": written.rows, "seconds": seconds, "peak_mib": _peak_rss_kib() / 1024})
    )


def refresh() -> None:
    """Child process: the periodic trust estimate over every ranking, as a worker runs it."""
    import django

    django.setup()
    from ranking.quality.services import trust_refresh_all

    started = time.perf_counter()
    trust_refresh_all()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_mib": _peak_rss_kib() / 1024}))


def _peak_rss_kib() -> int:
    """This process's own high-water mark. ``ru_maxrss`` is not: it survives exec, so a child
    would report the parent's peak (here, the seeding's)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _export_in(folder: Path, mode: str = "--measure") -> dict:
    child = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=folder,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def _baseline_checkout(revision: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="tandem-export-baseline-"))
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(folder), revision],
        check=True,
    )
    return folder


def _baseline_remove(folder: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], check=False
    )
    shutil.rmtree(folder, ignore_errors=True)


def _rate(result: dict) -> float:
    return result["rows"] / result["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--baseline", default=BEFORE_THE_MOVE)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--refresh", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        measure()
        return
    if arguments.refresh:
        refresh()
        return
    baseline = None if arguments.baseline == "none" else _baseline_checkout(arguments.baseline)
    try:
        _compare(arguments.rows, baseline, arguments.repeats)
    finally:
        if baseline is not None:
            _baseline_remove(baseline)


def _compare(row_counts: list[int], baseline: Path | None, repeats: int) -> None:

    _db.django_ready_on_postgresql()
    results, baseline_results = [], []
    for rows in row_counts:
        started = time.perf_counter()
        tasks = seed(rows, rng=random.Random(rows))
        seeded = time.perf_counter() - started
        print(f"seeded {tasks} tasks in {seeded:.0f} s", flush=True)
        estimate = _export_in(ROOT, "--refresh")
        print(
            f"  trust estimate (periodic task): {estimate['seconds']:.1f} s, "
            f"peak RSS {estimate['peak_mib']:.0f} MiB",
            flush=True,
        )
        # Alternate the sides so that a busy spell on the machine hits both; keep each best.
        ours, theirs = [], []
        for _ in range(repeats if baseline else 1):
            ours.append(_export_in(ROOT))
            print(f"  this checkout: {ours[-1]['rows']} pairs in {ours[-1]['seconds']:.1f} s")
            if baseline:
                theirs.append(_export_in(baseline))
                print(
                    f"  baseline:      {theirs[-1]['rows']} pairs in {theirs[-1]['seconds']:.1f} s"
                )
        results.append(max(ours, key=_rate))
        if baseline:
            baseline_results.append(max(theirs, key=_rate))
    print(f"\n{'pair rows':>10} {'rows/s':>10} {'peak RSS MiB':>13}")
    for result in results:
        rate = result["rows"] / result["seconds"]
        print(f"{result['rows']:>10} {rate:>10.0f} {result['peak_mib']:>13.0f}")
    if len(results) >= 2:
        first, last = results[0], results[-1]
        rate_ratio = (last["rows"] / last["seconds"]) / (first["rows"] / first["seconds"])
        print(
            f"ratio last/first: rows/s {rate_ratio:.2f}x, "
            f"peak RSS {last['peak_mib'] / first['peak_mib']:.2f}x"
        )
    for result, before in zip(results, baseline_results, strict=False):
        print(
            f"{result['rows']} rows: this checkout {_rate(result):.0f} rows/s vs baseline "
            f"{_rate(before):.0f} rows/s ({before['rows']} rows): "
            f"{_rate(result) / _rate(before):.2f}x; "
            f"peak RSS {result['peak_mib']:.0f} vs {before['peak_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()
