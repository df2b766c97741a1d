"""Every app page: no serious or critical axe-core violation, unique element ids, and the
trainer's pages usable on a phone (390 x 844) without sideways scrolling."""

from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from labeling.models import Conversation
from tests.browser.conftest import WAIT_MS, log_in, ranking_card_ready
from tests.conftest import PASSWORD
from tests.ranking import conftest as ranking_fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ready_task = ranking_fixtures.ready_task

AXE = Path(settings.BASE_DIR, "node_modules", "axe-core", "axe.min.js").read_text()

TRAINER_PAGES = [
    "/",
    "/write/",
    "/write/{conversation}/",
    "/rank/",
    "/compare/vote/",
    "/generate/",
    "/write/feedback/mine/",
    "/write/guidelines/",
    "/rank/projects/",
    "/accounts/",
]
ADMIN_PAGES = [
    "/",
    "/exports/",
    "/training/",
    "/models/",
    "/rank/quality/",
    "/write/feedback/",
    "/write/redteam/",
    "/projects/",
    "/projects/default/",
    "/rank/quality/tasks/{task}/",
    "/accounts/",
]


@pytest.fixture
def axe_page(browser):
    # Only the test's own axe-core injection bypasses the Content-Security-Policy.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


def _settled(page) -> None:
    page.wait_for_load_state("networkidle")
    page.wait_for_function("!document.querySelector('.htmx-request')")


def _problems(page) -> list[str]:
    if not page.evaluate("Boolean(window.axe)"):
        page.evaluate(AXE)
    violations = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations
              .filter(v => v.impact === "serious" || v.impact === "critical")
              .map(v => `${v.id} (${v.impact}): `
                + v.nodes.map(n => n.target.join(" ")).join(", "));
        }"""
    )
    duplicates = page.evaluate(
        """() => {
            const seen = {};
            document.querySelectorAll("[id]").forEach(e => { seen[e.id] = (seen[e.id] || 0) + 1; });
            return Object.keys(seen).filter(id => seen[id] > 1);
        }"""
    )
    return violations + [f"duplicate id: {value}" for value in duplicates]


def _check_pages(page, live_server, pages) -> dict[str, list[str]]:
    found = {}
    for url in pages:
        response = page.goto(f"{live_server.url}{url}")
        assert response.status == 200, url
        _settled(page)
        problems = _problems(page)
        if problems:
            found[url] = problems
    return found


def test_trainer_pages_have_no_serious_accessibility_violations(
    axe_page, live_server, ready_task, trainer
):
    conversation = Conversation.objects.create(owner=trainer, title="Axe check")
    log_in(axe_page, live_server, "tess", PASSWORD)
    pages = [url.format(conversation=conversation.pk) for url in TRAINER_PAGES]

    assert _check_pages(axe_page, live_server, pages) == {}


def test_admin_pages_have_no_serious_accessibility_violations(
    axe_page, live_server, ready_task, admin_user
):
    log_in(axe_page, live_server, "ada", PASSWORD)
    pages = [url.format(task=ready_task.pk) for url in ADMIN_PAGES]

    assert _check_pages(axe_page, live_server, pages) == {}


def _no_sideways_scroll(page) -> None:
    _settled(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{page.url} is {width} px wide on a 390 px screen"


def test_write_rank_and_exports_fit_a_phone(page, live_server, ready_task, trainer, admin_user):
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, live_server, "tess", PASSWORD)
    _no_sideways_scroll(page)
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Write").click()
    page.fill("#id_title", "On the phone")
    page.get_by_role("button", name="Start writing").click()
    expect(page.get_by_role("heading", name="On the phone")).to_be_visible()
    page.fill("#composer-text", "a question typed on a phone")
    page.locator("#composer button[type=submit]").click()
    expect(page.locator("ol.transcript > li.turn")).to_have_count(1)
    _no_sideways_scroll(page)

    page.get_by_role("button", name="Menu").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Rank").click()
    ranking_card_ready(page)
    _no_sideways_scroll(page)
    for key in ("4", "3", "2", "1"):
        page.keyboard.press(key)
    page.get_by_role("button", name="Submit ranking").click()
    expect(page.locator("#toast-region .toast")).to_contain_text("Ranking saved.")
    _no_sideways_scroll(page)

    page.context.clear_cookies()
    log_in(page, live_server, "ada", PASSWORD)
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Exports").click()
    expect(page.get_by_role("heading", name="Exports", exact=True)).to_be_visible()
    _no_sideways_scroll(page)
