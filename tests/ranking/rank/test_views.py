import random
import re
from datetime import timedelta
from html import unescape

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.services import user_create_trainer
from labeling.models import Message
from ranking.models import Assignment, Project, Ranking
from ranking.projects.selectors import project_default
from ranking.rank import services
from ranking.rank.views import TAKEN_BACK_SESSION_KEY
from tests.config.test_text_direction import without_direction
from tests.conftest import PASSWORD
from tests.ranking.conftest import finished_conversation, quick_tasks

RANK_URL = reverse("ranking:rank")
CLAIM_URL = reverse("ranking:claim")
HTMX = {"HTTP_HX_REQUEST": "true"}


def _claim(client, **extra):
    """Ask for a task the way the page does (a POST); the page it leads to."""
    if extra:
        return client.post(CLAIM_URL, **extra)
    return client.post(CLAIM_URL, follow=True)


def _assignment(trainer) -> Assignment:
    return Assignment.objects.get(trainer=trainer, status=Assignment.Status.LEASED)


@pytest.fixture
def assignment(ready_task, trainer_client, trainer) -> Assignment:
    """The trainer's lease on ``ready_task``, claimed the way the page does."""
    _claim(trainer_client)
    return _assignment(trainer)


def _shown_ids(html: str) -> list[int]:
    """The replies' keys on the page, as shown: the numbers they are shown under."""
    return [int(found) for found in re.findall(r'data-candidate-id="(\d+)"', html)]


def _numbers(assignment: Assignment) -> list[int]:
    """The numbers the assignment's replies are shown under: what the page names them by."""
    return list(range(1, len(assignment.presentation_order) + 1))


def _candidate(assignment: Assignment, number: int) -> int:
    """The candidate id of the reply shown under ``number``."""
    return assignment.presentation_order[number - 1]


def _submit_url(assignment: Assignment) -> str:
    return reverse("ranking:submit", args=[assignment.pk])


def _form(ids: list[int], ranks: list[object], **extra) -> dict:
    data = {"order": ids, **{f"rank_{cid}": rank for cid, rank in zip(ids, ranks, strict=True)}}
    return {**data, **extra}


def test_the_rank_page_never_claims_on_get_it_asks_by_post(ready_task, trainer_client, trainer):
    response = trainer_client.get(RANK_URL)

    html = response.content.decode()
    assert response.status_code == 200
    assert not Assignment.objects.exists()
    assert "Start ranking" in html
    assert f'hx-post="{CLAIM_URL}" hx-trigger="load, submit"' in html
    assert f'action="{CLAIM_URL}"' in html  # the button works without JavaScript
    assert trainer_client.get(RANK_URL, **HTMX).status_code == 200
    assert not Assignment.objects.exists()


def test_the_ranking_page_lays_out_right_to_left_text_by_its_letters(ready_task, trainer_client):
    assert without_direction(_claim(trainer_client)) == []


def test_claiming_leases_a_task_and_shows_its_candidates_unranked_in_presentation_order(
    ready_task, trainer_client, trainer
):
    response = _claim(trainer_client)

    assert response.status_code == 200
    assignment = _assignment(trainer)
    html = response.content.decode()
    assert _shown_ids(html) == _numbers(assignment)
    assert [f"Reply {number}" in html for number in "1234"] == [True] * 4
    for number in _numbers(assignment):
        # Nothing is ranked until the trainer ranks it.
        assert f'name="rank_{number}" value=""' in html
        assert f'name="flag_{number}" value="off_topic"' in html
    assert ready_task.prefix_message.content in html
    assert 'id="ranking-list"' in html and 'hx-trigger="every' not in html  # no polling


def test_the_keyboard_shortcut_hint_is_hidden_until_the_script_reveals_it(
    ready_task, trainer_client, trainer
):
    """The shortcuts work only with JavaScript: the server's page hides their hint (ranking.js
    shows it) and shows the hint for typing rank numbers."""
    html = _claim(trainer_client).content.decode()

    assert '<span class="shortcut-help" hidden>Press the reply numbers best first' in html
    assert '<span class="no-js-help">Without JavaScript, type rank numbers' in html


def test_reloading_the_page_resumes_the_same_lease(ready_task, trainer_client, trainer):
    _claim(trainer_client)
    first = _assignment(trainer)
    response = trainer_client.get(RANK_URL, **HTMX)

    assert _shown_ids(response.content.decode()) == _numbers(first)
    assert Assignment.objects.filter(trainer=trainer).count() == 1
    assert "<html" not in response.content.decode()  # htmx gets the card partial only


def test_submit_with_a_tie_and_a_flag_stores_exactly_that_ranking(
    assignment, trainer_client, trainer
):
    a, b, c, d = _numbers(assignment)

    response = trainer_client.post(
        _submit_url(assignment),
        _form(
            [b, a, d, c],
            [1, 2, 2, 3],
            **{f"flag_{c}": ["harmful", "other"], f"flag_note_{c}": "insults the user"},
            rationale="B answers the question.",
        ),
    )

    assert response.status_code == 302 and response.url == f"{RANK_URL}?waiting=1"
    ranking = Ranking.objects.get(ranker=trainer)
    # Stored by candidate: the page names the replies by the numbers they are shown under.
    a, b, c, d = assignment.presentation_order
    assert ranking.ordering == [[b], [a, d], [c]]
    assert ranking.flags == {str(c): {"flags": ["harmful", "other"], "note": "insults the user"}}
    assert ranking.rationale == "B answers the question."
    assert ranking.cannot_rank is False
    assert ranking.presentation_order == assignment.presentation_order
    page = _claim(trainer_client).content.decode()
    assert "Ranking saved." in page


