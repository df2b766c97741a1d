import json
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.services import user_create_trainer
from ranking.exports.filters import ExportFilters
from ranking.exports.rankings import ranking_records
from ranking.models import Assignment, Ranking, RankingTask
from ranking.rank import services
from ranking.rank.models import UndoRemoval
from ranking.rank.services import RankingInput
from ranking.rank.tasks import delete_expired_undo_removals
from tests.conftest import PASSWORD, post_json
from tests.ranking.conftest import quick_tasks, submit_by_positions

CLAIM_URL = "/api/ranking/claim/"


def _post(client: Client, url: str, data: object = None):
    return client.post(
        url, json.dumps({} if data is None else data), content_type="application/json"
    )


def _submit_url(assignment_id: int) -> str:
    return f"/api/ranking/assignments/{assignment_id}/submit/"


def _skip_url(assignment_id: int) -> str:
    return f"/api/ranking/assignments/{assignment_id}/skip/"


@pytest.fixture
def third_trainer(db):
    return user_create_trainer(username="thea", password=PASSWORD)


def test_claim_returns_the_prefix_and_candidates_in_presentation_order(ready_task, trainer_client):
    response = _post(trainer_client, CLAIM_URL)
    assert response.status_code == 200, response.content
    body = response.json()
    assignment = Assignment.objects.get(pk=body["assignment_id"])
    assert body["task_id"] == ready_task.pk
    assert body["expires_at"]
    assert body["prefix"] == [{"role": "user", "content": "hi"}]
    # Each reply by the number it is shown under, in the order shown.
    assert [c["id"] for c in body["candidates"]] == [1, 2, 3, 4]
    texts = dict(ready_task.candidates.values_list("id", "message__content"))
    assert [c["text"] for c in body["candidates"]] == [
        texts[cid] for cid in assignment.presentation_order
    ]
    # Claiming again hands back the same lease.
    assert _post(trainer_client, CLAIM_URL).json()["assignment_id"] == assignment.pk


def test_claiming_again_shows_the_same_order_and_the_configured_lease(
    ready_task, trainer_client, trainer, settings
):
    settings.RANKING_LEASE_SECONDS = 120
    claims = [_post(trainer_client, CLAIM_URL).json() for _ in range(5)]
    assignment = Assignment.objects.get(trainer=trainer)
    # A reshuffle on each claim would repeat the order only 1 time in 24.
    texts = dict(assignment.task.candidates.values_list("id", "message__content"))
    for claim in claims:
        assert [c["text"] for c in claim["candidates"]] == [
            texts[cid] for cid in assignment.presentation_order
        ]
    expires_at = datetime.fromisoformat(claims[0]["expires_at"])
    assert expires_at == assignment.expires_at
    assert abs(expires_at - assignment.leased_at - timedelta(seconds=120)) < timedelta(seconds=1)


def test_claim_answers_204_when_no_task_is_ready_and_says_why(trainer_client):
    response = _post(trainer_client, CLAIM_URL)
    assert response.status_code == 204 and response.content == b""
    # Nothing to build a task from: the reason the Rank page gives.
    assert response.headers["Tandem-Waiting-Reason"] == "no_conversations"


def test_submit_stores_the_ranking_and_a_second_submit_is_a_409(ready_task, trainer_client):
    claim = _post(trainer_client, CLAIM_URL).json()
    ids = [c["id"] for c in claim["candidates"]]
    payload = {
        "ordering": [[ids[0]], [ids[1], ids[2]], [ids[3]]],
        "flags": {str(ids[3]): ["harmful", "other"]},
        "flag_notes": {str(ids[3]): "insults the user"},
        "rationale": "first one answers",
    }
    response = _post(trainer_client, _submit_url(claim["assignment_id"]), payload)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["ordering"] == payload["ordering"]
    assert body["flags"] == {
        str(ids[3]): {"flags": ["harmful", "other"], "note": "insults the user"}
    }
    assert body["presentation_order"] == ids
    assert Ranking.objects.get(pk=body["id"]).task_id == ready_task.pk

    again = _post(trainer_client, _submit_url(claim["assignment_id"]), payload)
    assert again.status_code == 409
    assert "already ranked" in again.json()["detail"]
    ready_task.refresh_from_db()
    assert (ready_task.rankings_count, ready_task.leased_count) == (1, 0)


