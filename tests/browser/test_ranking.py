import random

import pytest
from playwright.sync_api import expect

from ranking.models import Ranking
from ranking.rank import services
from tests.browser.conftest import log_in
from tests.conftest import PASSWORD
from tests.ranking import conftest as ranking_fixtures
from tests.ranking.conftest import finished_conversation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A prepared task from other_trainer's conversation (sampled in-process, no worker needed).
ready_task = ranking_fixtures.ready_task

ITEMS = "#ranking-list > li.candidate"


def _on_screen(page) -> list[list[int]]:
    """The ranking as the page shows it: tie groups of candidate ids, top to bottom."""
    rows = page.eval_on_selector_all(
        ITEMS,
        "items => items.map(item => [Number(item.dataset.candidateId),"
        " item.querySelector('.tie-input').checked])",
    )
    groups: list[list[int]] = []
    for candidate_id, tied in rows:
        if tied and groups:
            groups[-1].append(candidate_id)
        else:
            groups.append([candidate_id])
    return groups


def _ids(page) -> list[int]:
    return [candidate for group in _on_screen(page) for candidate in group]


def _drag(page, source, target) -> None:
    """Real mouse moves in small steps: SortableJS reacts to movement, not to a jump."""
    start = source.bounding_box()
    end = target.bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2 + 5, steps=3)
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 4, steps=20)
    page.mouse.up()


def test_trainer_ranks_by_drag_and_keyboard_with_a_tie_and_a_flag(
    page, live_server, ready_task, trainer
):
    page.set_viewport_size({"width": 1280, "height": 1800})  # every reply on screen to drag
    log_in(page, live_server, "tess", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Rank").click()
    items = page.locator(ITEMS)
    expect(items).to_have_count(4)
    shown = _ids(page)
    expect(items.locator(".rank-badge")).to_have_text(["1", "2", "3", "4"])

    # Drag the last reply to the top by its handle.
    _drag(page, items.nth(3).locator(".drag-handle"), items.nth(0))
    expect(items.first).to_have_attribute("data-candidate-id", str(shown[3]))
    assert _ids(page) == [shown[3], shown[0], shown[1], shown[2]]

    # Keyboard: the reply now third goes up one, then the last goes to position 1 with "1".
    items.nth(2).focus()
    page.keyboard.press("ArrowUp")
    assert _ids(page) == [shown[3], shown[1], shown[0], shown[2]]
    expect(items.nth(1)).to_be_focused()
    items.nth(3).focus()
    page.keyboard.press("1")
    assert _ids(page) == [shown[2], shown[3], shown[1], shown[0]]

    # Tie the third reply with the second ("t"), flag the last one.
    items.nth(2).focus()
    page.keyboard.press("t")
    expect(items.locator(".rank-badge")).to_have_text(["1", "2 (tie)", "2 (tie)", "3"])
    assert [items.nth(i).locator(".rank-input").input_value() for i in range(4)] == [
        "1",
        "2",
        "2",
        "3",
    ]
    last = items.nth(3)
    last.get_by_label("Untruthful").check()
    page.fill("#ranking-rationale", "Clear and correct first.")

    before_submit = _on_screen(page)
    flagged = int(last.get_attribute("data-candidate-id"))
    assert before_submit == [[shown[2]], [shown[3], shown[1]], [shown[0]]]

    page.locator("#ranking-rationale").press("Control+Enter")

    expect(page.get_by_role("status")).to_contain_text("Ranking saved.")
    expect(page.get_by_role("heading", name="Preparing tasks…")).to_be_visible()
    ranking = Ranking.objects.get(ranker=trainer)
    assert ranking.ordering == before_submit
    assert ranking.flags == {str(flagged): {"flags": ["untruthful"], "note": ""}}
    assert ranking.rationale == "Clear and correct first."


def test_a_missing_flag_note_is_reported_and_the_order_is_kept(
    page, live_server, ready_task, trainer
):
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/rank/")
    items = page.locator(ITEMS)
    expect(items).to_have_count(4)
    items.nth(1).focus()
    page.keyboard.press("ArrowUp")
    items.nth(1).focus()
    page.keyboard.press("t")
    arranged = _on_screen(page)
    items.nth(0).get_by_label("Other").check()
    page.get_by_role("button", name="Submit ranking").click()

    expect(page.locator(".ranking-errors")).to_contain_text("Say what the problem is")
    assert _on_screen(page) == arranged
    expect(items.nth(0).get_by_label("Other")).to_be_checked()
    assert not Ranking.objects.exists()

    items.nth(0).locator(".flag-note").fill("made-up citation")
    page.get_by_role("button", name="Submit ranking").click()
    expect(page.get_by_role("status")).to_contain_text("Ranking saved.")
    assert Ranking.objects.get(ranker=trainer).ordering == arranged


def test_waiting_page_polls_and_swaps_the_task_in_once_it_is_ready(
    page, live_server, policy, other_trainer, trainer, settings
):
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/rank/")
    expect(page.get_by_role("heading", name="Preparing tasks…")).to_be_visible()

    settings.RANKING_MAX_NEW_TOKENS = 8
    finished_conversation(other_trainer)
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

    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/rank/")
    items = page.locator(ITEMS)
    expect(items).to_have_count(4)
    first = int(items.first.get_attribute("data-candidate-id"))
    message_id = ready_task.candidates.get(pk=first).message_id
    widget = page.locator(f"#feedback-message-{message_id}")
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

    # The ranking is untouched by typing in the report, and still submits.
    assert _ids(page)[0] == first
    items.nth(3).focus()
    page.keyboard.press("1")
    arranged = _on_screen(page)
    page.get_by_role("button", name="Submit ranking").click()
    expect(page.get_by_role("status")).to_contain_text("Ranking saved.")

    assert Ranking.objects.get(ranker=trainer).ordering == arranged
    feedback = Feedback.objects.get(user=trainer, message_id=message_id)
    assert feedback.rating == "down" and feedback.categories == ["untruthful"]
    assert feedback.comment == "it invents a 1st place and 2 tickets"