def test_submit_over_htmx_swaps_in_the_next_state_with_the_message(
    assignment, trainer_client, trainer
):
    ids = _numbers(assignment)

    response = trainer_client.post(_submit_url(assignment), _form(ids, [1, 2, 3, 4]), **HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Ranking saved." in html
    # overlap 2, the writer never ranks: nothing is left for this trainer.
    assert "You ranked everything available" in html and 'hx-trigger="every 3s, submit"' in html
    ordering = [[cid] for cid in assignment.presentation_order]
    assert Ranking.objects.get(ranker=trainer).ordering == ordering


@pytest.mark.parametrize(
    ("verdict", "cannot_rank", "tied"),
    [("all_bad", True, False), ("cannot_rank", True, False), ("all_equal", False, True)],
)
def test_a_verdict_with_a_reason_needs_no_ranks(
    assignment, trainer_client, trainer, verdict, cannot_rank, tied
):
    ids = _numbers(assignment)
    # Numbers typed before the verdict was chosen (one out of range) are left out, not refused.
    leftover = {f"rank_{ids[0]}": "5", f"rank_{ids[1]}": "2"}

    response = trainer_client.post(
        _submit_url(assignment), {"verdict": verdict, "rationale": "all off-topic", **leftover}
    )

    assert response.status_code == 302
    ranking = Ranking.objects.get(ranker=trainer)
    assert ranking.verdict == verdict and ranking.cannot_rank is cannot_rank
    assert ranking.ordering == ([assignment.presentation_order] if tied else [])
    assert ranking.order_unchanged is None


def test_a_verdict_without_a_reason_is_refused(assignment, trainer_client):
    response = trainer_client.post(_submit_url(assignment), {"verdict": "all_equal"}, **HTMX)

    assert response.status_code == 422
    assert "Say why when you choose &quot;all equally good&quot;" in response.content.decode()
    assert not Ranking.objects.exists()


def test_an_untouched_form_cannot_be_submitted(assignment, trainer_client):
    ids = _numbers(assignment)

    response = trainer_client.post(
        _submit_url(assignment), {"order": ids, **{f"rank_{cid}": "" for cid in ids}}, **HTMX
    )

    assert response.status_code == 422
    assert "Reply 1 has no rank" in response.content.decode()
    assert not Ranking.objects.exists()


@pytest.mark.parametrize("shown_order", [True, False])
def test_a_ranking_stores_whether_it_kept_the_order_shown_and_the_first_placement_time(
    assignment, trainer_client, trainer, shown_order
):
    ids = _numbers(assignment)
    ranks = [1, 2, 3, 4] if shown_order else [2, 1, 3, 4]

    trainer_client.post(
        _submit_url(assignment), _form(ids, ranks, first_placement_ms="2400"), **HTMX
    )

    ranking = Ranking.objects.get(ranker=trainer)
    assert ranking.order_unchanged is shown_order
    assert ranking.first_placement_ms == min(2400, ranking.duration_ms)


def test_invalid_ranks_answer_422_with_a_message_and_keep_everything_entered(
    assignment, trainer_client
):
    a, b, c, d = _numbers(assignment)

    response = trainer_client.post(
        _submit_url(assignment),
        _form(
            [d, c, b, a],
            ["1", "1.5", "", "2"],
            **{
                f"flag_{b}": ["untruthful"],
                f"flag_note_{b}": "wrong date",
                "rationale": "D is the only correct one",
                "skip_reason": "",
            },
        ),
        **HTMX,
    )

    assert response.status_code == 422
    html = response.content.decode()
    assert "Reply 3: the rank must be a whole number from 1 (best) to 4." in html
    assert "Reply 2 has no rank" in html
    assert 'role="alert"' in html
    assert _shown_ids(html) == [d, c, b, a]  # the order as it was on screen
    assert re.search(rf'name="rank_{c}" value="1.5"', html)
    assert re.search(rf'name="rank_{c}" value="1.5"[^>]*aria-invalid="true"', html, re.S)
    assert re.search(rf'name="flag_{b}" value="untruthful"\s+checked', html)
    assert 'value="wrong date"' in html
    assert "D is the only correct one</textarea>" in html
    assert not Ranking.objects.exists()


def test_service_validation_errors_answer_422_and_keep_the_input(
    assignment, trainer_client, trainer
):
    ids = _numbers(assignment)

    response = trainer_client.post(
        _submit_url(assignment),
        _form(ids, [1, 1, 1, 1], **{f"flag_{ids[0]}": ["other"], "rationale": "hmm"}),
    )

    assert response.status_code == 422
    html = response.content.decode()
    assert "All replies are tied" in html
    assert "Say what the problem is" in html
    assert "hmm</textarea>" in html
    assert "<html" in html  # a plain form post gets the whole page back
    assert _assignment(trainer).pk == assignment.pk


def test_a_flag_note_for_a_reply_with_no_flag_answers_422_naming_the_reply_and_keeps_it(
    assignment, trainer_client, trainer
):
    ids = _numbers(assignment)

    response = trainer_client.post(
        _submit_url(assignment),
        _form(ids, [1, 2, 3, 4], **{f"flag_note_{ids[1]}": "reads oddly"}),
    )

    assert response.status_code == 422
    html = response.content.decode()
    assert "Reply 2 has a flag note but no flag: choose a flag for it, or clear the note." in html
    assert 'value="reads oddly"' in html
    assert not Ranking.objects.exists()
    assert _assignment(trainer).pk == assignment.pk


def test_submitting_twice_answers_409_and_keeps_the_first_ranking(
    assignment, trainer_client, trainer
):
    ids = _numbers(assignment)
    first = _form(ids, [1, 2, 3, 4])
    trainer_client.post(_submit_url(assignment), first, **HTMX)

    response = trainer_client.post(
        _submit_url(assignment), _form(ids, [4, 3, 2, 1], rationale="changed my mind"), **HTMX
    )

    assert response.status_code == 409
    html = response.content.decode()
    assert "You already ranked this task" in html
    assert 'role="alert"' in html and "Next task" in html
    assert "changed my mind</textarea>" in html
    assert Ranking.objects.get(ranker=trainer).ordering == [
        [cid] for cid in assignment.presentation_order
    ]


@pytest.mark.parametrize("ranks", [[1, 2, 3, 4], [1, 2, "", 9]], ids=["valid", "invalid"])
def test_a_lease_that_ran_out_on_a_full_task_answers_409_and_keeps_the_answer(
    assignment, trainer_client, trainer, ranks
):
    """An answer the form refuses too (a stale tab's, half done) hears first that its claim is
    gone: what to fix in it would not get it stored."""
    Assignment.objects.filter(pk=assignment.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    for username in ("uma", "ugo"):
        other = user_create_trainer(username=username, password="a-Strong-passw0rd-x")
        lease = services.task_claim_next(trainer=other)
        ids = lease.presentation_order
        services.ranking_submit(
            assignment=lease,
            trainer=other,
            ranking=services.RankingInput(ordering=[[i] for i in ids]),
        )

    response = trainer_client.post(
        _submit_url(assignment),
        _form(_numbers(assignment), ranks, rationale="slow but careful"),
        **HTMX,
    )

    assert response.status_code == 409
    html = response.content.decode()
    assert "Your lease on this task ran out" in html and "Next task" in html
    assert "slow but careful</textarea>" in html
    assert "has no rank" not in html and "must be a whole number" not in html
    assert not Ranking.objects.filter(ranker=trainer).exists()


def test_skip_gives_the_task_back_and_shows_the_next_state(ready_task, assignment, trainer_client):
    response = trainer_client.post(
        reverse("ranking:skip", args=[assignment.pk]), {"skip_reason": "not my language"}, **HTMX
    )

    assert response.status_code == 200
    assert "You ranked everything available" in response.content.decode()
    # The toast says what happened (the next state alone looks like nothing was done).
    toast = response.content.decode().split('id="toast-region"', 1)[1]
    assert "Task skipped: it will not be offered to you again." in toast
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.SKIPPED
    assert assignment.skip_reason == "not my language"
    ready_task.refresh_from_db()
    assert ready_task.leased_count == 0
    # Skipped tasks are not offered again.
    assert "You ranked everything available" in _claim(trainer_client).content.decode()


def test_skip_after_ranking_answers_409_and_does_not_claim_it_was_skipped(
    assignment, trainer_client, trainer
):
    ids = assignment.presentation_order  # the service names candidates
    services.ranking_submit(
        assignment=assignment,
        trainer=trainer,
        ranking=services.RankingInput(ordering=[[i] for i in ids]),
    )

    response = trainer_client.post(reverse("ranking:skip", args=[assignment.pk]), **HTMX)

    assert response.status_code == 409
    html = response.content.decode()
    assert "a ranked task cannot be skipped" in html
    assert "Task skipped" not in html
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.SUBMITTED


def test_skip_with_a_too_long_reason_answers_422_and_keeps_the_ranking_inputs(
    assignment, trainer_client, trainer
):
    ids = _numbers(assignment)

    response = trainer_client.post(
        reverse("ranking:skip", args=[assignment.pk]),
        _form(ids, [2, 1, 3, 4], skip_reason="x" * 600, rationale="kept"),
    )

    assert response.status_code == 422
    html = response.content.decode()
    assert "The reason is limited to 500 characters." in html
    assert "kept</textarea>" in html and f'name="rank_{ids[1]}" value="1"' in html
    assert _assignment(trainer).pk == assignment.pk


def test_skip_with_a_nul_in_the_reason_answers_422_and_skips_nothing(
    assignment, trainer_client, trainer
):
    response = trainer_client.post(
        reverse("ranking:skip", args=[assignment.pk]),
        _form(_numbers(assignment), [1, 2, 3, 4], skip_reason="bad\x00reason"),
    )

    assert response.status_code == 422
    assert "NUL characters" in response.content.decode()
    assert _assignment(trainer).status == Assignment.Status.LEASED


def test_a_nul_typed_into_the_answer_is_refused_and_what_was_typed_comes_back_without_it(
    assignment, trainer_client, trainer
):
    ids = _numbers(assignment)
    typed = {
        "rationale": "why\x00not",
        f"flag_{ids[0]}": ["other"],
        f"flag_note_{ids[0]}": "rude\x00ly",
        "skip_reason": "later\x00on",
        "verdict": "none\x00such",
    }

    submit = trainer_client.post(_submit_url(assignment), _form(ids, [1, 2, 3, 4], **typed))
    skip = trainer_client.post(
        reverse("ranking:skip", args=[assignment.pk]), _form(ids, [1, 2, 3, 4], **typed)
    )

    for response in (submit, skip):
        html = response.content.decode()
        # A page cannot hold a NUL: what was typed comes back without it, beside the reason.
        assert response.status_code == 422 and "\x00" not in html
        assert ">whynot</textarea>" in html
        assert f'name="flag_note_{ids[0]}" value="rudely"' in html
        assert 'value="lateron"' in html
        assert f'name="rank_{ids[1]}" value="2"' in html
    assert _assignment(trainer).status == Assignment.Status.LEASED
    assert not Ranking.objects.exists()


def test_a_rank_refused_for_a_nul_is_not_also_reported_missing(assignment, trainer_client):
    ids = _numbers(assignment)

    response = trainer_client.post(_submit_url(assignment), _form(ids, ["1\x00", 2, 3, 4]))

    html = response.content.decode()
    assert response.status_code == 422
    assert "Reply 1: the rank must be a whole number from 1 (best) to 4." in html
    assert "has no rank" not in html and "\x00" not in html


def test_another_trainers_assignment_is_not_found(ready_task, trainer_client, trainer, db):
    intruder = Client()
    intruder.force_login(user_create_trainer(username="ivan", password="a-Strong-passw0rd-x"))
    _claim(trainer_client)
    assignment = _assignment(trainer)
    ids = _numbers(assignment)

    submit = intruder.post(_submit_url(assignment), _form(ids, [1, 2, 3, 4]))
    skip = intruder.post(reverse("ranking:skip", args=[assignment.pk]))

    assert submit.status_code == 404 and skip.status_code == 404
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.LEASED
    assert not Ranking.objects.exists()


def test_users_without_the_trainer_role_are_forbidden(ready_task, plain_user):
    client = Client()
    client.force_login(plain_user)

    assert client.get(RANK_URL).status_code == 403
    assert client.post(CLAIM_URL).status_code == 403
    assert client.post(reverse("ranking:submit", args=[1])).status_code == 403
    assert client.post(reverse("ranking:skip", args=[1])).status_code == 403
    assert not Assignment.objects.exists()


def test_anonymous_visitors_are_sent_to_log_in(db):
    response = Client().get(RANK_URL)

    assert response.status_code == 302 and "/accounts/login/" in response.url


def test_without_a_task_the_page_says_preparing_and_polls_by_post(trainer_client):
    response = _claim(trainer_client)

    html = response.content.decode()
    assert response.status_code == 200
    assert "Nothing to rank yet" in html and "Write and finish conversations" in html
    assert 'id="ranking-card"' in html
    assert f'hx-post="{CLAIM_URL}" hx-trigger="every 3s, submit"' in html
    assert "Check now" in html


def test_tasks_waiting_for_sampling_without_a_worker_say_so(
    policy, other_trainer, trainer_client, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    finished_conversation(other_trainer)
    services.ranking_task_create(rng=random.Random(0), alternatives=2, queue=False)

    html = _claim(trainer_client).content.decode()

    assert "Waiting for a sampling worker" in html
    assert "1 task waits for the model" in html


def test_tasks_being_sampled_by_a_live_worker_show_the_pool_progress(
    policy, other_trainer, trainer_client, settings
):
    from sampler.workers.models import WorkerHeartbeat

    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.RANKING_POOL_SIZE = 4
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="gen@host",
        queues=["generation"],
        hostname="host",
        pid=1,
        started_at=now,
        last_seen=now,
    )
    finished_conversation(other_trainer)
    services.ranking_task_create(rng=random.Random(0), alternatives=2, queue=False)

    html = _claim(trainer_client).content.decode()

    assert "Preparing tasks…" in html
    assert "Task pool: 1 of 4" in html and '<progress max="100" value="25">' in html


def test_a_pool_that_cannot_be_filled_says_so_to_the_trainer_without_the_reason(
    policy, other_trainer, trainer_client
):
    finished_conversation(other_trainer)
    default = project_default()
    secret = "ValidationError at /srv/models/policy-7 (the worker's log says more)."
    Project.objects.filter(pk=default.pk).update(pool_error=secret)

    html = _claim(trainer_client).content.decode()

    assert "Tasks cannot be prepared right now" in html and "Preparing tasks…" not in html
    assert f"New tasks for {default.name} cannot be prepared right now" in html
    assert "policy-7" not in html and "ValidationError" not in html
    assert f'hx-post="{CLAIM_URL}" hx-trigger="every 3s, submit"' in html  # it checks again
    api = trainer_client.post("/api/ranking/claim/")
    assert api.status_code == 204 and api.headers["Tandem-Waiting-Reason"] == "pool_failed"
    chosen = trainer_client.post(f"/api/ranking/claim/?project={default.slug}")
    assert chosen.headers["Tandem-Waiting-Reason"] == "pool_failed"
    # A fill that succeeds clears the reason: the page says what it said before.
    Project.objects.filter(pk=default.pk).update(pool_error="")
    html = _claim(trainer_client, **HTMX).content.decode()
    assert "Tasks cannot be prepared right now" not in html and "Preparing tasks…" in html


def test_a_pool_held_off_for_the_content_filter_tells_the_trainer_why_in_plain_words(
    settings, policy, other_trainer, trainer_client
):
    """While the fill holds off because the content filter cannot run, the Rank page and the
    claim API say so in a sentence a trainer can act on, without the filter's own error (for
    admins); before, both said only that the last try failed. Another failure still says
    that, and nothing of its reason."""
    finished_conversation(other_trainer)
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password", " "]}  # refused: cannot run
    settings.CONTENT_FILTER_BLOCK_RANKING = True
    services.ranking_pool_fill(rng=random.Random(0))
    default = project_default()
    assert default.pool_error.startswith(services.FILTER_DOWN_HOLDS_FILL)

    html = unescape(_claim(trainer_client).content.decode())

    held = "The content filter that checks the model's replies is not running"
    assert "Tasks cannot be prepared right now" in html and held in html
    assert "CONTENT_FILTER" not in html and "ImproperlyConfigured" not in html
    assert "last try failed" not in html
    api = trainer_client.post("/api/ranking/claim/")
    assert api.status_code == 204 and api.headers["Tandem-Waiting-Reason"] == "pool_failed"
    assert api.headers.get("Tandem-Waiting-Detail", "").startswith(held)

    Project.objects.filter(pk=default.pk).update(pool_error="RuntimeError (the log says more).")
    html = unescape(_claim(trainer_client, **HTMX).content.decode())
    assert held not in html and "RuntimeError" not in html and "last try failed" in html
    detail = trainer_client.post("/api/ranking/claim/").headers["Tandem-Waiting-Detail"]
    assert detail in html and "RuntimeError" not in detail


def test_polling_swaps_the_task_in_once_one_is_ready(ready_task, trainer_client, trainer):
    response = _claim(trainer_client, **HTMX)

    html = response.content.decode()
    assert 'id="ranking-list"' in html and "every 3s" not in html


def test_model_text_is_sanitised(ready_task, trainer_client, trainer):
    candidate = ready_task.candidates.exclude(is_source=True).first()
    Message.objects.filter(pk=candidate.message_id).update(
        content='<script>alert("x")</script><img src=x onerror=alert(1)> **bold**'
    )

    html = _claim(trainer_client).content.decode()

    assert "<strong>bold</strong>" in html
    assert '<script>alert("x")' not in html and "<img" not in html
    # Shown as the text the model wrote, not dropped.
    assert '&lt;script&gt;alert("x")&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;' in html


@pytest.fixture
def long_task(policy, other_trainer, settings):
    """A task whose prefix has five turns (only its last reply is model-written)."""
    settings.RANKING_MAX_NEW_TOKENS = 8
    conversation = finished_conversation(
        other_trainer, turns=("u one", "a one", "u two", "a two", "u three", "a three")
    )
    conversation.messages.filter(content__in=["a one", "a two"]).update(origin="human")
    task = services.ranking_task_create(
        rng=random.Random(0), alternatives=2, overlap=2, queue=False
    )
    return services.ranking_task_prepare(task_id=task.pk)


def test_long_prefixes_fold_older_turns_with_their_count(long_task, trainer_client):
    html = _claim(trainer_client).content.decode()

    # Only the last exchange is open, so the replies start high on the screen.
    assert "<details" in html and "Show 3 earlier turns<" in html
    folded, shown = html.split("</details>", 1)
    for text in ("u one", "a one", "u two"):
        assert text in folded and text not in shown
    for text in ("a two", "u three"):
        assert text in shown


# ---- the content filter and feedback on the replies being ranked ------------------------------


def _candidate_messages(assignment: Assignment) -> dict[int, Message]:
    return {
        candidate.pk: candidate.message
        for candidate in assignment.task.candidates.select_related("message")
    }


def test_flagged_replies_carry_the_filters_warning_on_the_ranking_page(
    flag_everything, ready_task, trainer_client, trainer
):
    html = _claim(trainer_client).content.decode()

    assignment = _assignment(trainer)
    sampled = [m for m in _candidate_messages(assignment).values() if m.sample_id]
    assert len(sampled) == 3  # the K alternatives; the source here was written without a sample
    # The source too: filtered on its own text as the task was prepared.
    assert html.count('class="moderation-warning"') == len(sampled) + 1
    assert html.count('class="candidate flagged"') == len(sampled) + 1
    assert "The content filter flagged this: everything" in html


def test_unflagged_replies_show_no_warning(ready_task, trainer_client, settings):
    settings.CONTENT_FILTER_PATTERNS = {}
    settings.CONTENT_FILTER_WORDS = {}

    html = _claim(trainer_client).content.decode()

    assert 'class="moderation-warning"' not in html


def _reply_feedback_url(assignment: Assignment, number: int) -> str:
    return reverse("labeling:feedback-reply", args=[assignment.pk, number])


def test_every_reply_gets_a_feedback_slot_outside_the_ranking_form(
    ready_task, trainer_client, trainer
):
    html = _claim(trainer_client).content.decode()

    assignment = _assignment(trainer)
    form_end = html.index("</form>", html.index('id="ranking-form"'))
    for number in _numbers(assignment):
        slot = html.index(f'href="{_reply_feedback_url(assignment, number)}"')
        assert slot > form_end  # forms cannot nest: the widget's own forms sit after the ranking
    assert html.count('class="feedback"') == len(assignment.presentation_order)


def test_a_trainer_rates_and_reports_a_reply_of_their_task(assignment, trainer_client, trainer):
    message = _candidate_messages(assignment)[_candidate(assignment, 1)]
    url = _reply_feedback_url(assignment, 1)

    assert trainer_client.get(url, **HTMX).status_code == 200
    rated = trainer_client.post(url, {"action": "rate", "rating": "down"}, **HTMX)
    reported = trainer_client.post(
        url, {"action": "report", "categories": ["untruthful"], "comment": "made up"}, **HTMX
    )

    assert rated.status_code == 200 and reported.status_code == 200
    feedback = message.feedback.get(user=trainer)
    assert (feedback.rating, feedback.categories, feedback.comment) == (
        "down",
        ["untruthful"],
        "made up",
    )


def test_replies_of_tasks_never_given_to_a_trainer_stay_hidden(ready_task, assignment, db):
    url = _reply_feedback_url(assignment, 1)
    outsider = user_create_trainer(username="outsider", password=PASSWORD)
    client = Client()
    client.force_login(outsider)
    message = ready_task.candidates.first().message

    for address in (url, f"/write/feedback/message/{message.pk}/"):
        assert client.get(address).status_code == 404
        assert client.post(address, {"action": "rate", "rating": "up"}).status_code == 404


def test_submit_over_htmx_brings_a_toast_with_an_undo_that_takes_the_ranking_back(
    ready_task, trainer_client, trainer, settings
):
    settings.RANKING_UNDO_SECONDS = 600
    _claim(trainer_client)
    assignment = _assignment(trainer)
    ids = _numbers(assignment)
    response = trainer_client.post(_submit_url(assignment), _form(ids, [2, 1, 3, 3]), **HTMX)
    ranking = Ranking.objects.get(ranker=trainer)
    html = response.content.decode()
    undo_url = reverse("ranking:undo", args=[ranking.pk])
    assert 'id="toast-region" hx-swap-oob="innerHTML"' in html
    assert 'data-timeout="600"' in html and f'hx-post="{undo_url}"' in html

    undone = trainer_client.post(undo_url, **HTMX)

    assert undone.status_code == 200
    html = undone.content.decode()
    assert "Ranking taken back" in html
    # The task is back on screen as it was answered.
    assert f'name="rank_{ids[0]}" value="2"' in html and f'name="rank_{ids[3]}" value="3"' in html
    assert not Ranking.objects.exists()
    assert _assignment(trainer).pk == assignment.pk


def _undo_forms(html: str) -> list[str]:
    """The plain (no-JS) undo forms of a page, whole."""
    return re.findall(r'<form class="ranking-saved-undo".*?</form>', html, flags=re.S)


def test_submit_without_javascript_shows_ranking_saved_with_an_undo_form_once(
    ready_task, trainer_client, trainer, settings
):
    """After a plain-form submit the page it redirects to offers the toast's Undo as a POST
    form of its own; a reload shows neither (the message and its Undo are shown once)."""
    settings.RANKING_UNDO_SECONDS = 600
    _claim(trainer_client)
    assignment = _assignment(trainer)
    submitted = trainer_client.post(
        _submit_url(assignment), _form(_numbers(assignment), [1, 2, 3, 4])
    )
    ranking = Ranking.objects.get(ranker=trainer)

    html = trainer_client.get(submitted.url).content.decode()

    assert "Ranking saved." in html
    (form,) = _undo_forms(html)
    assert f'method="post" action="{reverse("ranking:undo", args=[ranking.pk])}"' in form
    assert 'name="csrfmiddlewaretoken"' in form and "hx-post" not in form
    assert '<button type="submit">Undo</button>' in form
    reloaded = trainer_client.get(submitted.url).content.decode()
    assert "Ranking saved." not in reloaded and not _undo_forms(reloaded)


def test_the_no_js_undo_is_not_offered_once_the_undo_window_is_over(
    ready_task, trainer_client, trainer, settings
):
    settings.RANKING_UNDO_SECONDS = 600
    _claim(trainer_client)
    assignment = _assignment(trainer)
    submitted = trainer_client.post(
        _submit_url(assignment), _form(_numbers(assignment), [1, 2, 3, 4])
    )
    Ranking.objects.update(submitted_at=timezone.now() - timedelta(seconds=601))

    html = trainer_client.get(submitted.url).content.decode()

    assert "Ranking saved." in html and not _undo_forms(html)
    assert Ranking.objects.filter(ranker=trainer).exists()


def test_undo_without_javascript_redirects_to_the_task_shown_again_as_it_was_answered(
    ready_task, trainer_client, trainer, settings
):
    """The undo form posted as a plain form (no htmx) redirects to the Rank page (so reloading
    it does not post the undo again), which shows the task with the answer that was taken
    back, as over htmx, not with empty boxes; once: a reload shows the lease as it is."""
    settings.RANKING_UNDO_SECONDS = 600
    _claim(trainer_client)
    assignment = _assignment(trainer)
    ids = _numbers(assignment)
    flagged = {f"flag_{ids[2]}": ["other"], f"flag_note_{ids[2]}": "odd"}
    trainer_client.post(
        _submit_url(assignment), _form(ids, [2, 1, 3, 3], rationale="close call", **flagged)
    )
    ranking = Ranking.objects.get(ranker=trainer)

    undone = trainer_client.post(reverse("ranking:undo", args=[ranking.pk]))

    assert undone.status_code == 302 and undone.url == RANK_URL
    assert not Ranking.objects.exists()
    assert _assignment(trainer).pk == assignment.pk
    html = trainer_client.get(RANK_URL).content.decode()
    assert "Ranking taken back" in html
    assert _shown_ids(html) == ids
    assert f'name="rank_{ids[0]}" value="2"' in html and f'name="rank_{ids[3]}" value="3"' in html
    assert re.search(rf'name="flag_{ids[2]}" value="other"\s+checked', html)
    assert 'value="odd"' in html and "close call" in html
    reloaded = trainer_client.get(RANK_URL)
    html = reloaded.content.decode()
    assert reloaded.status_code == 200 and _shown_ids(html) == ids
    assert f'name="rank_{ids[0]}" value=""' in html and "close call" not in html
    assert "Ranking taken back" not in html


def test_an_answer_taken_back_is_not_shown_on_another_task(
    ready_task, trainer_client, trainer, settings
):
    """The answer crosses the redirect under its assignment: a page that shows another lease
    (the first one gone meanwhile) leaves it out, and drops it."""
    settings.RANKING_UNDO_SECONDS = 600
    _claim(trainer_client)
    assignment = _assignment(trainer)
    ids = _numbers(assignment)
    trainer_client.post(_submit_url(assignment), _form(ids, [2, 1, 3, 3], rationale="close call"))
    trainer_client.post(reverse("ranking:undo", args=[Ranking.objects.get(ranker=trainer).pk]))
    session = trainer_client.session
    session[TAKEN_BACK_SESSION_KEY]["assignment_id"] = assignment.pk + 1000
    session.save()

    html = trainer_client.get(RANK_URL).content.decode()

    assert _shown_ids(html) == ids and "close call" not in html
    assert f'name="rank_{ids[0]}" value=""' in html
    assert TAKEN_BACK_SESSION_KEY not in trainer_client.session


def test_undo_after_the_window_answers_409_in_the_toast_only(
    ready_task, trainer_client, trainer, settings
):
    settings.RANKING_UNDO_SECONDS = 0
    _claim(trainer_client)
    assignment = _assignment(trainer)
    trainer_client.post(_submit_url(assignment), _form(_numbers(assignment), [1, 2, 3, 4]), **HTMX)
    ranking = Ranking.objects.get(ranker=trainer)

    response = trainer_client.post(reverse("ranking:undo", args=[ranking.pk]), **HTMX)

    assert response.status_code == 409 and response["HX-Reswap"] == "none"
    assert "Too late to take this ranking back" in response.content.decode()
    assert Ranking.objects.filter(pk=ranking.pk).exists()


GIVEN_BACK = (
    "This task is no longer yours: it was given back when you took back your previous "
    "ranking, and nothing was stored. Take the next task."
)


def _ranked_then_taken_back(client: Client, trainer, owner) -> tuple[Ranking, Assignment]:
    """Through the page, without JavaScript: rank a task (the page then claims the next one)
    and take the ranking back, which gives the lease on the next task back. The ranking (as it
    was: it is deleted) and the lease given back (likewise)."""
    first, second = quick_tasks(owner, 2)
    _claim(client)
    assignment = _assignment(trainer)
    assert assignment.task_id == first.pk
    client.post(_submit_url(assignment), _form(_numbers(assignment), [1, 2, 3, 4]))
    ranking = Ranking.objects.get(ranker=trainer)
    following = _assignment(trainer)
    assert following.task_id == second.pk
    assert client.post(reverse("ranking:undo", args=[ranking.pk])).status_code == 302
    assert not Assignment.objects.filter(pk=following.pk).exists()
    client.get(RANK_URL)  # the page the undo redirected to: its message is taken
    return ranking, following


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])
def test_a_submit_or_skip_on_a_lease_an_undo_gave_back_is_a_409_saying_so_not_a_404(
    trainer_client, trainer, other_trainer, settings, htmx
):
    """A stale tab still showing the next task (or a Submit clicked as the undo went) is told
    that the task is no longer the trainer's, with the Next task button, not "404"."""
    settings.RANKING_UNDO_SECONDS = 600
    _, given_back = _ranked_then_taken_back(trainer_client, trainer, other_trainer)
    extra = HTMX if htmx else {}
    ids = _numbers(given_back)

    submit = trainer_client.post(_submit_url(given_back), _form(ids, [1, 2, 3, 4]), **extra)
    refused = trainer_client.post(_submit_url(given_back), _form(ids, [1, 1, 9, ""]), **extra)
    skip = trainer_client.post(reverse("ranking:skip", args=[given_back.pk]), **extra)

    for response in (submit, refused, skip):
        html = unescape(response.content.decode())
        assert response.status_code == 409, html
        assert GIVEN_BACK in html
        assert f'hx-post="{CLAIM_URL}"' in html and f'action="{CLAIM_URL}"' in html
        assert ("<html" in html) is not htmx
    assert not Ranking.objects.filter(ranker=trainer).exists()
    # The task taken back is still the trainer's, leased again.
    assert _assignment(trainer).task_id != given_back.task_id