def test_a_submit_retried_with_an_idempotency_key_gets_its_ranking_back_not_a_409(
    ready_task, trainer_client
):
    """Without a key the lease already refuses a second ranking (409, above); with one, the
    retry of a submit whose answer was lost gets that answer."""
    claim = _post(trainer_client, CLAIM_URL).json()
    ids = [c["id"] for c in claim["candidates"]]
    payload = {"ordering": [[i] for i in ids], "rationale": "in order"}
    url = _submit_url(claim["assignment_id"])
    first = post_json(trainer_client, url, payload, idempotency_key="submit-1")
    retried = post_json(trainer_client, url, payload, idempotency_key="submit-1")
    assert first.status_code == retried.status_code == 201, retried.content
    assert retried.json() == first.json()
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert Ranking.objects.filter(task=ready_task).count() == 1


def test_cannot_rank_is_accepted_without_an_ordering(ready_task, trainer_client):
    claim = _post(trainer_client, CLAIM_URL).json()
    response = _post(
        trainer_client,
        _submit_url(claim["assignment_id"]),
        {"cannot_rank": True, "rationale": "all gibberish"},
    )
    assert response.status_code == 201, response.content
    assert response.json()["cannot_rank"] is True and response.json()["ordering"] == []


@pytest.mark.parametrize(
    ("make_payload", "field", "message"),
    [
        (lambda ids: {"ordering": "best first"}, "ordering", "list"),
        (lambda ids: {"ordering": [ids]}, "ordering", "All replies are tied"),
        (lambda ids: {"ordering": [[ids[0]], ids[1:3]]}, "ordering", "1 missing"),
        (lambda ids: {"ordering": [[i] for i in ids] + [[ids[0]]]}, "ordering", "twice"),
        (lambda ids: {"ordering": [[1.5]]}, "ordering", "integer"),
        (lambda ids: {"ordering": [["x"]]}, "ordering", "integer"),
        (lambda ids: {"ordering": [ids[0]]}, "ordering", "list"),
        (lambda ids: {"ordering": [[i] for i in range(1, 100)]}, "ordering", "64"),
        (lambda ids: {"ordering": None}, "ordering", "null"),
        (lambda ids: {"ordering": [[i] for i in ids], "flags": {"x": ["harmful"]}}, "flags", "id"),
        (lambda ids: {"ordering": [[i] for i in ids], "flags": {ids[0]: "rude"}}, "flags", "list"),
        (lambda ids: {"ordering": [[i] for i in ids], "flags": [1]}, "flags", "dictionary"),
        # Keys are reply ids as written: no leading zero, no 5,000-digit number (a 400, not a
        # conversion error).
        (
            lambda ids: {"ordering": [[i] for i in ids], "flags": {f"0{ids[0]}": ["harmful"]}},
            "flags",
            "reply id",
        ),
        (
            lambda ids: {"ordering": [[i] for i in ids], "flags": {"9" * 5000: ["harmful"]}},
            "flags",
            "reply id",
        ),
        (
            lambda ids: {"ordering": [[i] for i in ids], "flag_notes": {"9" * 5000: "x"}},
            "flag_notes",
            "reply id",
        ),
        (
            lambda ids: {"ordering": [[i] for i in ids], "flags": {ids[0]: ["boring"]}},
            "flags",
            "Unknown flag: boring",
        ),
        (
            lambda ids: {"ordering": [[i] for i in ids], "flags": {ids[0]: ["other"]}},
            "flags",
            "Say what the problem is",
        ),
        (
            lambda ids: {"ordering": [[i] for i in ids], "rationale": "x" * 4001},
            "rationale",
            "4000",
        ),
        (lambda ids: {"ordering": [[i] for i in ids], "rationale": 5 * [1]}, "rationale", ""),
        (lambda ids: {"cannot_rank": True}, "rationale", "Say why"),
        (lambda ids: {"cannot_rank": True, "rationale": "  "}, "rationale", "Say why"),
    ],
)
def test_bad_submissions_are_400_with_a_message_for_the_field(
    ready_task, trainer_client, make_payload, field, message
):
    claim = _post(trainer_client, CLAIM_URL).json()
    ids = [c["id"] for c in claim["candidates"]]
    response = _post(trainer_client, _submit_url(claim["assignment_id"]), make_payload(ids))
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert message in json.dumps(response.json()[field])
    assert Assignment.objects.get(pk=claim["assignment_id"]).status == Assignment.Status.LEASED


