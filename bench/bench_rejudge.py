"""The sweep's search for replies to judge again, in the steady state (none to judge): the
unbounded query it ran before vs the bounded walk, side by side on the same rows.

Usage: .venv/bin/python bench/bench_rejudge.py [--messages 200000] [--runs 40]
       DATABASE_URL=postgres://... (default postgres://postgres@127.0.0.1:5432/tandem_bench;
       the database is created if missing, migrated, and its conversations emptied)

Seeds ``--messages`` messages with raw COPY: conversations of 10 turns, every other one a
model's reply with no sample (an imported one), each recorded as judged by the filter
configured now, so there is nothing to judge again. Then times, ``--runs`` times each: the
query ``message_texts_rejudge`` ran before (the oldest 2000 model-written messages whose text
is no sample's, judged by another filter: it reads the whole table, joined with the samples),
and ``message_texts_rejudge`` as it is now (the next ``SWEEP_SCAN_MESSAGES`` messages of the
stored walk, the walk moved on). Prints the median and worst time of a run, its SQL queries,
and how many runs the walk takes to go through the table.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _db  # noqa: E402 - needs the bench folder on sys.path

_db.django_environment("postgres://postgres@127.0.0.1:5432/tandem_bench")

TURNS_PER_CONVERSATION = 10
# The sweep's bound on the texts a run filters (``tasks.SWEEP_MAX_TEXTS``).
MOST = 2000


def seed(messages: int) -> None:
    """Empty the conversations and fill them with ``messages`` turns, all judged already."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from labeling.models import Conversation, Message, MessageWalk
    from sampler.moderation.filters import content_filter_get

    with connection.cursor() as cursor:
        cursor.execute(
            f'TRUNCATE "{Conversation._meta.db_table}", "{MessageWalk._meta.db_table}" '
            "RESTART IDENTITY CASCADE"
        )
    content_filter = content_filter_get()
    owner, _ = get_user_model().objects.get_or_create(username="bench-rejudge")
    now = timezone.now()
    conversations = math.ceil(messages / TURNS_PER_CONVERSATION)

    def conversation_rows():
        for c in range(conversations):
            yield (
                c + 1,
                owner.pk,
                f"Conversation {c}",
                "",
                Conversation.Status.FINISHED,
                Conversation.Source.IMPORTED,
                Conversation.Mode.NORMAL,
                now,
                now,
            )

    def message_rows():
        for m in range(messages):
            model_turn = m % 2 == 1
            yield (
                m + 1,
                m // TURNS_PER_CONVERSATION + 1,
                None if m % TURNS_PER_CONVERSATION == 0 else m,
                Message.Role.ASSISTANT if model_turn else Message.Role.USER,
                f"turn {m}: some words of a reply, as long as a short one.",
                Message.Origin.MODEL if model_turn else Message.Origin.HUMAN,
                content_filter.name if model_turn else "",
                content_filter.version if model_turn else "",
                now,
            )

    with _db.foreign_key_triggers_off():
        _db.copy_rows(
            Conversation,
            ["id", "owner_id", "title", "instructions", "status", "source", "mode",
             "created_at", "updated_at"],
            conversation_rows(),
        )  # fmt: skip
        _db.copy_rows(
            Message,
            ["id", "conversation_id", "parent_id", "role", "content", "origin",
             "text_filter_name", "text_filter_version", "created_at"],
            message_rows(),
        )  # fmt: skip
    _db.copied_tables_ready((Conversation, Message))


def unbounded_search() -> int:
    """The search ``message_texts_rejudge`` ran before the walk: every message looked at."""
    from django.db.models import F, Q

    from labeling.models import Message
    from sampler.moderation.filters import content_filter_get

    content_filter = content_filter_get()
    return len(
        Message.objects.filter(
            Q(sample__isnull=True) | ~Q(content=F("sample__text")),
            origin__in=[Message.Origin.MODEL, Message.Origin.MODEL_EDITED],
            text_moderation_pending=False,
        )
        .exclude(text_filter_name=content_filter.name, text_filter_version=content_filter.version)
        .order_by("pk")
        .values_list("pk", flat=True)[:MOST]
    )


def bounded_search() -> int:
    """``message_texts_rejudge`` now: the next share of the walk."""
    from labeling.conversations.services import message_texts_rejudge
    from labeling.conversations.tasks import SWEEP_SCAN_MESSAGES

    return message_texts_rejudge(most=MOST, scan=SWEEP_SCAN_MESSAGES)


def timed(search, runs: int) -> tuple[list[float], int]:
    """Milliseconds of each run, and the SQL queries of one."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    milliseconds = []
    for _ in range(runs):
        started = time.perf_counter()
        found = search()
        milliseconds.append((time.perf_counter() - started) * 1000)
        assert found == 0, "nothing should need judging again"
    with CaptureQueriesContext(connection) as queries:
        search()
    return milliseconds, len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=40)
    arguments = parser.parse_args()

    _db.django_ready_on_postgresql()
    from labeling.conversations.tasks import SWEEP_SCAN_MESSAGES

    started = time.perf_counter()
    seed(arguments.messages)
    print(f"seeded {arguments.messages:,} messages in {time.perf_counter() - started:.1f} s")

    before, before_queries = timed(unbounded_search, arguments.runs)
    after, after_queries = timed(bounded_search, arguments.runs)
    print(f"{'one steady-state run':28}{'before (unbounded)':>20}{'after (walk)':>16}{'ratio':>8}")
    for label, pick in (("median (ms)", statistics.median), ("worst (ms)", max)):
        old, new = pick(before), pick(after)
        print(f"{label:28}{old:>20.2f}{new:>16.2f}{old / new:>7.1f}x")
    print(f"{'SQL queries':28}{before_queries:>20}{after_queries:>16}")
    looked_at = min(arguments.messages, SWEEP_SCAN_MESSAGES)
    print(
        f"{'messages looked at':28}{arguments.messages:>20,}{looked_at:>16,}"
        f"   (the walk goes through the table in "
        f"{math.ceil(arguments.messages / SWEEP_SCAN_MESSAGES)} runs)"
    )


if __name__ == "__main__":
    main()
