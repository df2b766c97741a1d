"""The Rank page in a browser with JavaScript turned off: plain forms and redirects only."""

import pytest
from playwright.sync_api import expect

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