@pytest.mark.parametrize("body", ["[1, 2]", '"ordering"', "{not json"])
def test_a_body_that_is_not_an_object_is_a_400(ready_task, trainer_client, body):
    claim = _post(trainer_client, CLAIM_URL).json()
    response = trainer_client.post(
        _submit_url(claim["assignment_id"]), body, content_type="application/json"
    )
    assert response.status_code == 400, response.content


def test_someone_elses_assignment_is_a_404(ready_task, trainer_client, third_trainer):
    theirs = services.task_claim_next(trainer=third_trainer)
    ids = theirs.presentation_order
    response = _post(trainer_client, _submit_url(theirs.pk), {"ordering": [[i] for i in ids]})
    assert response.status_code == 404
    assert _post(trainer_client, _skip_url(theirs.pk)).status_code == 404
    assert Assignment.objects.get(pk=theirs.pk).status == Assignment.Status.LEASED


def _next_lease_given_back(client: Client, owner) -> int:
    """Through ``client``: rank a task, claim the next one, then take the ranking back (the
    Rank page's Undo, the one door to it), which gives the lease on the next task back. The
    id that lease had."""
    first, second = quick_tasks(owner, 2)
    claim = _post(client, CLAIM_URL).json()
    assert claim["task_id"] == first.pk
    ranked = _post(client, _submit_url(claim["assignment_id"]), {"ordering": [[1], [2], [3], [4]]})
    assert ranked.status_code == 201, ranked.content
    following = _post(client, CLAIM_URL).json()
    assert following["task_id"] == second.pk
    assert client.post(reverse("ranking:undo", args=[ranked.json()["id"]])).status_code == 302
    assert not Assignment.objects.filter(pk=following["assignment_id"]).exists()
    return following["assignment_id"]


@pytest.mark.parametrize(
    "payload",
    [{"ordering": [[1], [2], [3], [4]]}, {"ordering": [[1], [9]]}, {"verdict": "all_bad"}],
)
def test_a_submit_or_skip_on_a_lease_an_undo_gave_back_is_a_409_saying_so_not_a_404(
    trainer_client, trainer, other_trainer, settings, payload
):
    """A stale tab (or a submit racing the undo) still showing the next task hears that its
    claim is gone, as for every other claim that is, not that the task never existed; before
    anything is said about the answer."""
    settings.RANKING_UNDO_SECONDS = 600
    given_back = _next_lease_given_back(trainer_client, other_trainer)

    submit = _post(trainer_client, _submit_url(given_back), payload)
    skip = _post(trainer_client, _skip_url(given_back), {"reason": "stale tab"})

    for response in (submit, skip):
        assert response.status_code == 409, response.content
        assert response.json()["detail"] == (
            "This task is no longer yours: it was given back when you took back your previous "
            "ranking, and nothing was stored. Take the next task."
        )
    assert not Ranking.objects.filter(ranker=trainer).exists()
    assert not Assignment.objects.filter(pk=given_back).exists()


def test_a_lease_an_undo_gave_back_is_a_404_to_any_other_trainer_as_an_unknown_id_is(
    trainer_client, other_trainer, third_trainer, settings
):
    settings.RANKING_UNDO_SECONDS = 600
    given_back = _next_lease_given_back(trainer_client, other_trainer)
    intruder = Client()
    intruder.force_login(third_trainer)
    unknown = given_back + 1000

    assert _post(intruder, _submit_url(given_back), {"ordering": [[1], [2]]}).status_code == 404
    assert _post(intruder, _skip_url(given_back)).status_code == 404
    assert _post(trainer_client, _submit_url(unknown), {"ordering": [[1], [2]]}).status_code == 404
    assert _post(trainer_client, _skip_url(unknown)).status_code == 404