@pytest.mark.parametrize("action", ["submit", "skip"])
def test_a_lease_an_undo_gives_back_as_the_submit_reads_it_shows_why_not_the_old_task(
    trainer_client, trainer, other_trainer, settings, monkeypatch, action
):
    """The undo lands between the page's read of the lease and the service's lock: the trainer
    is told the task was given back, with the Next task button, not shown the task again (its
    reply links would lead to pages gone with the lease)."""
    from ranking.rank import views

    settings.RANKING_UNDO_SECONDS = 600
    quick_tasks(other_trainer, 1)
    _claim(trainer_client)
    assignment = _assignment(trainer)
    read = views.assignment_get_for_trainer

    def read_then_given_back(**arguments):
        found = read(**arguments)
        Assignment.objects.filter(pk=found.pk).delete()
        return found

    monkeypatch.setattr(views, "assignment_get_for_trainer", read_then_given_back)
    if action == "submit":
        url, data = _submit_url(assignment), _form(_numbers(assignment), [1, 2, 3, 4])
    else:
        url, data = reverse("ranking:skip", args=[assignment.pk]), {}
    response = trainer_client.post(url, data, **HTMX)
    html = unescape(response.content.decode())
    assert response.status_code == 409 and GIVEN_BACK in html
    assert f'hx-post="{CLAIM_URL}"' in html and _shown_ids(html) == []


