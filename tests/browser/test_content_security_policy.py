"""The app's pages work under its Content-Security-Policy: using them reports no violation.

Every page is opened (and used where it has something to use: the editor's autosave and
keyboard shortcuts, the ranking screen, the account page) with a listener for
``securitypolicyviolation`` events and for the console errors Chromium writes when it blocks
something; none may come."""

import pytest
from playwright.sync_api import expect

from labeling.conversations.models import Conversation
from tests.browser.conftest import log_in
from tests.conftest import PASSWORD
from tests.ranking import conftest as ranking_fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ready_task = ranking_fixtures.ready_task

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
      + ` at ${event.sourceFile}:${event.lineNumber}`
  );
});
"""

PAGES = [
    "/",
    "/write/",
    "/write/guidelines/",
    "/write/feedback/",
    "/write/feedback/mine/",
    "/write/redteam/",
    "/rank/",
    "/rank/quality/",
    "/compare/vote/",
    "/generate/",
    "/exports/",
    "/training/",
    "/models/",
    "/accounts/",
]


@pytest.fixture
def watched_page(page):
    """The page, recording CSP violations (events and Chromium's console errors)."""
    console_errors: list[str] = []
    page.context.add_init_script(RECORD_VIOLATIONS)
    page.on(
        "console",
        lambda message: (
            console_errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    page.console_errors = console_errors
    return page


def _violations(page) -> list[str]:
    return page.evaluate("window.__cspViolations || []") + page.console_errors


def test_main_pages_in_use_report_no_csp_violation(
    watched_page, live_server, admin_user, ready_task
):
    page = watched_page
    page.goto(f"{live_server.url}/accounts/login/")
    assert _violations(page) == []
    log_in(page, live_server, "ada", PASSWORD)

    for path in PAGES:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("load")
        assert _violations(page) == [], path

    # The editor: htmx posts, autosave, the keyboard shortcuts (static JS, not htmx filters).
    page.goto(f"{live_server.url}/write/")
    if page.locator("details.card[open]").count() == 0:  # closed once there are conversations
        page.locator("details.card > summary").click()
    page.fill("#id_title", "CSP check")
    page.get_by_role("button", name="Start writing").click()
    expect(page.get_by_role("heading", name="CSP check")).to_be_visible()
    page.fill("#composer-text", "hello under a strict policy")
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")
    page.locator("#composer-text").press("Control+Enter")
    expect(page.locator("ol.transcript > li.turn")).to_have_count(1)
    assert _violations(page) == []

    # The ranking screen with a task (drag-and-drop library, keyboard ranking).
    page.goto(f"{live_server.url}/rank/")
    start = page.get_by_role("button", name="Start ranking")
    if start.count():
        start.click()
    expect(page.locator("#ranking-list > li.candidate").first).to_be_visible()
    page.locator("#ranking-list > li.candidate").first.focus()
    page.keyboard.press("ArrowDown")
    assert _violations(page) == []

    # The account page: a token is made and shown once.
    page.goto(f"{live_server.url}/accounts/")
    page.fill("#id_name", "a script")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_be_visible()
    assert page.locator("#new-token").input_value().startswith("tdm_")
    # Reloading neither makes another token (post/redirect/get) nor shows this one again.
    page.reload()
    expect(page.locator("table.tokens tbody tr")).to_have_count(1)
    expect(page.locator("#new-token")).to_have_count(0)
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("table.tokens tr.revoked")).to_have_count(1)
    assert _violations(page) == []


def test_a_resized_composer_swapped_by_htmx_reports_no_csp_violation(
    watched_page, live_server, trainer
):
    """Dragging a textarea's corner gives it an inline ``style`` (through the CSSOM, which the
    policy allows). When htmx swaps in the next composer with the same id, its settle step must
    not copy that attribute over with ``setAttribute``: the policy refuses that."""
    page = watched_page
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/write/")
    if page.locator("details.card[open]").count() == 0:
        page.locator("details.card > summary").click()
    page.fill("#id_title", "Resized")
    page.get_by_role("button", name="Start writing").click()
    expect(page.get_by_role("heading", name="Resized")).to_be_visible()
    for turns, text in enumerate(["first turn", "second turn"], start=1):
        page.evaluate("document.querySelector('#composer-text').style.height = '160px'")
        assert page.locator("#composer-text").get_attribute("style") == "height: 160px;"
        page.fill("#composer-text", text)
        page.locator("#composer-text").press("Control+Enter")
        expect(page.locator("ol.transcript > li.turn")).to_have_count(turns)
        # The new composer is in place (htmx settles it 20 ms after the swap).
        expect(page.locator("#composer-text")).to_have_value("")
        page.wait_for_timeout(200)
    assert _violations(page) == []


def test_a_violation_would_be_seen(watched_page, live_server):
    """The listener works: an inline script injected into the page is blocked and recorded."""
    page = watched_page
    page.goto(f"{live_server.url}/accounts/login/")
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
        " document.body.appendChild(s); }"
    )
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.ran") is None
    assert any("script-src" in violation for violation in _violations(page))


def test_the_django_admin_in_use_reports_no_csp_violation(
    watched_page, live_server, admin_user, ready_task
):
    """The admin's own scripts (filters, date widgets, the action bar, the collapsible
    fieldsets) are static files too: its list, change and add pages run under the policy."""
    page = watched_page
    log_in(page, live_server, "ada", PASSWORD)
    for path in (
        "/admin/",
        "/admin/ranking/rankingtask/",
        f"/admin/ranking/rankingtask/{ready_task.pk}/change/",
        "/admin/labeling/conversation/",
        "/admin/ranking/project/add/",
        "/admin/auth/user/",
    ):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        page.wait_for_load_state("load")
        assert _violations(page) == [], path
    # The action bar's select-all checkbox is the admin's script at work (on a list with an
    # action: ranking tasks are read-only there, and have none).
    conversations = Conversation.objects.count()
    page.goto(f"{live_server.url}/admin/labeling/conversation/")
    page.locator("#action-toggle").check()
    expect(page.locator(".action-counter")).to_contain_text(
        f"{conversations} of {conversations} selected"
    )
    assert _violations(page) == []