def test_the_periodic_task_forgets_what_an_undo_removed_past_its_ttl_and_keeps_the_rest(
    trainer_client, trainer, other_trainer, settings
):
    """What an undo removed is remembered ``UNDO_REMOVAL_TTL_SECONDS``: until then a stale
    tab's request on it is still a 409; older memos are deleted by the periodic task, and the
    id is then a 404, as an unknown one is."""
    settings.RANKING_UNDO_SECONDS = 600
    settings.UNDO_REMOVAL_TTL_SECONDS = 3600
    given_back = _next_lease_given_back(trainer_client, other_trainer)
    past_ttl = timezone.now() - timedelta(seconds=3601)
    old = UndoRemoval.objects.create(
        trainer=trainer, assignment_id=given_back + 1000, removed_at=past_ttl
    )
    assert _post(trainer_client, _skip_url(old.assignment_id)).status_code == 409

    assert delete_expired_undo_removals() == 1

    assert not UndoRemoval.objects.filter(pk=old.pk).exists()
    assert _post(trainer_client, _skip_url(old.assignment_id)).status_code == 404
    submit = _post(trainer_client, _submit_url(given_back), {"ordering": [[1], [2], [3], [4]]})
    assert submit.status_code == 409, submit.content
    # The ranking taken back and the lease given back with it, once past the TTL too.
    UndoRemoval.objects.update(removed_at=past_ttl)
    assert delete_expired_undo_removals() == 2
    submit = _post(trainer_client, _submit_url(given_back), {"ordering": [[1], [2], [3], [4]]})
    assert submit.status_code == 404, submit.content


def test_skip_gives_the_task_back_and_it_is_not_offered_again(ready_task, trainer_client):
    claim = _post(trainer_client, CLAIM_URL).json()
    response = _post(trainer_client, _skip_url(claim["assignment_id"]), {"reason": "not English"})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "skipped"
    assert response.json()["skip_reason"] == "not English"
    ready_task.refresh_from_db()
    assert ready_task.leased_count == 0
    response = _post(trainer_client, CLAIM_URL)
    assert response.status_code == 204
    # The task is still open, but not to this trainer.
    assert response.headers["Tandem-Waiting-Reason"] == "ranked_everything"


@pytest.mark.parametrize("verdict", ["all_equal", "all_bad", "cannot_rank"])
def test_the_api_takes_every_verdict_with_a_reason_and_no_ordering(
    ready_task, trainer_client, verdict
):
    claim = _post(trainer_client, CLAIM_URL).json()
    url = _submit_url(claim["assignment_id"])
    ids = [c["id"] for c in claim["candidates"]]
    without_reason = _post(trainer_client, url, {"verdict": verdict})
    assert without_reason.status_code == 400 and "rationale" in without_reason.json()
    with_order = _post(
        trainer_client,
        url,
        {"verdict": verdict, "rationale": "why", "ordering": [[i] for i in ids]},
    )
    assert with_order.status_code == 400 and "ordering" in with_order.json()
    assert not Ranking.objects.exists()

    response = _post(trainer_client, url, {"verdict": verdict, "rationale": "why"})

    assert response.status_code == 201, response.content
    assert response.json()["verdict"] == verdict
    stored = Ranking.objects.get()
    assert stored.verdict == verdict and stored.rationale == "why"
    assert stored.cannot_rank is (verdict != "all_equal")
    order = Assignment.objects.get(pk=claim["assignment_id"]).presentation_order
    assert stored.ordering == ([order] if verdict == "all_equal" else [])
    assert response.json()["ordering"] == ([ids] if verdict == "all_equal" else [])


