"""No text is ever lost: an expired session and a lost connection while typing."""

import pytest
from playwright.sync_api import expect

from labeling.conversations.models import Conversation, Draft
from tests.browser.conftest import log_in, requests_to, wait_until
from tests.conftest import PASSWORD, WAIT_SECONDS
from tests.labeling.conftest import write_turns

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _composer_draft(conversation) -> str | None:
    draft = Draft.objects.filter(conversation=conversation, editing__isnull=True).first()
    return draft.content if draft else None


def _editor_of(page, live_server, conversation):
    """Tess logged in, in the editor of ``conversation``: its composer."""
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    return page.locator("#composer-text")


def test_a_sentence_typed_across_an_expired_session_survives_the_login(page, live_server, trainer):
    conversation = Conversation.objects.create(owner=trainer, title="Session test")
    composer = _editor_of(page, live_server, conversation)
    composer.press_sequentially("The meeting moved to Thursday")
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")
    assert _composer_draft(conversation) == "The meeting moved to Thursday"

    # The session ends mid-sentence (the CSRF cookie stays, as it does when a session expires).
    page.context.clear_cookies(name="sessionid")
    composer.press_sequentially(" because the room was double booked.")

    # The save met a 401 (not the login page swapped into the editor): the login page, then back.
    page.wait_for_url(f"**/accounts/login/?next=%2Fwrite%2F{conversation.pk}%2F")
    page.fill("#id_username", "tess")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/write/{conversation.pk}/")

    full = "The meeting moved to Thursday because the room was double booked."
    expect(page.locator("#composer-text")).to_have_value(full)
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")
    assert _composer_draft(conversation) == full
    # Saved on the server: the local copy is gone, a reload shows the server's draft.
    page.reload()
    expect(page.locator("#composer-text")).to_have_value(full)
    assert (
        page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tandem-draft:'))") == []
    )


def test_a_lost_connection_shows_a_banner_and_the_draft_is_saved_once_it_is_back(
    page, live_server, trainer
):
    conversation = Conversation.objects.create(owner=trainer, title="Offline test")
    composer = _editor_of(page, live_server, conversation)
    composer.press_sequentially("first part")
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")

    page.context.set_offline(True)
    composer.press_sequentially(", second part")
    banner = page.locator("#connection-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Connection lost")
    assert _composer_draft(conversation) == "first part"

    page.context.set_offline(False)
    expect(banner).to_be_hidden()
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")
    assert _composer_draft(conversation) == "first part, second part"


def test_text_put_back_to_what_the_server_has_is_not_left_unsaved(page, live_server, trainer):
    conversation = Conversation.objects.create(owner=trainer, title="Same text")
    Draft.objects.create(conversation=conversation, author=trainer, content="kept as it is")
    composer = _editor_of(page, live_server, conversation)
    expect(composer).to_have_value("kept as it is")
    composer.select_text()
    page.keyboard.insert_text("kept as it is")  # pasted over with the same text
    expect(page.locator("#draft-status")).not_to_have_text("Unsaved changes…")
    asked = []
    page.on("dialog", lambda dialog: (asked.append(dialog.type), dialog.dismiss()))
    # Leaving does not ask (a dismissed "leave page?" would keep the page open).
    with page.expect_event("close"):
        page.close(run_before_unload=True)
    assert asked == []
    assert _composer_draft(conversation) == "kept as it is"


def test_a_refused_turn_keeps_its_local_copy_until_the_server_has_it(page, live_server, trainer):
    conversation = Conversation.objects.create(owner=trainer, title="Too long")
    composer = _editor_of(page, live_server, conversation)
    text = "word " * 4100  # 20,500 characters: over the 20,000 a turn (or a draft) may hold
    composer.fill(text)
    page.locator("#composer button[type=submit]").click()
    expect(page.locator("#composer")).to_contain_text("limited to 20000 characters")
    expect(composer).to_have_value(text)
    # The server kept nothing, so the local copy stays, and leaving the page asks first.
    stored = "Object.values(localStorage).map(v => JSON.parse(v).text.length)"
    assert page.evaluate(stored) == [len(text)]
    asked = []
    page.on("dialog", lambda dialog: (asked.append(dialog.type), dialog.accept()))
    page.reload()
    assert asked == ["beforeunload"]
    # Back from the local copy, nothing lost; trimmed, it is saved and the copy goes.
    expect(page.locator("#composer-text")).to_have_value(text)
    page.locator("#composer-text").fill(text[:19000])
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")
    assert _composer_draft(conversation) == text[:19000]
    assert page.evaluate(stored) == []


def _type_without_saving(page, live_server, conversation, text: str) -> None:
    """Tess types into the composer while the server never gets the draft (its saves fail until
    the admin is logged in)."""
    log_in(page, live_server, "tess", PASSWORD)
    page.route("**/draft/", lambda route: route.abort())
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    page.locator("#composer-text").press_sequentially(text)
    expect(page.locator("#draft-status")).to_have_text("Unsaved changes…")
    assert _composer_draft(conversation) is None


