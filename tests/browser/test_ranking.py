import random

import pytest
from playwright.sync_api import expect

from ranking.models import Assignment, Project, Ranking
from ranking.projects.models import DEFAULT_PROJECT_SLUG
from ranking.rank import services
from tests.browser.conftest import log_in, ranking_card_ready, wait_until
from tests.conftest import PASSWORD
from tests.ranking import conftest as ranking_fixtures
from tests.ranking.conftest import finished_conversation, model_version_create, task_from_source

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A prepared task from other_trainer's conversation (sampled in-process, no worker needed).
ready_task = ranking_fixtures.ready_task

ITEMS = "#ranking-list > li.candidate"


def _ids_shown(page) -> list[int]:
    """Candidate ids in the order the page shows the replies (numbered 1, 2, ...): the page
    names each reply by its number alone; tess's lease tells its candidate."""
    numbers = [
        int(value)
        for value in page.eval_on_selector_all(
            ITEMS, "items => items.map(i => i.dataset.candidateId)"
        )
    ]
    lease = Assignment.objects.get(trainer__username="tess", status=Assignment.Status.LEASED)
    return [lease.presentation_order[number - 1] for number in numbers]


def _open_task(page, live_server, count: int = 4) -> list[int]:
    log_in(page, live_server, "tess", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Rank").click()
    ranking_card_ready(page, count)
    return _ids_shown(page)


def test_replies_start_unplaced_and_an_untouched_order_cannot_be_submitted(
    page, live_server, ready_task, trainer
):
    shown = _open_task(page, live_server)
    items = page.locator(ITEMS)
    submit = page.get_by_role("button", name="Submit ranking")
    expect(items.locator(".rank-badge")).to_have_text(["Not placed"] * 4)
    expect(page.locator("#ranking-order")).to_have_text("nothing placed yet")
    expect(page.locator("#ranking-order")).to_be_visible()
    expect(submit).to_be_disabled()
    page.keyboard.press("Enter")  # nothing placed: nothing is sent
    expect(page.locator("#ranking-status")).to_contain_text("Place every reply first (0 of 4")

    # Three of four placed: still not a ranking.
    for number in ("2", "1", "3"):
        page.keyboard.press(number)
    expect(items.locator(".rank-badge")).to_have_text(["Rank 2", "Rank 1", "Rank 3", "Not placed"])
    expect(page.locator("#ranking-order")).to_have_text("2  >  1  >  3")
    expect(submit).to_be_disabled()

    # "All equally good" needs a reason before it can be sent.
    # ... and the placements are not what it sends: the order line says so.
    page.get_by_label("All equally good").check()
    expect(page.locator("#ranking-order")).to_have_text("not used (your answer: All equally good)")
    expect(submit).to_be_disabled()
    page.fill("#ranking-rationale", "all four say the same")
    expect(submit).to_be_enabled()
    page.get_by_label("A ranking", exact=True).check()
    expect(page.locator("#ranking-order")).to_have_text("2  >  1  >  3")
    expect(submit).to_be_disabled()

    items.nth(3).get_by_role("button", name="Place next").click()
    expect(submit).to_be_enabled()
    submit.click()

    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()
    ranking = Ranking.objects.get(ranker=trainer)
    assert ranking.ordering == [[shown[1]], [shown[0]], [shown[2]], [shown[3]]]
    assert ranking.verdict == "ranked" and ranking.order_unchanged is False
    assert ranking.first_placement_ms is not None
    assert 0 <= ranking.first_placement_ms <= ranking.duration_ms


def test_the_order_shown_submitted_as_is_is_recorded_and_the_trainer_flagged(
    page, live_server, ready_task, trainer, admin_user, settings
):
    settings.RANKING_OUTLIER_MIN_RANKINGS = 1
    shown = _open_task(page, live_server)
    # A strict ranking of K replies takes K + 1 keys: their numbers best first, then Enter.
    keys = ("1", "2", "3", "4", "Enter")
    assert len(keys) == len(shown) + 1
    for key in keys:
        page.keyboard.press(key)
    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()
    ranking = Ranking.objects.get(ranker=trainer)
    assert ranking.ordering == [[cid] for cid in shown]
    assert ranking.order_unchanged is True

    page.context.clear_cookies()
    log_in(page, live_server, "ada", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Quality").click()
    row = page.locator("#trainers tr[data-trainer=tess]")
    expect(row.locator(".unchanged-rate")).to_have_text("100 %")
    expect(row).to_have_class("outlier")
    expect(row.locator(".outlier-reasons")).to_contain_text("submits the order shown 100%")


def test_a_tie_an_undo_and_a_flag_from_the_keyboard(page, live_server, ready_task, trainer):
    shown = _open_task(page, live_server)
    items = page.locator(ITEMS)
    # 4 first, 2 tied with it, 1 placed then taken back, then 1 and 3.
    for key in ("4", "2", "t", "1", "u", "3", "1"):
        page.keyboard.press(key)
    expect(page.locator("#ranking-order")).to_have_text("4 = 2  >  3  >  1")
    expect(items.locator(".rank-badge")).to_have_text(
        ["Rank 3", "Rank 1 (tie)", "Rank 2", "Rank 1 (tie)"]
    )
    page.keyboard.press("f")  # flags of the last placed reply (1)
    expect(items.nth(0).get_by_label("Harmful")).to_be_focused()
    page.keyboard.press("Space")
    page.locator("#ranking-rationale").fill("4 and 2 both correct")
    page.locator("#ranking-rationale").press("Control+Enter")

    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()
    ranking = Ranking.objects.get(ranker=trainer)
    assert ranking.ordering == [[shown[1], shown[3]], [shown[2]], [shown[0]]]
    assert ranking.flags == {str(shown[0]): {"flags": ["harmful"], "note": ""}}
    assert ranking.rationale == "4 and 2 both correct"


def _type_together(page, keys: str) -> None:
    """Each key of ``keys`` pressed in one go (one script turn: no pause can fall between)."""
    page.evaluate(
        """keys => [...keys].forEach((key) => document.activeElement.dispatchEvent(
            new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true })))""",
        keys,
    )


def test_replies_ten_and_up_are_placed_with_two_digits(page, live_server, other_trainer, trainer):
    conversation = finished_conversation(other_trainer, turns=("name twelve things", "one."))
    model_version = model_version_create("twelve")
    task_from_source(conversation.active_leaf, model_version=model_version, alternatives=11)
    shown = _open_task(page, live_server, count=12)
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_contain_text("10\u201312")
    page.keyboard.press("Escape")

    for keys in ("12", "11", "10"):
        _type_together(page, keys)
    expect(page.locator("#ranking-order")).to_have_text("12  >  11  >  10")
    for key in "98765432":
        page.keyboard.press(key)
    # A "1" with no second digit is reply 1: after a pause, or at once at the next key.
    page.keyboard.press("1")
    expect(page.locator("#ranking-order")).to_have_text(
        "12  >  11  >  10  >  9  >  8  >  7  >  6  >  5  >  4  >  3  >  2  >  1"
    )
    page.keyboard.press("u")
    page.keyboard.press("1")
    page.keyboard.press("Enter")

    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()
    ranking = Ranking.objects.get(ranker=trainer)
    assert ranking.ordering == [[candidate] for candidate in reversed(shown)]


def test_escape_leaves_the_flags_and_the_why_box_is_never_under_the_bar(
    page, live_server, ready_task, trainer
):
    page.set_viewport_size({"width": 1366, "height": 768})
    _open_task(page, live_server)
    items = page.locator(ITEMS)
    page.keyboard.press("1")
    page.keyboard.press("f")
    harmful = items.nth(0).get_by_label("Harmful")
    expect(harmful).to_be_focused()
    page.keyboard.press("2")  # a ticked box is not a text field: the ranking keys still work
    expect(page.locator("#ranking-order")).to_have_text("1  >  2")
    page.keyboard.press("Escape")
    expect(items.nth(0).locator("details.flags")).not_to_have_attribute("open", "")
    expect(items.nth(0)).to_be_focused()

    # "Cannot rank", then into "Why?" from the keyboard: scrolled above the sticky bar.
    page.get_by_label("Cannot rank").check()
    page.locator("#ranking-rationale").focus()
    box = page.locator("#ranking-rationale").bounding_box()
    bar = page.locator(".ranking-bar").bounding_box()
    assert box["y"] + box["height"] <= bar["y"]


def test_enter_after_leaving_the_flags_with_escape_submits(page, live_server, ready_task, trainer):
    """The shortcuts' "Enter: submit, once every reply is placed" holds after "f" and Escape.
    Before, Escape left the focus on the flags' summary, where Enter opened them again."""
    shown = _open_task(page, live_server)
    for key in ("2", "1", "f", "Space", "Escape", "4", "3", "Enter"):
        page.keyboard.press(key)

    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()
    ranking = Ranking.objects.get(ranker=trainer)
    assert ranking.ordering == [[shown[1]], [shown[0]], [shown[3]], [shown[2]]]
    assert ranking.flags == {str(shown[0]): {"flags": ["harmful"], "note": ""}}


def test_a_missing_flag_note_is_reported_and_the_placements_are_kept(
    page, live_server, ready_task, trainer
):
    shown = _open_task(page, live_server)
    items = page.locator(ITEMS)
    for key in ("2", "1", "4", "t", "3"):
        page.keyboard.press(key)
    items.nth(0).locator("summary").click()
    items.nth(0).get_by_label("Other").check()
    page.get_by_role("button", name="Submit ranking").click()

    expect(page.locator(".ranking-errors")).to_contain_text("Say what the problem is")
    expect(page.locator("#ranking-order")).to_have_text("2  >  1 = 4  >  3")
    expect(items.nth(0).get_by_label("Other")).to_be_checked()
    assert not Ranking.objects.exists()

    items.nth(0).locator(".flag-note").fill("made-up citation")
    page.get_by_role("button", name="Submit ranking").click()
    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()
    assert Ranking.objects.get(ranker=trainer).ordering == [
        [shown[1]],
        [shown[0], shown[3]],
        [shown[2]],
    ]


def test_enter_in_a_flag_note_sends_nothing(page, live_server, ready_task, trainer):
    shown = _open_task(page, live_server)
    items = page.locator(ITEMS)
    submits = []
    page.on(
        "request", lambda request: submits.append(request.url) if "/submit" in request.url else None
    )
    for key in ("1", "2", "3", "4", "f"):  # every reply placed; "f" opens reply 4's flags
        page.keyboard.press(key)
    items.nth(3).get_by_label("Untruthful").check()
    items.nth(3).locator(".flag-note").click()
    page.keyboard.type("the date is wrong")
    # The browser's own Enter in a text field would send the form with its first button.
    page.keyboard.press("Enter")
    page.keyboard.type(", and so is the place")
    page.keyboard.press("Control+Enter")

    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()
    ranking = Ranking.objects.get(ranker=trainer)
    assert ranking.flags == {
        str(shown[3]): {"flags": ["untruthful"], "note": "the date is wrong, and so is the place"}
    }
    assert len(submits) == 1


def test_enter_in_the_skip_reason_skips_the_task(page, live_server, ready_task, trainer):
    from ranking.models import Assignment

    _open_task(page, live_server)
    for key in ("1", "2", "3", "4"):  # every reply placed: Enter alone would send the ranking
        page.keyboard.press(key)
    page.locator("details.skip summary").click()
    reason = page.get_by_label("Reason for skipping (optional)")
    reason.fill("I do not know this topic")
    reason.press("Enter")

    expect(page.locator("#toast-region .toast")).to_contain_text("Task skipped")
    assert not Ranking.objects.exists()
    assignment = Assignment.objects.get(trainer=trainer, task=ready_task)
    assert assignment.status == Assignment.Status.SKIPPED
    assert assignment.skip_reason == "I do not know this topic"


def _kept_cards(page) -> list[str]:
    return page.evaluate("Object.keys(sessionStorage).filter(k => k.startsWith('tandem-rank:'))")


def test_a_reload_asks_first_and_keeps_the_placements_flags_and_reason(
    page, live_server, ready_task, trainer
):
    shown = _open_task(page, live_server)
    items = page.locator(ITEMS)
    for key in ("3", "1", "t", "f", "Space"):  # 3 tied with 1; Harmful ticked on reply 1
        page.keyboard.press(key)
    items.nth(0).locator(".flag-note").fill("a made-up figure")
    page.locator("#ranking-rationale").fill("3 and 1 answer; the others do not")
    first_ms = page.input_value("#ranking-first-placement")
    assert first_ms
    asked = []
    page.on("dialog", lambda dialog: (asked.append(dialog.type), dialog.accept()))
    page.reload()
    ranking_card_ready(page)

    assert asked == ["beforeunload"]
    expect(page.locator("#ranking-order")).to_have_text("3 = 1")
    expect(items.nth(0).get_by_label("Harmful")).to_be_checked()
    expect(items.nth(0).locator(".flag-note")).to_have_value("a made-up figure")
    expect(page.locator("#ranking-rationale")).to_have_value("3 and 1 answer; the others do not")
    expect(page.locator("#ranking-first-placement")).to_have_value(first_ms)
    for key in ("2", "4", "Enter"):
        page.keyboard.press(key)
    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()
    ranking = Ranking.objects.get(ranker=trainer)
    assert [sorted(group) for group in ranking.ordering] == [
        sorted([shown[2], shown[0]]),
        [shown[1]],
        [shown[3]],
    ]
    assert ranking.flags == {str(shown[0]): {"flags": ["harmful"], "note": "a made-up figure"}}
    assert ranking.rationale == "3 and 1 answer; the others do not"
    assert ranking.first_placement_ms == int(first_ms)
    # Sent: nothing is kept for its card any more, and leaving asks nothing.
    assert _kept_cards(page) == []
    with page.expect_event("close"):
        page.close(run_before_unload=True)
    assert asked == ["beforeunload"]


def test_back_to_placements_the_browser_put_back_still_records_the_first_placement(
    page, live_server, ready_task, trainer
):
    _open_task(page, live_server)
    # The lease held, the page's own HTML holds the task (not a card htmx swapped in): the
    # browser puts back what was entered in it on Back.
    page.reload()
    ranking_card_ready(page)
    page.keyboard.press("2")
    page.keyboard.press("4")
    page.on("dialog", lambda dialog: dialog.accept())  # leaving asks first
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Write").click()
    page.wait_for_url("**/write/")
    # Without the tab's own copy, Back shows what the browser itself puts back: the rank
    # numbers, not the hidden time to the first placement.
    page.evaluate("sessionStorage.clear()")
    page.go_back()
    ranking_card_ready(page)
    expect(page.locator("#ranking-order")).to_have_text("2  >  4")
    expect(page.locator("#ranking-first-placement")).to_have_value("")
    for key in ("1", "3", "Enter"):
        page.keyboard.press(key)
    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()
    assert Ranking.objects.get(ranker=trainer).first_placement_ms is not None


def test_the_rank_page_claims_only_by_post(page, live_server, ready_task, trainer):
    claims = []
    page.on(
        "request",
        lambda request: claims.append(request.method) if "/rank/claim/" in request.url else None,
    )
    _open_task(page, live_server)
    assert claims == ["POST"]


def test_waiting_page_polls_and_swaps_the_task_in_once_it_is_ready(
    page, live_server, policy, other_trainer, trainer, settings
):
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/rank/")
    expect(page.get_by_role("heading", name="Nothing to rank yet")).to_be_visible()
    expect(page.get_by_text("This page checks again every 3 seconds.")).to_be_visible()

    settings.RANKING_MAX_NEW_TOKENS = 8
    finished_conversation(other_trainer)
    task = services.ranking_task_create(
        rng=random.Random(0), alternatives=2, overlap=1, queue=False
    )
    services.ranking_task_prepare(task_id=task.pk)

    expect(page.locator(ITEMS)).to_have_count(3)
    expect(page.get_by_role("heading", name="Rank the replies")).to_be_visible()


def test_a_pool_that_cannot_be_filled_is_said_and_the_page_takes_the_task_once_it_can(
    page, live_server, policy, other_trainer, trainer, settings
):
    finished_conversation(other_trainer)
    failing = Project.objects.filter(slug=DEFAULT_PROJECT_SLUG)
    failing.update(pool_error="RuntimeError (the worker's log says more).")
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/rank/")
    expect(page.get_by_role("heading", name="Tasks cannot be prepared right now")).to_be_visible()
    expect(page.get_by_text("Preparing tasks")).to_have_count(0)
    expect(page.get_by_text("RuntimeError")).to_have_count(0)

    # A fill succeeds (it clears the project's error and makes a task): the poll takes it.
    settings.RANKING_MAX_NEW_TOKENS = 8
    failing.update(pool_error="")
    task = services.ranking_task_create(
        rng=random.Random(0), alternatives=2, overlap=1, queue=False
    )
    services.ranking_task_prepare(task_id=task.pk)

    expect(page.locator(ITEMS)).to_have_count(3)
    expect(page.get_by_role("heading", name="Rank the replies")).to_be_visible()


def test_a_reply_is_rated_and_reported_beside_the_ranking_and_both_are_kept(
    page, live_server, ready_task, trainer
):
    from labeling.models import Feedback

    _open_task(page, live_server)
    items = page.locator(ITEMS)
    first = _ids_shown(page)[0]
    message_id = ready_task.candidates.get(pk=first).message_id
    # Each reply's widget by the number it is shown under, never by its message's id.
    widget = page.locator("#feedback-reply-1")
    expect(widget.get_by_role("button", name="Thumbs down")).to_be_visible()  # loaded by htmx

    widget.get_by_role("button", name="Thumbs down").click()
    expect(widget.get_by_role("button", name="Thumbs down")).to_have_attribute(
        "aria-pressed", "true"
    )
    widget.locator("summary").click()
    widget.get_by_label("Untruthful").check()
    widget.get_by_label("Comment").fill("it invents a 1st place and 2 tickets")
    widget.get_by_role("button", name="Send report").click()
    expect(widget.locator("summary")).to_contain_text("Reported")

    # Typing in the report placed nothing; the ranking still submits.
    expect(items.locator(".rank-badge")).to_have_text(["Not placed"] * 4)
    shown = _ids_shown(page)
    page.locator("body").click(position={"x": 5, "y": 5})
    for key in ("4", "3", "2", "1", "Enter"):
        page.keyboard.press(key)
    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()

    assert Ranking.objects.get(ranker=trainer).ordering == [[cid] for cid in shown[::-1]]
    feedback = Feedback.objects.get(user=trainer, message_id=message_id)
    assert feedback.rating == "down" and feedback.categories == ["untruthful"]
    assert feedback.comment == "it invents a 1st place and 2 tickets"


@pytest.fixture
def second_task(ready_task, other_trainer):
    """Another ready task for tess, after ready_task (built without running the model)."""
    conversation = finished_conversation(other_trainer, turns=("second question?", "an answer."))
    return task_from_source(conversation.active_leaf, model_version=ready_task.model_version)


def test_after_submit_the_next_task_is_at_the_top_with_focus_and_a_toast_can_undo(
    page, live_server, ready_task, second_task, trainer, settings
):
    settings.RANKING_UNDO_SECONDS = 600  # the window is a setting: no waiting on a clock
    page.set_viewport_size({"width": 1366, "height": 600})
    shown = _open_task(page, live_server)
    first_card = page.locator("#ranking-card").get_attribute("data-assignment-id")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    assert page.evaluate("window.scrollY") > 0
    for key in ("2", "1", "4", "3", "Enter"):
        page.keyboard.press(key)

    card = page.locator("#ranking-card")
    expect(card).not_to_have_attribute("data-assignment-id", first_card)
    expect(page.locator("#ranking-title")).to_be_focused()
    wait_until(page, "window.scrollY === 0")
    expect(page.locator(ITEMS)).to_have_count(4)
    toast = page.locator("#toast-region .toast")
    expect(toast).to_contain_text("Ranking saved.")
    ready_task.refresh_from_db()
    assert ready_task.rankings_count == 1 and Ranking.objects.filter(ranker=trainer).count() == 1

    toast.get_by_role("button", name="Undo").click()

    expect(card).to_have_attribute("data-assignment-id", first_card)
    expect(page.locator("#ranking-order")).to_have_text("2  >  1  >  4  >  3")
    expect(page.locator("#toast-region .toast")).to_contain_text("Ranking taken back")
    assert not Ranking.objects.filter(ranker=trainer).exists()
    ready_task.refresh_from_db()
    assert ready_task.rankings_count == 0
    # Changed and sent again.
    for key in ("u", "u", "3", "4"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    expect(card).not_to_have_attribute("data-assignment-id", first_card)
    assert Ranking.objects.get(ranker=trainer, task=ready_task).ordering == [
        [shown[1]],
        [shown[0]],
        [shown[2]],
        [shown[3]],
    ]


def test_once_the_undo_window_is_over_the_toast_and_its_undo_are_gone(
    page, live_server, ready_task, trainer, settings
):
    settings.RANKING_UNDO_SECONDS = 0
    _open_task(page, live_server)
    for key in ("1", "2", "3", "4", "Enter"):
        page.keyboard.press(key)
    expect(page.get_by_role("heading", name="You ranked everything available")).to_be_visible()
    expect(page.locator("#toast-region .toast")).to_have_count(0)
    assert Ranking.objects.filter(ranker=trainer).count() == 1


REPLY_300 = (
    "Thursday works. The room on the second floor is free from two to four, and the projector "
    "there was fixed last week. I will send the invitation with the agenda attached; please "
    "add anything missing by Wednesday noon so everyone can read it beforehand. Bring the "
    "figures from the last quarter too. Thx."
)


def test_three_replies_of_300_characters_fit_on_a_laptop_screen_and_long_ones_fold(
    page, live_server, ready_task, trainer
):
    from labeling.models import Message

    assert len(REPLY_300) == 300
    messages = [c.message_id for c in ready_task.candidates.order_by("position")]
    Message.objects.filter(pk__in=messages[:3]).update(content=REPLY_300)
    Message.objects.filter(pk=messages[3]).update(content=(REPLY_300 + "\n\n") * 8)
    page.set_viewport_size({"width": 1366, "height": 768})
    _open_task(page, live_server)

    # Fully in view: below the top of the window, above the sticky bar holding the order.
    bar_top = page.locator(".ranking-bar").bounding_box()["y"]
    rects = [item.bounding_box() for item in page.locator(ITEMS).all()]
    fully_visible = [r for r in rects if r["y"] >= 0 and r["y"] + r["height"] <= min(768, bar_top)]
    assert len(fully_visible) >= 3, (bar_top, rects)
    long_one = page.locator(f"{ITEMS}[data-candidate-id]").filter(
        has=page.locator(".unfold:not([hidden])")
    )
    expect(long_one).to_have_count(1)
    folded_height = long_one.bounding_box()["height"]
    long_one.locator(".unfold").click()
    expect(long_one.locator(".unfold")).to_have_attribute("aria-expanded", "true")
    assert long_one.bounding_box()["height"] > folded_height * 1.5


def test_a_long_prompt_folds_with_a_button_that_shows_all_of_it(
    page, live_server, ready_task, trainer
):
    from labeling.models import Message

    long_prompt = "\n\n".join(
        [
            REPLY_300,
            "```\ncode line 1\ncode line 2\n```",
            "| a | b |\n|---|---|\n| 1 | 2 |",
            "THE END",
        ]
    )
    Message.objects.filter(pk=ready_task.prefix_message_id).update(content=long_prompt)
    page.set_viewport_size({"width": 1366, "height": 768})
    _open_task(page, live_server)

    prompt = page.locator(".ranking-prefix .turn-body").last
    button = prompt.get_by_role("button", name="Show all of this turn")
    expect(button).to_be_visible()
    folded_height = prompt.bounding_box()["height"]
    button.click()
    expect(prompt.locator(".unfold")).to_have_attribute("aria-expanded", "true")
    assert prompt.bounding_box()["height"] > folded_height * 1.5
    end = prompt.get_by_text("THE END")
    box, text_box = prompt.locator(".markdown").bounding_box(), end.bounding_box()
    assert text_box["y"] + text_box["height"] <= box["y"] + box["height"] + 1


def test_question_mark_lists_the_shortcuts(page, live_server, ready_task, trainer):
    _open_task(page, live_server)
    # With JavaScript the hint for the shortcuts is shown, and the one for typing numbers not.
    expect(page.locator("#ranking-help .shortcut-help")).to_be_visible()
    expect(page.locator("#ranking-help .no-js-help")).to_be_hidden()
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_hidden()
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Undo the last placement")
    expect(page.locator("#guidelines-panel")).to_be_hidden()  # "?" is this page's own key
    page.keyboard.press("?")  # "Show or hide this list": the open list has the focus
    expect(dialog).to_be_hidden()
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # "g" opens the guidelines; Escape closes them and focus goes back to the card, where the
    # ranking keys are (not to the toggle, where Enter would open the panel again).
    panel = page.locator("#guidelines-panel")
    expect(panel).to_be_attached()
    page.keyboard.press("g")
    expect(panel).to_be_visible()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(page.locator("#ranking-title")).to_be_focused()


def test_two_replies_are_shown_side_by_side(page, live_server, other_trainer, trainer):
    conversation = finished_conversation(other_trainer, turns=("which is clearer?", "this one."))
    model_version = model_version_create("side-by-side")
    task_from_source(conversation.active_leaf, model_version=model_version, alternatives=1)
    page.set_viewport_size({"width": 1366, "height": 768})
    _open_task(page, live_server, count=2)

    first, second = (item.bounding_box() for item in page.locator(ITEMS).all())
    assert first["y"] == second["y"] and second["x"] > first["x"] + first["width"] - 1
    toggle = page.get_by_role("button", name="Side by side")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    first, second = (item.bounding_box() for item in page.locator(ITEMS).all())
    assert second["y"] >= first["y"] + first["height"]
    page.locator("#ranking-title").focus()  # Enter on the toggle would press it again
    for key in ("2", "1", "Enter"):
        page.keyboard.press(key)
    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()


def test_a_conflict_is_shown_at_the_top_where_the_trainer_looks_and_keeps_the_answer(
    page, live_server, ready_task, trainer
):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.services import user_create_trainer
    from ranking.models import Assignment

    page.set_viewport_size({"width": 1366, "height": 600})
    _open_task(page, live_server)
    # Meanwhile the lease runs out and two other trainers complete the task.
    Assignment.objects.filter(trainer=trainer).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    for username in ("uma", "ugo"):
        other = user_create_trainer(username=username, password="a-Strong-passw0rd-x")
        lease = services.task_claim_next(trainer=other)
        services.ranking_submit(
            assignment=lease,
            trainer=other,
            ranking=services.RankingInput(ordering=[[i] for i in lease.presentation_order]),
        )
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    for key in ("3", "1", "2", "4", "Enter"):
        page.keyboard.press(key)

    alert = page.locator(".ranking-conflict")
    expect(alert).to_contain_text("Your lease on this task ran out")
    wait_until(page, "window.scrollY === 0")
    box = alert.bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 600
    expect(page.locator("#ranking-order")).to_have_text("3  >  1  >  2  >  4")  # still there
    assert not Ranking.objects.filter(ranker=trainer).exists()


def _guidelines_read_from_the_banner(page, version: int = 1) -> None:
    """The banner's "Read them", then "I have read version N" in the panel, with the mouse."""
    expect(page.locator(".guidelines-banner")).to_be_visible()
    page.locator(".guidelines-banner").get_by_role("button", name="Read them").click()
    expect(page.locator("#guidelines-panel")).to_be_visible()
    page.get_by_role("button", name=f"I have read version {version}").click()
    expect(page.locator(".guidelines-banner")).to_have_count(0)
    expect(page.locator("#guidelines-panel")).to_be_hidden()


def test_the_keys_submit_after_the_guidelines_are_accepted_on_the_ranking_page(
    page, live_server, other_trainer, trainer
):
    """A trainer new to the guidelines starts ranking, reads and accepts them, then ranks from
    the keyboard. Before, the acceptance left the focus on the corner's "Guidelines v1" button,
    where Enter opened the guidelines again and sent nothing."""
    conversation = finished_conversation(other_trainer, turns=("plan my weekend", "sure."))
    model_version = model_version_create("five")
    task = task_from_source(conversation.active_leaf, model_version=model_version, alternatives=4)
    log_in(page, live_server, "tess", PASSWORD)
    page.get_by_role("link", name="Start ranking").click()
    page.wait_for_url(f"{live_server.url}/rank/")
    ranking_card_ready(page, 5)
    shown = _ids_shown(page)

    _guidelines_read_from_the_banner(page)
    for key in ("1", "2", "3", "4", "5"):
        page.keyboard.press(key)
    expect(page.locator("#ranking-order")).to_have_text("1  >  2  >  3  >  4  >  5")
    page.keyboard.press("Enter")

    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()
    expect(page.locator("#guidelines-panel")).to_be_hidden()
    ranking = Ranking.objects.get(ranker=trainer, task=task)
    assert ranking.ordering == [[candidate] for candidate in shown]


@pytest.mark.parametrize("closing", ["Escape", "g", "close button"])
def test_the_keys_submit_after_the_guidelines_panel_is_closed(
    page, live_server, ready_task, trainer, closing
):
    """Opened with "g" and closed (Escape, "g" again, its x), the panel gives the focus back
    to the ranking card: Enter submits rather than open the panel again from its toggle."""
    shown = _open_task(page, live_server)
    expect(page.locator("#guidelines-panel")).to_be_attached()
    page.keyboard.press("g")
    expect(page.locator("#guidelines-panel")).to_be_visible()
    if closing == "close button":
        page.get_by_role("button", name="Close the guidelines").click()
    else:
        page.keyboard.press(closing)
    expect(page.locator("#guidelines-panel")).to_be_hidden()
    expect(page.locator("#ranking-title")).to_be_focused()
    for key in ("4", "3", "2", "1", "Enter"):
        page.keyboard.press(key)

    expect(page.get_by_role("status").filter(has_text="Ranking saved.")).to_be_visible()
    assert Ranking.objects.get(ranker=trainer).ordering == [[c] for c in reversed(shown)]


def test_the_keys_submit_on_the_task_after_a_skip(
    page, live_server, ready_task, second_task, trainer
):
    _open_task(page, live_server)
    page.locator("details.skip summary").click()
    page.get_by_role("button", name="Skip task").click()
    expect(page.locator("#toast-region .toast")).to_contain_text("Task skipped")
    ranking_card_ready(page)
    expect(page.locator("#ranking-title")).to_be_focused()
    shown = _ids_shown(page)
    for key in ("1", "2", "3", "4", "Enter"):
        page.keyboard.press(key)

    expect(page.locator("#toast-region .toast").last).to_contain_text("Ranking saved.")
    assert Ranking.objects.get(ranker=trainer, task=second_task).ordering == [[c] for c in shown]


def test_the_saved_toast_covers_nothing_but_the_bar_it_sits_in(
    page, live_server, ready_task, second_task, trainer, settings
):
    """At 1366x768 the "Ranking saved / Undo" toast floated over the next task's "Why?" box:
    the sticky bar now makes room for it at its bottom, so it covers nothing the bar does not,
    none of the bar's own controls either; and the "Why?" box still scrolls clear of the bar."""
    settings.RANKING_UNDO_SECONDS = 600
    page.set_viewport_size({"width": 1366, "height": 768})
    _open_task(page, live_server)
    for key in ("2", "1", "4", "3", "Enter"):
        page.keyboard.press(key)
    toast = page.locator("#toast-region .toast")
    expect(toast).to_contain_text("Ranking saved.")
    expect(page.locator(ITEMS)).to_have_count(4)

    def inside(inner, outer) -> bool:
        return (
            inner["x"] >= outer["x"] - 0.5
            and inner["y"] >= outer["y"] - 0.5
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 0.5
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 0.5
        )

    def overlap(a, b) -> bool:
        return (
            a["x"] < b["x"] + b["width"]
            and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"]
            and b["y"] < a["y"] + a["height"]
        )

    bar = page.locator(".ranking-bar")
    toast_box = toast.bounding_box()
    assert inside(toast_box, bar.bounding_box()), (toast_box, bar.bounding_box())
    controls = bar.locator("button:visible, summary:visible, input:visible, .ranking-order")
    for index in range(controls.count()):
        assert not overlap(toast_box, controls.nth(index).bounding_box()), index

    page.locator("#ranking-rationale").focus()
    box = page.locator("#ranking-rationale").bounding_box()
    assert box["y"] + box["height"] <= bar.bounding_box()["y"]