def test_an_unknown_verdict_or_one_contradicting_cannot_rank_is_a_400(ready_task, trainer_client):
    claim = _post(trainer_client, CLAIM_URL).json()
    url = _submit_url(claim["assignment_id"])
    unknown = _post(trainer_client, url, {"verdict": "meh", "rationale": "x"})
    assert unknown.status_code == 400 and "verdict" in unknown.json()
    both = _post(
        trainer_client, url, {"verdict": "all_equal", "cannot_rank": True, "rationale": "x"}
    )
    assert both.status_code == 400 and "verdict" in both.json()
    assert not Ranking.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"ordering": [[1], [2], [3], [9]]},  # a number no reply was shown under
        {"ordering": [[1], [2], [3], [4]], "flags": {"9": ["harmful"]}},
        {"ordering": [[1], [2]]},  # replies left out
        {"verdict": "all_bad"},  # no reason given
    ],
)
def test_a_submit_on_a_lease_that_ran_out_on_a_full_task_is_a_409_before_its_content(
    ready_task, trainer_client, trainer, third_trainer, payload
):
    """A stale tab hears that its claim is gone, not what to fix in an answer that could not be
    stored anyway."""
    claim = _post(trainer_client, CLAIM_URL).json()
    Assignment.objects.filter(pk=claim["assignment_id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    for other in (third_trainer, user_create_trainer(username="fourth", password=PASSWORD)):
        submit_by_positions(services.task_claim_next(trainer=other), other, [[0], [1], [2], [3]])

    response = _post(trainer_client, _submit_url(claim["assignment_id"]), payload)

    assert response.status_code == 409, response.content
    assert "Your lease on this task ran out" in response.json()["detail"]
    assert not Ranking.objects.filter(ranker=trainer).exists()


def test_a_second_submit_naming_unknown_replies_is_told_the_task_is_ranked(
    ready_task, trainer_client
):
    claim = _post(trainer_client, CLAIM_URL).json()
    url = _submit_url(claim["assignment_id"])
    assert _post(trainer_client, url, {"ordering": [[1], [2], [3], [4]]}).status_code == 201

    again = _post(trainer_client, url, {"ordering": [[1], [2], [3], [7]]})

    assert again.status_code == 409
    assert "already ranked" in again.json()["detail"]


def test_skipping_a_ranked_task_is_a_409(ready_task, trainer_client):
    claim = _post(trainer_client, CLAIM_URL).json()
    ids = [c["id"] for c in claim["candidates"]]
    ranked = _post(
        trainer_client, _submit_url(claim["assignment_id"]), {"ordering": [[i] for i in ids]}
    )
    assert ranked.status_code == 201, ranked.content
    response = _post(trainer_client, _skip_url(claim["assignment_id"]))
    assert response.status_code == 409
    assert "cannot be skipped" in response.json()["detail"]
    assert Assignment.objects.get(pk=claim["assignment_id"]).status == Assignment.Status.SUBMITTED


def test_skipping_twice_answers_the_same_and_frees_the_slot_once(ready_task, trainer_client):
    claim = _post(trainer_client, CLAIM_URL).json()
    first = _post(trainer_client, _skip_url(claim["assignment_id"]), {"reason": "a"})
    second = _post(trainer_client, _skip_url(claim["assignment_id"]), {"reason": "b"})
    assert first.status_code == second.status_code == 200
    assert second.json()["skip_reason"] == "a"
    ready_task.refresh_from_db()
    assert ready_task.leased_count == 0


def test_a_flag_note_on_a_reply_outside_the_task_is_reported_under_flag_notes(
    ready_task, trainer_client
):
    claim = _post(trainer_client, CLAIM_URL).json()
    ids = [c["id"] for c in claim["candidates"]]
    body = {"ordering": [[i] for i in ids], "flag_notes": {str(max(ids) + 1000): "odd"}}
    response = _post(trainer_client, _submit_url(claim["assignment_id"]), body)
    assert response.status_code == 400
    assert "flag_notes" in response.json()
    assert "flags" not in response.json()
    assert not Ranking.objects.exists()


def test_skip_reason_over_the_limit_is_a_400(ready_task, trainer_client):
    claim = _post(trainer_client, CLAIM_URL).json()
    response = _post(trainer_client, _skip_url(claim["assignment_id"]), {"reason": "x" * 501})
    assert response.status_code == 400
    assert "reason" in response.json()


@pytest.mark.parametrize(
    ("action", "make_payload", "field", "sentence"),
    [
        (
            "skip",
            lambda ids: {"reason": "x" * (services.MAX_SKIP_REASON_CHARS + 1)},
            "reason",
            services.SKIP_REASON_TOO_LONG,
        ),
        (
            "submit",
            lambda ids: {
                "ordering": [[i] for i in ids],
                "rationale": "x" * (services.MAX_RATIONALE_CHARS + 1),
            },
            "rationale",
            services.RATIONALE_TOO_LONG,
        ),
        (
            "submit",
            lambda ids: {
                "ordering": [[i] for i in ids],
                "flags": {str(ids[0]): ["other"]},
                "flag_notes": {str(ids[0]): "x" * (services.MAX_FLAG_NOTE_CHARS + 1)},
            },
            "flag_notes",
            services.FLAG_NOTE_TOO_LONG,
        ),
    ],
)
def test_an_over_long_text_is_refused_in_the_pages_words(
    ready_task, trainer_client, action, make_payload, field, sentence
):
    """The serializers refused an over-long skip reason, rationale or flag note with DRF's
    "Ensure this field has no more than N characters." where the pages give the service's
    sentence: the API gives the service's, as the field's error."""
    claim = _post(trainer_client, CLAIM_URL).json()
    ids = [c["id"] for c in claim["candidates"]]
    url = (_skip_url if action == "skip" else _submit_url)(claim["assignment_id"])
    response = _post(trainer_client, url, make_payload(ids))
    assert response.status_code == 400, response.content
    errors = response.json()
    assert set(errors) == {field}
    # A flag note's error is keyed by the reply it is about, as every nested error is.
    expected = {str(ids[0]): [sentence]} if field == "flag_notes" else [sentence]
    assert errors[field] == expected
    assert Assignment.objects.get(pk=claim["assignment_id"]).status == Assignment.Status.LEASED
    assert not Ranking.objects.exists()


def test_the_api_is_for_trainers_only(ready_task, plain_user):
    client = Client()
    client.force_login(plain_user)
    assert _post(client, CLAIM_URL).status_code == 403
    assert _post(Client(), CLAIM_URL).status_code in {401, 403}


# ---- quality page -----------------------------------------------------------------------------


def _rank(task: RankingTask, trainer, ordering_of) -> None:
    assignment = services.task_claim_next(trainer=trainer)
    assert assignment.task_id == task.pk
    ids = sorted(task.candidates.values_list("id", flat=True))
    services.ranking_submit(
        assignment=assignment, trainer=trainer, ranking=RankingInput(ordering_of(ids))
    )


def test_quality_page_shows_agreement_of_two_trainers_on_the_same_task(
    ready_task, trainer, third_trainer, admin_client_, django_assert_max_num_queries
):
    # The two rankings swap the top two replies: 5 of the 6 pairs agree, tau = (5 - 1) / 6.
    _rank(ready_task, trainer, lambda ids: [[ids[0]], [ids[1]], [ids[2]], [ids[3]]])
    _rank(ready_task, third_trainer, lambda ids: [[ids[1]], [ids[0]], [ids[2]], [ids[3]]])

    with django_assert_max_num_queries(12):
        response = admin_client_.get(reverse("ranking:quality"))
    assert response.status_code == 200
    html = response.content.decode()
    report = response.context["report"]
    assert report.overall.pairs == 1
    assert report.overall.pairwise == pytest.approx(5 / 6)
    assert report.overall.tau_b == pytest.approx(4 / 6)
    assert '<strong id="overall-agreement">83.3 %</strong>' in html
    assert '<strong id="overall-tau">0.667</strong>' in html
    assert "72.6 % ± 1.5 %" in html
    rows = {row.username: row.quality for row in report.trainers}
    assert set(rows) == {"tess", "thea"}
    assert rows["tess"].agreement == pytest.approx(5 / 6) and rows["tess"].rankings == 1
    # The task opens on a read-only page, not in the editable Django admin.
    task_link = reverse("ranking:quality-task", args=[ready_task.pk])
    assert f'href="{task_link}"' in html


def test_quality_page_filters_by_date_and_model_version(
    ready_task, trainer, third_trainer, admin_client_
):
    _rank(ready_task, trainer, lambda ids: [[i] for i in ids])
    _rank(ready_task, third_trainer, lambda ids: [[i] for i in ids])
    url = reverse("ranking:quality")
    version = ready_task.model_version_id

    assert admin_client_.get(url, {"model_version": version}).context["report"].ranking_count == 2
    future = admin_client_.get(url, {"submitted_from": "2999-01-01"})
    assert future.context["report"].ranking_count == 0
    today = ready_task.created_at.date().isoformat()
    window = admin_client_.get(url, {"submitted_from": today, "submitted_to": today})
    assert window.context["report"].overall.pairwise == 1.0
    backwards = admin_client_.get(
        url, {"submitted_from": "2030-01-02", "submitted_to": "2030-01-01"}
    )
    assert "The start date is after the end date." in backwards.content.decode()


def test_quality_page_is_for_admins_only(trainer_client):
    assert trainer_client.get(reverse("ranking:quality")).status_code == 403


def test_claimed_candidates_carry_the_filters_verdict_the_source_s_too(
    flag_everything, ready_task, trainer_client, trainer
):
    body = _post(trainer_client, CLAIM_URL).json()

    sampled = ready_task.candidates.filter(message__sample__isnull=False)
    assert sampled.count() == 3  # the source here was written without a sample
    # Each filtered, the source on its own text as the task was prepared.
    assert len(body["candidates"]) == 4
    for candidate in body["candidates"]:
        assert "message_id" not in candidate
        assert candidate["moderation"]["flagged"] is True
        assert candidate["moderation"]["categories"] == ["everything"]
        assert candidate["moderation"]["filter"] == "flag-everything"


def test_a_rationale_or_skip_reason_is_measured_as_stored_without_its_spaces_on_both_doors(
    trainer_client, trainer, other_trainer
):
    """The API trimmed a rationale (as it trims a skip reason and a flag note) before checking
    its length, the page did not, and both store it trimmed: a text at the limit followed by
    spaces was taken by one door and refused by the other. Both now measure what is stored."""
    quick_tasks(other_trainer, 6)
    rationale_limit, reason_limit = services.MAX_RATIONALE_CHARS, services.MAX_SKIP_REASON_CHARS

    def api(kind: str, text: str):
        claim = _post(trainer_client, CLAIM_URL).json()
        if kind == "reason":
            return _post(trainer_client, _skip_url(claim["assignment_id"]), {"reason": text})
        ordering = [[candidate["id"]] for candidate in claim["candidates"]]
        body = {"ordering": ordering, "rationale": text}
        return _post(trainer_client, _submit_url(claim["assignment_id"]), body)

    def page(kind: str, text: str):
        trainer_client.post(reverse("ranking:claim"))
        lease = Assignment.objects.get(trainer=trainer, status=Assignment.Status.LEASED)
        numbers = range(1, len(lease.presentation_order) + 1)
        form = {"order": list(numbers), **{f"rank_{number}": number for number in numbers}}
        if kind == "reason":
            return trainer_client.post(
                reverse("ranking:skip", args=[lease.pk]), form | {"skip_reason": text}
            )
        return trainer_client.post(
            reverse("ranking:submit", args=[lease.pk]), form | {"rationale": text}
        )

    for door in (api, page):
        taken = door("rationale", "x" * rationale_limit + "  \n ")
        assert taken.status_code < 400, (door.__name__, taken.content)
        assert Ranking.objects.latest("pk").rationale == "x" * rationale_limit
        refused = door("rationale", "x" * (rationale_limit + 1) + " ")
        assert refused.status_code in {400, 422}, door.__name__
        assert services.RATIONALE_TOO_LONG in refused.content.decode(), door.__name__
        skipped = door("reason", "y" * reason_limit + "   ")
        assert skipped.status_code < 400, (door.__name__, skipped.content)
        assert Assignment.objects.filter(skip_reason="y" * reason_limit).count() == (
            1 if door is api else 2
        )
    assert Ranking.objects.count() == 2


def test_the_api_stores_the_time_to_the_first_placement_and_the_export_carries_it(
    ready_task, trainer_client
):
    """The page sends ``first_placement_ms`` with its ranking; a client of the API may too."""
    claim = _post(trainer_client, CLAIM_URL).json()
    ids = [c["id"] for c in claim["candidates"]]
    payload = {"ordering": [[i] for i in ids], "first_placement_ms": 0}
    response = _post(trainer_client, _submit_url(claim["assignment_id"]), payload)
    assert response.status_code == 201, response.content
    ranking = Ranking.objects.get(pk=response.json()["id"])
    assert ranking.first_placement_ms == 0
    assert response.json()["first_placement_ms"] == 0
    [record] = ranking_records(ExportFilters())
    assert record["first_placement_ms"] == 0


@pytest.mark.parametrize(
    "value", [-1, 2**31, 1.5, "1200", True], ids=["negative", "too long", "float", "text", "bool"]
)
def test_a_time_to_the_first_placement_that_is_no_whole_number_in_range_is_a_400(
    ready_task, trainer_client, value
):
    claim = _post(trainer_client, CLAIM_URL).json()
    ids = [c["id"] for c in claim["candidates"]]
    payload = {"ordering": [[i] for i in ids], "first_placement_ms": value}
    response = _post(trainer_client, _submit_url(claim["assignment_id"]), payload)
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["first_placement_ms"]
    assert not Ranking.objects.exists()
