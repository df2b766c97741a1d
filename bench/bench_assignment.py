"""Claiming a ranking task and rendering the ranking page: 1k messages vs 1M, side by side.

Usage: .venv/bin/python bench/bench_assignment.py [--claims 50] [--explain]
       DATABASE_URL=postgres://... (default postgres://postgres@127.0.0.1:5432/tandem_bench;
       the database is created if missing, migrated, and its tables emptied for each scenario)

Each scenario seeds finished conversations of 10 turns (model-written assistant turns) with raw
COPY, one ranking task per 10 conversations (4 candidates each; most complete with 3 rankings,
1 % still READY but full with a live lease, so the claim query has to pass over them), and the
same frontier of 60 open tasks. Then ``--claims`` trainers who ranked the history each claim a
task, load GET /rank/ with that lease, and submit. Prints medians, SQL queries per operation,
and the B/A ratios (target: <= 1.5, queries constant).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _db  # noqa: E402 - needs the bench folder on sys.path

_db.django_environment("postgres://postgres@127.0.0.1:5432/tandem_bench")
# The test client's host must be allowed.
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")

# WhiteNoise warns that collectstatic never ran; pages render the same without it.
warnings.filterwarnings("ignore", message="No directory at")

TURNS_PER_CONVERSATION = 10
CONVERSATIONS_PER_TASK = 10
ALTERNATIVES = 3
OVERLAP = 3
FRONTIER_TASKS = 60  # open tasks, the same in both scenarios: only the history grows
HISTORY_TRAINERS = 60  # rank the history; the measured trainers are among them
LEASE_HOLDERS = 10  # hold the live leases that keep 1 % of history tasks READY but full
WARM_UP_CLAIMS = 5

SCENARIOS = {"A": 1_000, "B": 1_000_000}  # messages


@dataclass
class Scenario:
    name: str
    messages: int
    seed_seconds: float = 0.0
    claim_ms: list[float] | None = None
    claim_queries: list[int] | None = None
    page_ms: list[float] | None = None
    page_queries: list[int] | None = None
    submit_ms: list[float] | None = None
    submit_queries: list[int] | None = None
    page_mode: str = ""
    claim_sql: str = ""
    claim_params: tuple = ()


# ---- seeding ----------------------------------------------------------------------------------


def tables_empty() -> None:
    from django.db import connection

    from labeling.models import Conversation
    from sampler.models import ModelVersion

    user_table = "auth_user"
    with connection.cursor() as cursor:
        cursor.execute(
            f'TRUNCATE "{user_table}", "{ModelVersion._meta.db_table}", '
            f'"{Conversation._meta.db_table}", django_session RESTART IDENTITY CASCADE'
        )


def seed(messages: int, *, rng: random.Random) -> None:
    """Fill the tables for one scenario; ids are assigned here so rows can point at each other."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from accounts.services import trainer_group_ensure
    from labeling.models import Conversation, Message
    from ranking.models import Assignment, Candidate, Ranking, RankingTask
    from sampler.models import ModelVersion

    user_model = get_user_model()
    conversations = max(1, messages // TURNS_PER_CONVERSATION)
    history_tasks = max(1, conversations // CONVERSATIONS_PER_TASK)
    full_ready = max(1, history_tasks // 100)
    writers = max(5, conversations // 500)
    now = timezone.now()
    start = now - timedelta(days=365)

    group = trainer_group_ensure()
    usernames = (
        [f"writer{i}" for i in range(writers)]
        + [f"ranker{i}" for i in range(HISTORY_TRAINERS)]
        + [f"holder{i}" for i in range(LEASE_HOLDERS)]
    )
    users = user_model.objects.bulk_create(
        [user_model(username=name, password="!", date_joined=start) for name in usernames]
    )
    user_model.groups.through.objects.bulk_create(
        [user_model.groups.through(user_id=user.pk, group_id=group.pk) for user in users]
    )
    writer_ids = [u.pk for u in users[:writers]]
    ranker_ids = [u.pk for u in users[writers : writers + HISTORY_TRAINERS]]
    holder_ids = [u.pk for u in users[writers + HISTORY_TRAINERS :]]
    version = ModelVersion.objects.create(
        name="bench-policy", path="/nonexistent", is_active=True, activated_at=start
    )

    total_conversations = conversations + FRONTIER_TASKS
    # Tasks are built from the first assistant turn of every 10th conversation; the frontier's
    # conversations come last, one task each.
    task_conversations = [c * CONVERSATIONS_PER_TASK for c in range(history_tasks)] + list(
        range(conversations, total_conversations)
    )
    first_alternative_id = total_conversations * TURNS_PER_CONVERSATION + 1

    def message_id(conversation: int, turn: int) -> int:
        return conversation * TURNS_PER_CONVERSATION + turn + 1

    def when(index: int, total: int) -> object:
        return start + timedelta(seconds=index * (360 * 86400 / max(1, total)))

    def conversation_rows():
        for c in range(total_conversations):
            at = when(c, total_conversations)
            yield (
                c + 1,
                writer_ids[c % writers],
                f"Conversation {c}",
                "",
                Conversation.Status.FINISHED,
                Conversation.Source.IMPORTED,
                Conversation.Mode.NORMAL,
                message_id(c, TURNS_PER_CONVERSATION - 1),
                at,
                at,
                at,
            )

    def message_rows():
        for c in range(total_conversations):
            at = when(c, total_conversations)
            owner = writer_ids[c % writers]
            for turn in range(TURNS_PER_CONVERSATION):
                user_turn = turn % 2 == 0
                yield (
                    message_id(c, turn),
                    c + 1,
                    message_id(c, turn - 1) if turn else None,
                    "user" if user_turn else "assistant",
                    f"turn {turn} of conversation {c}: "
                    + (
                        "a question about the weekend?" if user_turn else "a reply the model wrote."
                    ),
                    "human" if user_turn else "model",
                    None if user_turn else version.pk,
                    owner if user_turn else None,
                    at + timedelta(seconds=turn),
                )
        for t, c in enumerate(task_conversations):
            for a in range(ALTERNATIVES):
                yield (
                    first_alternative_id + t * ALTERNATIVES + a,
                    c + 1,
                    message_id(c, 0),
                    "assistant",
                    f"alternative {a} sampled for task {t}.",
                    "model",
                    version.pk,
                    None,
                    when(c, total_conversations) + timedelta(hours=1),
                )

    def candidate_ids(t: int) -> list[int]:
        return [t * (ALTERNATIVES + 1) + p + 1 for p in range(ALTERNATIVES + 1)]

    # History: COMPLETE with 3 rankings, except the last 1 % (READY, 2 rankings + a live lease).
    def task_state(t: int) -> tuple[str, int, int]:
        if t >= history_tasks:
            return RankingTask.Status.READY, 0, 0
        if t >= history_tasks - full_ready:
            return RankingTask.Status.READY, OVERLAP - 1, 1
        return RankingTask.Status.COMPLETE, OVERLAP, 0

    def task_rows():
        for t, c in enumerate(task_conversations):
            status, rankings, leases = task_state(t)
            at = when(c, total_conversations) + timedelta(hours=1)
            yield (
                t + 1,
                message_id(c, 1),
                message_id(c, 0),
                version.pk,
                writer_ids[c % writers],
                status,
                ALTERNATIVES,
                OVERLAP,
                rankings,
                leases,
                "",
                at,
                at,
            )

    def candidate_rows():
        for t, c in enumerate(task_conversations):
            messages_of_task = [message_id(c, 1)] + [
                first_alternative_id + t * ALTERNATIVES + a for a in range(ALTERNATIVES)
            ]
            for position, (candidate, message) in enumerate(
                zip(candidate_ids(t), messages_of_task, strict=True)
            ):
                yield candidate, t + 1, message, position == 0, position

    assignment_rows, ranking_rows = [], []
    for t, c in enumerate(task_conversations[:history_tasks]):
        _, rankings, leases = task_state(t)
        at = when(c, total_conversations) + timedelta(days=1)
        for slot, ranker in enumerate(rng.sample(ranker_ids, rankings)):
            order = candidate_ids(t)
            rng.shuffle(order)
            shown = json.dumps(order)
            assignment_id = len(assignment_rows) + 1
            leased_at = at + timedelta(minutes=slot)
            closed_at = leased_at + timedelta(seconds=rng.randint(20, 300))
            assignment_rows.append(
                (
                    assignment_id,
                    t + 1,
                    ranker,
                    Assignment.Status.SUBMITTED,
                    shown,
                    "",
                    leased_at,
                    leased_at + timedelta(minutes=15),
                    closed_at,
                )
            )
            ranking_rows.append(
                (
                    len(ranking_rows) + 1,
                    t + 1,
                    assignment_id,
                    ranker,
                    json.dumps([[candidate] for candidate in order]),
                    False,
                    "{}",
                    "",
                    shown,
                    leased_at,
                    closed_at,
                    int((closed_at - leased_at).total_seconds() * 1000),
                )
            )
        for slot in range(leases):
            assignment_rows.append(
                (
                    len(assignment_rows) + 1,
                    t + 1,
                    holder_ids[(t + slot) % LEASE_HOLDERS],
                    Assignment.Status.LEASED,
                    json.dumps(candidate_ids(t)),
                    "",
                    now,
                    now + timedelta(days=1),
                    None,
                )
            )

    with _db.foreign_key_triggers_off():
        _db.copy_rows(
            Conversation,
            [
                "id",
                "owner_id",
                "title",
                "instructions",
                "status",
                "source",
                "mode",
                "active_leaf_id",
                "created_at",
                "updated_at",
                "finished_at",
            ],
            conversation_rows(),
        )
        _db.copy_rows(
            Message,
            [
                "id",
                "conversation_id",
                "parent_id",
                "role",
                "content",
                "origin",
                "model_version_id",
                "author_id",
                "created_at",
            ],
            message_rows(),
        )
        _db.copy_ranking_tables(task_rows(), candidate_rows(), assignment_rows, ranking_rows)
    _db.copied_tables_ready((Conversation, Message, RankingTask, Candidate, Assignment, Ranking))
    print(
        f"  seeded {Message.objects.count():,} messages, {Conversation.objects.count():,} "
        f"conversations, {RankingTask.objects.count():,} tasks "
        f"({RankingTask.objects.filter(status=RankingTask.Status.READY).count()} ready), "
        f"{Ranking.objects.count():,} rankings"
    )


# ---- measuring --------------------------------------------------------------------------------


def _timed(function: Callable[[], object]) -> tuple[object, float, list[dict]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = function()
        elapsed = (time.perf_counter() - started) * 1000
    return result, elapsed, queries.captured_queries


def measure(scenario: Scenario, *, claims: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from ranking.models import Candidate
    from ranking.rank import services
    from ranking.rank.selectors import assignment_screen

    trainers = list(
        get_user_model().objects.filter(username__startswith="ranker").order_by("username")
    )
    if claims + WARM_UP_CLAIMS > len(trainers):
        raise SystemExit(f"--claims is at most {len(trainers) - WARM_UP_CLAIMS}")
    results: dict[str, list] = {key: [] for key in ("claim", "page", "submit")}
    queries: dict[str, list] = {key: [] for key in ("claim", "page", "submit")}
    page_mode = "GET /rank/"
    for index, trainer in enumerate(trainers[: claims + WARM_UP_CLAIMS]):
        recorded = index >= WARM_UP_CLAIMS
        assignment, claim_ms, claim_queries = _timed(
            lambda trainer=trainer: services.task_claim_next(trainer=trainer)
        )
        if assignment is None:
            raise SystemExit(f"no task for {trainer}: the frontier is too small")
        if not scenario.claim_sql:
            for query in claim_queries:
                if "SKIP LOCKED" in query["sql"]:
                    scenario.claim_sql = query["sql"]

        client = Client()
        client.force_login(trainer)

        def page(client=client, trainer=trainer):
            return client.get("/rank/")

        def selectors(trainer=trainer):
            return assignment_screen(assignment=services.task_claim_next(trainer=trainer))

        shown_first = Candidate.objects.get(pk=assignment.presentation_order[0]).message.content
        response, page_ms, page_queries = _timed(page)
        if response.status_code != 200 or shown_first not in response.content.decode():
            # The ranking page is not there yet: time what it would run (claim + selectors).
            page_mode = "claim + assignment_screen (page not ready)"
            _, page_ms, page_queries = _timed(selectors)

        ordering = [[candidate] for candidate in assignment.presentation_order]
        _, submit_ms, submit_queries = _timed(
            lambda assignment=assignment, trainer=trainer, ordering=ordering: (
                services.ranking_submit(
                    assignment=assignment,
                    trainer=trainer,
                    ranking=services.RankingInput(ordering),
                )
            )
        )
        if recorded:
            for key, ms, captured in (
                ("claim", claim_ms, claim_queries),
                ("page", page_ms, page_queries),
                ("submit", submit_ms, submit_queries),
            ):
                results[key].append(ms)
                queries[key].append(len(captured))
    connection.close()
    scenario.claim_ms, scenario.claim_queries = results["claim"], queries["claim"]
    scenario.page_ms, scenario.page_queries = results["page"], queries["page"]
    scenario.submit_ms, scenario.submit_queries = results["submit"], queries["submit"]
    scenario.page_mode = page_mode


def explain_claim(sql: str) -> str:
    """EXPLAIN ANALYZE of the claim's locking query, in a transaction that is rolled back."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    return plan


def _queries(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}-{high}"


def report(a: Scenario, b: Scenario) -> list[str]:
    print()
    print(f"page timed as: {b.page_mode}")
    header = f"{'':24}{'A: ' + format(a.messages, ','):>16}{'B: ' + format(b.messages, ','):>16}"
    print(header + f"{'B/A':>8}")
    print(f"{'seeding (s)':24}{a.seed_seconds:>16.1f}{b.seed_seconds:>16.1f}")
    bad = []
    for label, key in (("claim", "claim"), ("page", "page"), ("submit", "submit")):
        times_a, times_b = getattr(a, f"{key}_ms"), getattr(b, f"{key}_ms")
        median_a, median_b = statistics.median(times_a), statistics.median(times_b)
        ratio = median_b / median_a
        p90_a = statistics.quantiles(times_a, n=10)[-1]
        p90_b = statistics.quantiles(times_b, n=10)[-1]
        print(f"{label + ' median (ms)':24}{median_a:>16.2f}{median_b:>16.2f}{ratio:>7.2f}x")
        print(f"{label + ' p90 (ms)':24}{p90_a:>16.2f}{p90_b:>16.2f}{p90_b / p90_a:>7.2f}x")
        queries_a, queries_b = getattr(a, f"{key}_queries"), getattr(b, f"{key}_queries")
        same = (
            "same"
            if (min(queries_a), max(queries_a)) == (min(queries_b), max(queries_b))
            else "DIFFER"
        )
        counts = f"{_queries(queries_a):>16}{_queries(queries_b):>16}"
        print(f"{label + ' SQL queries':24}{counts}{same:>8}")
        if ratio > 1.5 or same != "same":
            bad.append(label)
    verdict = "MISSED for " + ", ".join(bad) if bad else "met"
    print(f"target: B/A <= 1.5 and constant queries -> {verdict}")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=50)
    parser.add_argument("--explain", action="store_true", help="always print the B claim plan")
    parser.add_argument("--scenarios", default="A,B", help="which of A,B to run")
    arguments = parser.parse_args()

    _db.django_ready_on_postgresql()

    ran: dict[str, Scenario] = {}
    for name in arguments.scenarios.split(","):
        scenario = Scenario(name=name, messages=SCENARIOS[name])
        print(f"scenario {name}: {scenario.messages:,} messages")
        started = time.perf_counter()
        tables_empty()
        seed(scenario.messages, rng=random.Random(0))
        scenario.seed_seconds = time.perf_counter() - started
        print(f"  seeding took {scenario.seed_seconds:.1f} s")
        measure(scenario, claims=arguments.claims)
        ran[name] = scenario
    if {"A", "B"} <= ran.keys():
        bad = report(ran["A"], ran["B"])
        last = ran["B"]
        if (arguments.explain or "claim" in bad) and last.claim_sql:
            print("\nEXPLAIN ANALYZE of the claim query at B (a fresh trainer, rolled back):")
            print(explain_claim(last.claim_sql))
    else:
        for scenario in ran.values():
            print(
                f"{scenario.name} (page timed as {scenario.page_mode}): "
                f"claim {statistics.median(scenario.claim_ms):.2f} ms "
                f"page {statistics.median(scenario.page_ms):.2f} ms "
                f"submit {statistics.median(scenario.submit_ms):.2f} ms"
            )


if __name__ == "__main__":
    main()
