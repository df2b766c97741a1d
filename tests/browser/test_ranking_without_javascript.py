"""The Rank page in a browser with JavaScript turned off: plain forms and redirects only."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from ranking.models import Ranking
from tests.browser.conftest import log_in
from tests.conftest import PASSWORD
from tests.ranking import conftest as ranking_fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A prepared task from other_trainer's conversation (sampled in-process, no worker needed).
ready_task = ranking_fixtures.ready_task


def _open_task(page, live_server) -> None:
    log_in(page, live_server, "tess", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Rank").click()
    page.get_by_role("button", name="Start ranking").click()
    expect(page.locator("#ranking-list > li.candidate")).to_have_count(4)


def test_without_javascript_the_page_offers_no_keyboard_shortcuts(
    no_js_page, live_server, ready_task, trainer
):
    page = no_js_page
    _open_task(page, live_server)

    expect(page.locator("#ranking-help .no-js-help")).to_be_visible()
    expect(page.locator("#ranking-help .shortcut-help")).to_be_hidden()
    expect(page.get_by_text("lists every shortcut")).to_be_hidden()
    # The order line is the script's (it fills it in as replies are placed).
    expect(page.locator(".ranking-order")).to_be_hidden()


def test_without_javascript_the_waiting_page_promises_no_checking_by_itself(
    no_js_page, live_server, trainer
):
    page = no_js_page
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/rank/")
    page.get_by_role("button", name="Start ranking").click()

    expect(page.get_by_role("heading", name="Nothing to rank yet")).to_be_visible()
    expect(page.get_by_text("checks again every 3 seconds")).to_be_hidden()
    expect(page.get_by_role("button", name="Check now")).to_be_visible()


def test_without_javascript_a_trainer_submits_undoes_sees_their_answer_and_reloads(
    no_js_page, live_server, ready_task, trainer, settings
):
    settings.RANKING_UNDO_SECONDS = 600  # the window is a setting: no waiting on a clock
    page = no_js_page
    _open_task(page, live_server)
    for number, rank in zip("1234", "2113", strict=True):
        page.get_by_label(f"Rank of reply {number} (1 = best)").fill(rank)
    page.get_by_label("Why?").fill("one and two are as good")
    page.get_by_role("button", name="Submit ranking").click()

    saved = page.locator(".message").filter(has_text="Ranking saved.")
    expect(saved).to_be_visible()
    expect(page.get_by_role("heading", name="You ranked everything available")).to_be_visible()
    assert Ranking.objects.filter(ranker=trainer).count() == 1

    saved.get_by_role("button", name="Undo").click()

    expect(page.get_by_text("Ranking taken back: change it and submit again.")).to_be_visible()
    assert page.url == f"{live_server.url}{reverse('ranking:rank')}"  # redirected: a GET
    ranks = [page.get_by_label(f"Rank of reply {number} (1 = best)") for number in "1234"]
    for box, rank in zip(ranks, "2113", strict=True):
        expect(box).to_have_value(rank)
    expect(page.get_by_label("Why?")).to_have_value("one and two are as good")
    assert not Ranking.objects.filter(ranker=trainer).exists()

    response = page.reload()

    assert response.status == 200
    expect(page.get_by_role("heading", name="Rank the replies")).to_be_visible()
    expect(page.get_by_text("Ranking taken back")).to_have_count(0)
    assert not Ranking.objects.filter(ranker=trainer).exists()
    # Answered again and sent: stored once.
    for box, rank in zip(ranks, "1234", strict=True):
        box.fill(rank)
    page.get_by_role("button", name="Submit ranking").click()
    expect(page.locator(".message").filter(has_text="Ranking saved.")).to_be_visible()
    assert len(Ranking.objects.get(ranker=trainer).ordering) == 4


def test_without_javascript_no_undo_is_offered_once_the_window_is_over(
    no_js_page, live_server, ready_task, trainer, settings
):
    settings.RANKING_UNDO_SECONDS = 0
    page = no_js_page
    _open_task(page, live_server)
    for number in "1234":
        page.get_by_label(f"Rank of reply {number} (1 = best)").fill(number)
    page.get_by_role("button", name="Submit ranking").click()

    expect(page.locator(".message").filter(has_text="Ranking saved.")).to_be_visible()
    expect(page.get_by_role("button", name="Undo")).to_have_count(0)
    assert Ranking.objects.filter(ranker=trainer).count() == 1


def test_without_javascript_a_trainer_rates_a_reply_and_comes_back_to_the_task(
    no_js_page, live_server, ready_task, trainer
):
    """The feedback slot under each reply is a link without JavaScript: to a page about that
    reply, by the number it is shown under, which names neither its message nor its model."""
    from labeling.models import Feedback
    from ranking.models import Assignment

    page = no_js_page
    _open_task(page, live_server)
    slot = page.locator("li[data-feedback-for='2']")
    slot.get_by_role("link", name="Rate or report this").click()

    expect(
        page.get_by_role("heading", name="Feedback on Reply 2 of a task you rank")
    ).to_be_visible()
    assert ready_task.model_version.name not in page.content()
    page.get_by_role("button", name="Thumbs down").click()
    expect(page.get_by_text("Thanks, your feedback is saved.")).to_be_visible()
    expect(page.get_by_role("button", name="Thumbs down")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("link", name="Back to ranking").click()
    expect(page.locator("#ranking-list > li.candidate")).to_have_count(4)

    lease = Assignment.objects.get(trainer=trainer)
    reply = ready_task.candidates.get(pk=lease.presentation_order[1])
    feedback = Feedback.objects.get(user=trainer)
    assert (feedback.message_id, feedback.rating) == (reply.message_id, "down")