def test_feedback_on_a_reply_of_a_lease_an_undo_gave_back_is_a_404_as_before(
    trainer_client, trainer, other_trainer, settings
):
    """The pages that go with a lease (a reply's feedback) are gone with it: a 404, as for any
    lease that is no longer there, never a server error."""
    settings.RANKING_UNDO_SECONDS = 600
    _, given_back = _ranked_then_taken_back(trainer_client, trainer, other_trainer)
    url = reverse("labeling:feedback-reply", args=[given_back.pk, 1])
    assert trainer_client.get(url, **HTMX).status_code == 404
    assert trainer_client.post(url, {"rating": "up"}, **HTMX).status_code == 404


def test_taking_a_ranking_back_twice_is_a_409_saying_so_not_a_404(
    trainer_client, trainer, other_trainer, settings
):
    """The toast's Undo clicked twice, or a no-JS undo form posted again (the back button):
    the second is told the ranking was taken back already; the task stays as it is."""
    settings.RANKING_UNDO_SECONDS = 600
    ranking, _ = _ranked_then_taken_back(trainer_client, trainer, other_trainer)
    url = reverse("ranking:undo", args=[ranking.pk])
    leased = _assignment(trainer)

    again = trainer_client.post(url, **HTMX)
    plain = trainer_client.post(url)

    assert again.status_code == 409 and again["HX-Reswap"] == "none"
    assert "You already took this ranking back" in unescape(again.content.decode())
    assert plain.status_code == 302 and plain.url == RANK_URL
    html = unescape(trainer_client.get(RANK_URL).content.decode())
    assert "You already took this ranking back" in html
    assert _assignment(trainer) == leased
    assert _shown_ids(html) == _numbers(leased)


