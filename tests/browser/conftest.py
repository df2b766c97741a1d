import os
import re
import shutil
import threading
import time

import pytest
from django.core.signals import request_finished, request_started
from playwright.sync_api import expect, sync_playwright

from tests.conftest import PASSWORD, WAIT_SECONDS, worker_seen

# Playwright's sync API runs an event loop in this thread; the ORM calls made by fixtures in the
# same thread are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Every browser wait (actions, navigation, expect(...)) has the suite's one deadline.
WAIT_MS = WAIT_SECONDS * 1000
expect.set_options(timeout=WAIT_MS)


def chromium_executable() -> str:
    """``CHROMIUM`` when set, else ``chromium`` (Debian) or ``chromium-browser`` on PATH."""
    configured = os.environ.get("CHROMIUM")
    found = configured or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not os.access(found, os.X_OK):
        pytest.fail(
            f"No chromium to drive ({'CHROMIUM=' + configured if configured else 'none on PATH'}):"
            " install Debian's with `make chromium` (apt-get, needs root or sudo), or set "
            "CHROMIUM to a Chromium or Chrome executable."
        )
    return found


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable(), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def _page_with_deadlines(context):
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.set_default_navigation_timeout(WAIT_MS)
    return page


class _RequestsInFlight:
    """The live server's requests begun and not yet finished. A page's last requests (a card's
    feedback widgets loading, a table polling) may still run on the server when its test ends;
    the test database is emptied after, and a request still reading it then deadlocked with
    the emptying (PostgreSQL), failing the test's teardown and the next test's."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def started(self, **kwargs) -> None:
        with self.lock:
            self.count += 1

    def finished(self, **kwargs) -> None:
        with self.lock:
            self.count -= 1

    def wait_for_none(self, *, most_seconds: float) -> None:
        """Until none runs, or ``most_seconds`` (a request whose end is never signalled must
        not hold up the run)."""
        deadline = time.monotonic() + most_seconds
        while self.count > 0 and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def _requests_in_flight():
    requests = _RequestsInFlight()
    request_started.connect(requests.started, dispatch_uid="browser-requests-started")
    request_finished.connect(requests.finished, dispatch_uid="browser-requests-finished")
    yield requests
    request_started.disconnect(dispatch_uid="browser-requests-started")
    request_finished.disconnect(dispatch_uid="browser-requests-finished")


def _browser_context(browser, requests: _RequestsInFlight, **options):
    """A browser context for one test; closed at its end, once the server has answered what it
    sent (before the test database is emptied)."""
    context = browser.new_context(**options)
    yield _page_with_deadlines(context)
    context.close()
    requests.wait_for_none(most_seconds=min(WAIT_SECONDS, 60))


@pytest.fixture
def page(browser, _requests_in_flight):
    yield from _browser_context(browser, _requests_in_flight)


@pytest.fixture
def no_js_page(browser, _requests_in_flight):
    """A page in a browser with JavaScript turned off: plain forms and links only."""
    yield from _browser_context(browser, _requests_in_flight, java_script_enabled=False)


def requests_to(page, part: str) -> list[str]:
    """The addresses the page asks for from now on that hold ``part``, as it asks for them."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url) if part in request.url else None)
    return urls


def quiet_until_checked_again(page, *, polls: list[str], note, queue: str, settings) -> None:
    """A part of the page that stopped polling for work queued for no worker (its ``note``
    naming ``queue``): a minute of the page's fake clock goes by with no request (``polls``:
    ``requests_to``); then a worker serving ``queue`` is seen, and the note's "Check again"
    finds it, so the note goes."""
    page.clock.run_for(60_000)
    assert polls == []
    settings.WORKER_LIVE_SECONDS = 60
    worker_seen(queues=[queue])
    note.get_by_role("button", name="Check again").click()
    expect(note).to_have_count(0)


def log_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def try_the_model_filled(page, live_server, message: str, *, n: int, seed: int) -> None:
    """Tess logged in, on "Try the model" (reached from the navigation), its form filled in:
    ``message``, ``n`` samples of up to 12 new tokens, ``seed``."""
    log_in(page, live_server, "tess", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Try the model").click()
    page.fill("#id_message", message)
    page.fill("#id_n", str(n))
    page.fill("#id_max_new_tokens", "12")
    page.fill("#id_seed", str(seed))


def ranking_card_ready(page, count: int = 4) -> None:
    """Wait until the ranking card shows ``count`` replies and ranking.js has enhanced it.
    The replies are in the server's HTML before the script binds its keys, so a key pressed on
    the count alone can be lost on a slow machine."""
    expect(page.locator("#ranking-list > li.candidate")).to_have_count(count)
    expect(page.locator("#ranking-card")).to_have_class(re.compile(r"\benhanced\b"))


def wait_until(page, expression: str) -> None:
    """Poll a JavaScript expression until it is truthy. ``page.wait_for_function`` compiles its
    string with ``new Function``, which the app's Content-Security-Policy (no 'unsafe-eval')
    refuses; ``page.evaluate`` runs through the browser's debugging protocol instead."""
    import time

    deadline = time.monotonic() + WAIT_SECONDS
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {WAIT_SECONDS} s: {expression}")
        page.wait_for_timeout(50)
