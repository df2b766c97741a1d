"""Screenshots of the main pages, for the README. ``make screenshots`` runs this with
SCREENSHOTS_DIR=docs/screenshots; otherwise they go to a temporary directory and the test only
checks that every page rendered."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from labeling.models import Conversation, Message
from tests.browser.conftest import log_in, ranking_card_ready, wait_until
from tests.conftest import PASSWORD
from tests.ranking import conftest as ranking_fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ready_task = ranking_fixtures.ready_task


def test_screenshots_of_rank_write_and_the_dashboards(
    page, live_server, ready_task, trainer, admin_user, tmp_path, settings
):
    settings.RANKING_UNDO_SECONDS = 600  # the toast stays for the screenshot of the next page
    target = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1366, "height": 768})
    conversation = Conversation.objects.create(owner=trainer, title="Planning the offsite")
    Message.objects.create(
        conversation=conversation, role="user", content="Where should we hold the offsite?"
    )

    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/rank/")
    ranking_card_ready(page)
    for key in ("2", "4"):
        page.keyboard.press(key)
    page.screenshot(path=target / "rank.png")
    for key in ("1", "3", "Enter"):
        page.keyboard.press(key)
    expect(page.get_by_role("heading", name="You ranked everything available")).to_be_visible()
    expect(page.locator("#toast-region .toast")).to_contain_text("Ranking saved.")
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    page.fill("#composer-text", "Somewhere quiet, close to a train station.")
    page.screenshot(path=target / "write.png")
    page.goto(f"{live_server.url}/")
    page.screenshot(path=target / "trainer-home.png", full_page=True)

    page.context.clear_cookies()
    log_in(page, live_server, "ada", PASSWORD)
    wait_until(page, "document.querySelector('#chart-per-day')?.dataset.drawn === 'true'")
    page.screenshot(path=target / "admin-home.png", full_page=True)

    for name in ("rank", "write", "trainer-home", "admin-home"):
        assert (target / f"{name}.png").stat().st_size > 10_000