def test_what_an_undo_removed_is_a_404_to_any_other_trainer_as_an_unknown_id_is(
    trainer_client, trainer, other_trainer, settings
):
    """The lease it gave back and the ranking it took back: only their trainer is told that
    they are gone."""
    settings.RANKING_UNDO_SECONDS = 600
    ranking, given_back = _ranked_then_taken_back(trainer_client, trainer, other_trainer)
    intruder = Client()
    intruder.force_login(user_create_trainer(username="ivan", password="a-Strong-passw0rd-x"))
    form = _form(_numbers(given_back), [1, 2, 3, 4])
    undo_url = reverse("ranking:undo", args=[ranking.pk])

    assert intruder.post(_submit_url(given_back), form).status_code == 404
    assert intruder.post(reverse("ranking:skip", args=[given_back.pk])).status_code == 404
    assert intruder.post(undo_url, **HTMX).status_code == 404
    assert intruder.post(undo_url).status_code == 404
    unknown = given_back.pk + 1000
    assert trainer_client.post(reverse("ranking:submit", args=[unknown]), form).status_code == 404
    assert trainer_client.post(reverse("ranking:skip", args=[unknown])).status_code == 404
    unknown_undo = reverse("ranking:undo", args=[ranking.pk + 1000])
    assert trainer_client.post(unknown_undo, **HTMX).status_code == 404


def test_a_nul_in_the_rationale_a_flag_note_or_the_skip_reason_is_refused_naming_the_field(
    assignment, trainer_client, trainer
):
    """The page says which box holds the NUL, with the message the API gives for it."""
    ids = _numbers(assignment)
    note = {f"flag_{ids[1]}": ["other"], f"flag_note_{ids[1]}": "rude\x00ly"}
    cases = [
        (_submit_url(assignment), {"rationale": "why\x00not"}, "Rationale"),
        (_submit_url(assignment), note, "Reply 2's flag note"),
        (reverse("ranking:skip", args=[assignment.pk]), {"skip_reason": "x\x00"}, "Skip reason"),
    ]
    for url, typed, name in cases:
        response = trainer_client.post(url, _form(ids, [1, 2, 3, 4], **typed))
        html = unescape(response.content.decode())
        assert response.status_code == 422
        assert f"{name}: NUL characters (\\u0000) are not allowed." in html, name
        assert "Null characters are not allowed." not in html
    assert _assignment(trainer).status == Assignment.Status.LEASED
    assert not Ranking.objects.exists()
