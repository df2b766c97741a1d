import re

import pytest
from playwright.sync_api import expect

from labeling.conversations import services
from labeling.conversations.models import Conversation, Message
from sampler.generation.services import generation_job_run_inline
from tests.browser.conftest import log_in, wait_until
from tests.conftest import PASSWORD, WAIT_SECONDS
from tests.labeling.conftest import write_turns

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _send(page, text: str) -> None:
    turns = page.locator("ol.transcript > li.turn")
    before = turns.count()
    page.fill("#composer-text", text)
    page.locator("#composer button[type=submit]").click()
    expect(turns).to_have_count(before + 1)


def test_trainer_writes_uses_a_suggestion_recovers_a_draft_and_branches(
    page, live_server, celery_worker, policy, trainer
):
    log_in(page, live_server, "tess", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Write").click()
    page.fill("#id_title", "Weekend chat")
    page.get_by_role("button", name="Start writing").click()
    expect(page.get_by_role("heading", name="Weekend chat")).to_be_visible()

    # Four turns, alternating user / assistant; Markdown is rendered.
    _send(page, "hi! how was your **weekend**?")
    _send(page, "It was great, thanks. I went hiking.")
    _send(page, "nice, where did you go?")
    expect(page.locator("li.turn.user .markdown strong").first).to_have_text("weekend")
    expect(page.get_by_text("Write the assistant's turn")).to_be_visible()

    # Ask for suggestions with the keyboard shortcut; keep typing meanwhile.
    page.fill("#composer-text", "typing while the model thinks")
    page.keyboard.press("Alt+s")
    suggestions = page.locator("#suggestions")
    expect(suggestions).to_have_attribute("data-status", "succeeded")
    expect(page.locator(".suggestion")).to_have_count(3)
    first_text = page.locator(".suggestion .suggestion-text").first.inner_text()

    page.locator(".use-suggestion").first.click()
    expect(page.locator("#composer-text")).to_have_value(first_text)
    page.locator("#composer-text").press("End")
    page.locator("#composer-text").type(" Also, the views were lovely.")
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")

    # Reload mid-typing: the draft (and the suggestion it came from) come back.
    page.reload()
    expect(page.locator("#composer-text")).to_have_value(
        first_text + " Also, the views were lovely."
    )
    expect(page.locator(".suggestion")).to_have_count(3)
    page.locator("#composer button[type=submit]").click()
    expect(page.locator("ol.transcript > li.turn")).to_have_count(4)

    message = Message.objects.filter(role="assistant").order_by("-created_at").first()
    assert message.origin == Message.Origin.MODEL_EDITED
    assert message.sample is not None and message.sample.text == first_text
    assert message.edit_distance == len(" Also, the views were lovely.")

    # Edit the second turn into a branch: the original stays, reachable with "< 1/2".
    second = page.locator("ol.transcript > li.turn").nth(1)
    second.locator("summary").click()
    second.locator("textarea").fill("It was quiet. I stayed home and read.")
    second.get_by_role("button", name="Save as a new branch").click()
    expect(page.locator("ol.transcript > li.turn")).to_have_count(2)
    expect(page.locator(".sibling-position")).to_have_text("2/2")
    page.get_by_role("button", name="Previous alternative").click()
    expect(page.locator(".sibling-position")).to_have_text("1/2")
    expect(page.locator("ol.transcript > li.turn")).to_have_count(4)
    assert Conversation.objects.get().messages.count() == 5


def test_a_save_answered_after_more_was_typed_does_not_say_saved(page, live_server, trainer):
    """Each save's answer says "Draft saved"; one for text typed over since (a slow network)
    must not leave that on the page while the newer text is not saved."""
    conversation = Conversation.objects.create(owner=trainer, title="Slow saves")
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    held = []
    page.route("**/draft/", lambda route: held.append(route))  # each save waits for the test

    def saves_sent(count: int) -> None:
        for _ in range(int(WAIT_SECONDS * 10)):
            if len(held) >= count:
                return
            page.wait_for_timeout(100)  # lets Playwright take the held requests
        raise AssertionError(f"{len(held)} saves sent, not {count}")

    status = page.locator("#draft-status")
    page.fill("#composer-text", "first")
    saves_sent(1)
    page.locator("#composer-text").press("End")
    page.keyboard.type(" and more")
    held[0].continue_()  # answered with the newer text already in the box
    expect(status).to_have_text("Unsaved changes…")
    saves_sent(2)  # the newer text's own save, queued behind the first
    expect(status).to_have_text("Unsaved changes…")
    held[1].continue_()
    expect(status).to_contain_text("Draft saved")
    wait_until(page, "!document.querySelector('#composer-text').dataset.draftDirty")
    assert conversation.drafts.get().content == "first and more"


def test_leaving_with_unsaved_text_asks_first(page, live_server, trainer):
    conversation = Conversation.objects.create(owner=trainer, title="Draft test")
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.locator("#composer-text").type("not saved yet")
    with page.expect_event("dialog") as asked:
        page.close(run_before_unload=True)
    assert asked.value.type == "beforeunload"


def test_a_turn_sent_right_after_typing_does_not_come_back_as_the_next_draft(
    page, live_server, trainer
):
    """Send (Ctrl+Enter) before the autosave's 400 ms pause is over: neither the copy kept on
    the device nor a pending save may bring the sent text back as the next turn's draft."""
    conversation = Conversation.objects.create(owner=trainer, title="Quick sender")
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    page.fill("#composer-text", "hello")
    page.locator("#composer-text").press("Control+Enter")
    expect(page.locator("ol.transcript > li.turn")).to_have_count(1)
    expect(page.locator("#composer-text")).to_have_value("")
    page.wait_for_timeout(1500)  # past the autosave's delay: a late save would have landed
    page.reload()
    expect(page.locator("ol.transcript > li.turn")).to_have_count(1)
    expect(page.locator("#composer-text")).to_have_value("")
    assert not conversation.drafts.exists()


def test_finishing_with_unsent_text_asks_first_and_can_be_called_off(page, live_server, trainer):
    conversation = Conversation.objects.create(owner=trainer, title="Almost done")
    write_turns(conversation, trainer, "hi", "hello!")
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    finish = page.get_by_role("button", name="Mark finished")
    page.fill("#composer-text", "one more thing")
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, False))
    finish.click()
    expect(page.locator("#composer-text")).to_have_value("one more thing")
    assert questions and "has not been sent" in questions[0]
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.DRAFT

    page.once("dialog", lambda dialog: answer(dialog, True))
    finish.click()
    expect(page.get_by_role("button", name="Reopen")).to_be_visible()
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.FINISHED and len(questions) == 2