def _opened_by_the_admin(page, live_server, conversation) -> None:
    log_in(page, live_server, "ada", PASSWORD)
    page.unroute("**/draft/")
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    expect(page.locator("#composer")).to_be_visible()


def test_an_unsaved_draft_is_cleared_at_logout_and_not_restored_for_the_next_user(
    page, live_server, trainer, admin_user
):
    conversation = Conversation.objects.create(owner=trainer, title="Shared browser")
    _type_without_saving(page, live_server, conversation, "tess's private wording")
    asked = []
    page.on("dialog", lambda dialog: (asked.append(dialog.type), dialog.accept()))
    page.locator("form.logout button[type=submit]").click()
    page.wait_for_url("**/accounts/login/**")
    assert asked == ["confirm"]  # her text is lost at logout: asked once, before it goes
    stored = "Object.values(localStorage).map(v => JSON.parse(v).text)"
    assert page.evaluate(stored) == []

    _opened_by_the_admin(page, live_server, conversation)
    expect(page.locator("#composer-text")).to_have_value("")
    assert Draft.objects.filter(conversation=conversation).count() == 0


def test_another_users_local_copy_is_never_restored_and_is_dropped(
    page, live_server, trainer, admin_user
):
    conversation = Conversation.objects.create(owner=trainer, title="Left open")
    _type_without_saving(page, live_server, conversation, "tess's private wording")
    # Her session ends without a logout (it expired, or the cookies were cleared).
    page.context.clear_cookies(name="sessionid")
    page.on("dialog", lambda dialog: dialog.accept())

    _opened_by_the_admin(page, live_server, conversation)
    expect(page.locator("#composer-text")).to_have_value("")
    stored = "Object.values(localStorage).map(v => JSON.parse(v).text)"
    wait_until(page, f"{stored}.length === 0")
    assert Draft.objects.filter(conversation=conversation).count() == 0


def test_logging_out_asks_first_for_an_unsaved_draft_of_another_page(page, live_server, trainer):
    conversation = Conversation.objects.create(owner=trainer, title="Left behind")
    _type_without_saving(page, live_server, conversation, "tess's unsent wording")
    asked = []
    page.on("dialog", lambda dialog: (asked.append(dialog.type), dialog.accept()))
    page.goto(f"{live_server.url}/write/")  # the copy stays in the browser, for her
    stored = "Object.values(localStorage).map(v => JSON.parse(v).text)"
    assert page.evaluate(stored) == ["tess's unsent wording"]
    asked.clear()

    page.locator("form.logout button[type=submit]").click()
    page.wait_for_url("**/accounts/login/**")
    assert asked == ["confirm"]  # the copy is lost at logout: asked first, as on its own page


def test_a_page_shown_before_a_login_in_another_tab_says_to_reload_and_keeps_the_text(
    page, live_server, trainer
):
    conversation = Conversation.objects.create(owner=trainer, title="Two tabs")
    composer = _editor_of(page, live_server, conversation)
    # In another tab tess logs out and in again: the login renews the CSRF token, so what the
    # first tab sends with the token it was shown is refused.
    other = page.context.new_page()
    other.goto(f"{live_server.url}/")
    other.locator("form.logout button[type=submit]").click()
    other.wait_for_url("**/accounts/login/**")
    log_in(other, live_server, "tess", PASSWORD)

    composer.fill("Typed in the first tab")
    composer.press("Control+Enter")
    expect(page.get_by_role("alert").filter(has_text="This page is out of date")).to_be_visible()
    expect(page.get_by_text("You are not allowed to do that.")).to_have_count(0)
    page.reload()
    expect(page.locator("#composer-text")).to_have_value("Typed in the first tab")


def test_a_draft_refused_after_the_connection_came_back_is_not_sent_again_and_again(
    page, live_server, trainer
):
    """Typed while offline, then refused once the connection is back (another tab sent the
    turn meanwhile): the connection retry (every 3 s while a draft is unsaved) stops and does
    not send the same refused text again; a change typed into it is sent."""
    conversation = Conversation.objects.create(owner=trainer, title="Refused when back")
    composer = _editor_of(page, live_server, conversation)
    saves = requests_to(page, "/draft/")
    page.context.set_offline(True)
    composer.press_sequentially("my question")
    expect(page.locator("#connection-banner")).to_contain_text("Connection lost")
    write_turns(conversation, trainer, "sent from tab 1")  # the other tab

    page.context.set_offline(False)
    expect(page.locator("#draft-status")).to_contain_text("reload the page")
    wait_until(page, "retryTimer === null")  # the retry stopped
    refused = len(saves)
    for _ in range(3):
        page.evaluate("retryDrafts()")  # what each turn of the retry does
    composer.press_sequentially("?")
    for _ in range(int(WAIT_SECONDS * 10)):
        if len(saves) > refused:
            break
        page.wait_for_timeout(100)
    expect(page.locator("#draft-status")).to_contain_text("reload the page")
    assert len(saves) == refused + 1
