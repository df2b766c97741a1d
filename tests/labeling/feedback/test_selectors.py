"""Feedback counts as the exports read them: per candidate, on the message and on its sample."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import user_create_trainer
from labeling.feedback import selectors as feedback_selectors
from labeling.feedback import services as feedback_services
from ranking.exports.filters import ExportFilters
from ranking.exports.rankings import ranking_records
from ranking.rank import services as ranking_services
from ranking.rank.services import RankingInput
from tests.conftest import PASSWORD
from tests.ranking.conftest import tasks_prepared


def test_rankings_export_carries_moderation_and_feedback_per_candidate(
    flag_everything, policy, other_trainer, admin_user
):
    flag_everything.RANKING_MAX_NEW_TOKENS = 8
    tasks = tasks_prepared(other_trainer, 2, overlap=1)
    ranker = user_create_trainer(username="ranker", password=PASSWORD)
    for _ in tasks:
        assignment = ranking_services.task_claim_next(trainer=ranker)
        ids = sorted(assignment.task.candidates.values_list("id", flat=True))
        ranking_services.ranking_submit(
            assignment=assignment,
            trainer=ranker,
            ranking=RankingInput([[candidate] for candidate in ids]),
        )
    task = tasks[0]
    source = task.candidates.get(is_source=True).message
    sampled = task.candidates.filter(is_source=False).order_by("position").first().message
    for kind, target_id in [("message", source.pk), ("sample", sampled.sample_id)]:
        target = feedback_selectors.feedback_target_get(
            kind=kind, target_id=target_id, user=admin_user
        )
        feedback_services.feedback_rate(user=admin_user, target=target, rating="down")
        if kind == "sample":
            feedback_services.feedback_report(
                user=admin_user, target=target, categories=["untruthful"], filter_wrong=True
            )

    with CaptureQueriesContext(connection) as queries:
        records = list(ranking_records(ExportFilters()))
    # Once: the stored trust estimate (none here) and the rankings trust is estimated from.
    # Per chunk: tasks, candidates, moderation, feedback, rankings, and the empty next chunk.
    assert len(queries) <= 8
    assert len(records) == 2

    record = next(r for r in records if r["task_id"] == task.pk)
    by_message = {c["message_id"]: c for c in record["candidates"]}
    # Written without a sample: filtered on its own text as the task was prepared.
    assert by_message[source.pk]["moderation"]["flagged"] is True
    assert by_message[source.pk]["feedback"]["down"] == 1
    moderation = by_message[sampled.pk]["moderation"]
    assert moderation["filter"] == "flag-everything" and moderation["flagged"] is True
    assert moderation["categories"] == ["everything"] and moderation["version"]
    assert by_message[sampled.pk]["feedback"] == {
        "up": 0,
        "down": 1,
        "reports": {
            "harmful": 0,
            "untruthful": 1,
            "biased": 0,
            "refuses_wrongly": 0,
            "other": 0,
        },
    }