def test_an_edit_saved_after_another_tab_finished_says_why_and_keeps_the_text(
    page, live_server, trainer
):
    conversation = Conversation.objects.create(owner=trainer, title="Closed elsewhere")
    write_turns(conversation, trainer, "hi", "hello!")
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    reply = page.locator("ol.transcript > li.turn").nth(1)
    reply.locator("summary").click()
    reply.locator("textarea").fill("Hello! How can I help today?")
    expect(reply.locator(".draft-status")).to_contain_text("Draft saved")

    # Another tab finishes the conversation; this one still shows the edit box.
    conversation.status = Conversation.Status.FINISHED
    conversation.save(update_fields=["status"])
    reply.get_by_role("button", name="Save as a new branch").click()

    unsent = page.locator("#unsent")
    expect(unsent).to_contain_text("This conversation is finished; reopen it to edit.")
    expect(unsent).to_contain_text("kept as that turn's draft, and Reopen brings it back")
    expect(unsent.locator("textarea")).to_have_value("Hello! How can I help today?")
    assert conversation.messages.count() == 2

    page.get_by_role("button", name="Reopen").click()
    reopened = page.locator("ol.transcript > li.turn").nth(1)
    expect(reopened.locator("details.edit-turn")).to_have_attribute("open", "")
    expect(reopened.locator("textarea")).to_have_value("Hello! How can I help today?")
    expect(page.locator("#unsent")).to_have_count(0)


def test_switching_branches_with_the_keyboard_keeps_focus_on_the_switcher(
    page, live_server, trainer
):
    """Enter on a branch switcher's button swaps the editor in: focus stays on the switcher
    (its other button when the pressed one is now at its end), never on "Mark finished", which
    a second Enter would press."""
    conversation = Conversation.objects.create(owner=trainer, title="Two answers")
    reply = write_turns(conversation, trainer, "hi", "hello!")[1]
    services.message_branch(original=reply, author=trainer, content="hey there!")
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    position = page.locator(".sibling-position")
    expect(position).to_have_text("2/2")

    page.get_by_role("button", name="Previous alternative").focus()
    page.keyboard.press("Enter")
    expect(position).to_have_text("1/2")
    focused = page.locator(":focus")
    expect(focused).to_have_accessible_name(re.compile("Next alternative"))

    page.keyboard.press("Enter")
    expect(position).to_have_text("2/2")
    expect(page.locator(":focus")).to_have_accessible_name(re.compile("Previous alternative"))
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.DRAFT


def _answering(page, answers: list[bool]) -> list[str]:
    """Answer the page's questions in turn with ``answers`` (leaving it with text the server
    does not have always goes ahead); what they asked, in order."""
    questions = []

    def answer(dialog):
        if dialog.type == "beforeunload":
            dialog.accept()
            return
        questions.append(dialog.message)
        dialog.accept() if answers.pop(0) else dialog.dismiss()

    page.on("dialog", answer)
    return questions


def _asked(page, questions: list[str], count: int) -> None:
    for _ in range(int(WAIT_SECONDS * 10)):
        if len(questions) >= count:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"asked {questions}, expected {count} questions")


def test_a_turn_refused_because_another_tab_moved_on_is_not_sent_as_the_other_side_unasked(
    page, live_server, trainer
):
    """Another tab sent the user's turn: this tab's user turn is refused with the current
    turns and the text kept; sending it again, even after a reload, asks before it goes as the
    assistant's turn."""
    conversation = Conversation.objects.create(owner=trainer, title="Two tabs")
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    write_turns(conversation, trainer, "sent from tab 1")  # the other tab

    page.fill("#composer-text", "stale from tab 2")
    page.locator("#composer button[type=submit]").click()
    expect(page.locator("#composer")).to_contain_text("The conversation changed")
    expect(page.locator("ol.transcript > li.turn")).to_have_count(1)
    expect(page.locator("ol.transcript")).to_contain_text("sent from tab 1")
    expect(page.locator("#composer-text")).to_have_value("stale from tab 2")
    expect(page.locator("#composer-written-role")).to_be_visible()

    answers = []
    questions = _answering(page, answers)
    # Reloaded before the server has the text: the browser's copy comes back as the user's.
    page.reload()
    expect(page.locator("#composer-text")).to_have_value("stale from tab 2")
    expect(page.locator("#composer-written-role")).to_be_visible()
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")
    assert conversation.drafts.get().role == "user"
    page.reload()  # the server's copy now
    expect(page.locator("#composer-text")).to_have_value("stale from tab 2")
    expect(page.locator("#composer-written-role")).to_be_visible()

    answers.append(False)
    page.locator("#composer-text").press("Control+Enter")
    wait_until(page, "true")
    _asked(page, questions, 1)
    assert "user's turn" in questions[0] and "assistant's turn" in questions[0]
    expect(page.locator("#composer-text")).to_have_value("stale from tab 2")
    assert conversation.messages.count() == 1

    answers.append(True)
    page.locator("#composer button[type=submit]").click()
    expect(page.locator("ol.transcript > li.turn")).to_have_count(2)
    reply = conversation.messages.get(role="assistant")
    assert reply.content == "stale from tab 2" and reply.origin == Message.Origin.HUMAN
    assert not conversation.drafts.exists()


def test_text_typed_after_another_tab_sent_its_turn_survives_the_reload_as_its_own_side(
    page, live_server, trainer
):
    """A user turn being typed while another tab sends the user's turn: the save of what is
    typed next is refused ("reload the page"), and that reload loses nothing. The text comes
    back (from the browser's copy, then from the server's) as the user's, and sending it as
    the assistant's asks first."""
    conversation = Conversation.objects.create(owner=trainer, title="Two tabs, one draft")
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    composer = page.locator("#composer-text")
    composer.press_sequentially("my question")
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")
    write_turns(conversation, trainer, "sent from tab 1")  # the other tab
    composer.press_sequentially(", typed on")
    expect(page.locator("#draft-status")).to_contain_text("reload the page")

    answers = []
    questions = _answering(page, answers)
    page.reload()
    expect(page.locator("ol.transcript")).to_contain_text("sent from tab 1")
    expect(page.locator("#composer-text")).to_have_value("my question, typed on")
    expect(page.locator("#composer-written-role")).to_be_visible()
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")
    draft = conversation.drafts.get()
    assert (draft.content, draft.role) == ("my question, typed on", "user")

    page.reload()  # the server's copy now
    expect(page.locator("#composer-text")).to_have_value("my question, typed on")
    expect(page.locator("#composer-written-role")).to_be_visible()
    answers.append(False)
    page.locator("#composer button[type=submit]").click()
    _asked(page, questions, 1)
    assert "user's turn" in questions[0] and "assistant's turn" in questions[0]
    expect(page.locator("#composer-text")).to_have_value("my question, typed on")
    assert conversation.messages.count() == 1


def test_using_a_suggestion_over_typed_text_can_be_undone_with_its_provenance(
    page, live_server, trainer, policy
):
    """Suggestions arrive while the trainer types: "Use" replaces the typed text, and both
    Ctrl+Z and the "Undo" it offers bring that text back, as the trainer's own."""
    conversation = Conversation.objects.create(owner=trainer, title="Mine first")
    write_turns(conversation, trainer, "hi there")
    job = services.suggestion_request(conversation=conversation, author=trainer, n=1)
    suggested = generation_job_run_inline(job_id=job.pk).samples.get().text
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/write/{conversation.pk}/")
    box = page.locator("#composer-text")
    box.fill("my own words")
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")

    page.locator(".use-suggestion").click()
    expect(box).to_have_value(suggested)
    box.press("Control+z")
    expect(box).to_have_value("my own words")
    expect(page.locator("#composer-sample")).to_have_value("")

    page.locator(".use-suggestion").click()
    expect(box).to_have_value(suggested)
    page.get_by_role("button", name="Undo").click()
    expect(box).to_have_value("my own words")
    expect(page.locator("#composer-sample")).to_have_value("")
    page.locator("#composer button[type=submit]").click()
    expect(page.locator("ol.transcript > li.turn")).to_have_count(2)
    reply = conversation.messages.get(role="assistant")
    assert reply.content == "my own words"
    assert reply.origin == Message.Origin.HUMAN and reply.sample is None
