import re
from datetime import timedelta
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from labeling.conversations import services
from labeling.conversations.models import Conversation, Message
from labeling.conversations.views import PAGE_SIZE
from sampler.generation import services as sampler_services
from sampler.generation.models import GenerationJob
from tests.conftest import (
    polls_only_while_work_can_move,
    says_unpublished_until_published,
    worker_seen,
)
from tests.labeling.conftest import HTMX, write_turns


def test_create_conversation_from_the_list_page(trainer_client):
    response = trainer_client.post(reverse("labeling:conversation-create"), {"title": "Cooking"})
    conversation = Conversation.objects.get()
    assert response.url == reverse("labeling:editor", args=[conversation.pk])
    page = trainer_client.get(reverse("labeling:conversation-list"))
    assert b"Cooking" in page.content


def _refused_create(trainer_client, data: dict, **extra) -> str:
    """POST the New conversation form; its 422 page, after checking nothing was made."""
    response = trainer_client.post(reverse("labeling:conversation-create"), data, **extra)
    assert response.status_code == 422
    assert not Conversation.objects.exists()
    return response.content.decode()


def _create_form(page: str) -> str:
    """The New conversation box of the list page (its <details>, open or not)."""
    match = re.search(
        r"<details[^>]*>\s*<summary><strong>New conversation.*?</details>", page, re.S
    )
    assert match, "no New conversation box"
    return match.group(0)


REFUSED_CREATE_FIELDS = [
    # (what is wrong, the fields sent, the error as the form shows it)
    ("draft project", {"project": "p1"}, "Project: Select a valid choice."),
    ("bad mode", {"mode": "chaos"}, "Mode: Select a valid choice. chaos is not one of"),
    ("title of two lines", {"title": "Trip\nplans"}, "Title: "),
    ("title too long", {"title": "t" * 201}, "Title: Ensure this value has at most 200"),
    ("NUL in instructions", {"instructions": "Be\x00 brief"}, "instructions: NUL characters"),
]


@pytest.mark.parametrize(
    "sent, error",
    [case[1:] for case in REFUSED_CREATE_FIELDS],
    ids=[c[0] for c in REFUSED_CREATE_FIELDS],
)
@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_a_refused_new_conversation_comes_back_with_what_was_typed_and_why(
    trainer_client, sent, error, htmx
):
    """Refused, the form was a redirect to the list with the reason as a flash message: what
    was typed was gone. Now the list page answers 422 with the form open, as typed, and each
    reason by its field (the same page whether htmx sent it or not)."""
    from ranking.projects.services import project_create

    project_create(name="Not yet", slug="p1")  # a draft: offered to no one
    data = {"title": "Trip plans", "instructions": "Ask about trains.", **sent}
    page = _refused_create(trainer_client, data, **(HTMX if htmx else {}))
    form = unescape(_create_form(page))
    assert re.match(r"<details[^>]*\bopen\b", form)
    assert error in form and 'class="error"' in form
    shown_title = data["title"] if "\n" not in data["title"] else "Trip"
    assert f'value="{shown_title}' in form
    assert data["instructions"].replace("\x00", "") in form
    # The list is still shown below it.
    assert "No conversations yet." in page


def test_a_new_conversation_in_a_project_paused_meanwhile_comes_back_as_typed(
    trainer_client,
):
    """The project was offered when the page was shown; an admin paused it before the form was
    sent: refused by the project's box, the title and instructions kept."""
    from ranking.projects.models import Project
    from ranking.projects.services import project_create

    project = project_create(name="Helpfulness", slug="helpful", status="active")
    page = trainer_client.get(reverse("labeling:conversation-list")).content.decode()
    assert 'value="helpful"' in page
    Project.objects.filter(pk=project.pk).update(status=Project.Status.PAUSED)

    data = {"title": "Tips", "instructions": "Kitchen tips.", "project": "helpful"}
    form = unescape(_create_form(_refused_create(trainer_client, data)))

    assert "Project: Select a valid choice." in form
    assert 'value="Tips"' in form and "Kitchen tips.</textarea>" in form


def test_a_refused_new_conversations_page_filters_and_pages_the_list_not_the_form(
    trainer_client, trainer
):
    """The refused form's page is the answer to a POST to the form's address: its filter form
    and its page links, relative, asked that address for the list (a 405). They name the
    list's address."""
    for number in range(PAGE_SIZE + 1):
        services.conversation_create(owner=trainer, title=f"Plan {number}")
    refused = trainer_client.post(reverse("labeling:conversation-create"), {"mode": "chaos"})
    assert refused.status_code == 422
    page = refused.content.decode()
    list_url = reverse("labeling:conversation-list")
    search = re.search(r'<form class="toolbar" method="get"[^>]*>', page).group(0)
    assert f'action="{list_url}"' in search
    older = re.search(r'<a class="button" href="([^"]*)">Older', page).group(1)
    assert unescape(older).startswith(f"{list_url}?")
    assert trainer_client.get(unescape(older)).status_code == 200


def test_the_list_pages_through_every_conversation_keeping_its_filters(trainer_client, trainer):
    """More conversations than one page holds: the oldest are on the next pages, not cut off."""
    oldest = services.conversation_create(owner=trainer, title="The very first")
    Conversation.objects.filter(pk=oldest.pk).update(updated_at=timezone.now() - timedelta(days=1))
    for number in range(PAGE_SIZE):
        services.conversation_create(owner=trainer, title=f"Plan {number}")
    url = reverse("labeling:conversation-list")
    first = trainer_client.get(url, {"status": "draft"}).content.decode()
    assert "The very first" not in first and "Plan 0<" in first
    older = f'href="{reverse("labeling:conversation-list")}?status=draft&page=2"'
    assert "Page 1 of 2" in first and older in first
    second = trainer_client.get(url, {"status": "draft", "page": "2"}).content.decode()
    assert "The very first" in second and "Plan 0<" not in second


def test_the_list_refuses_an_unknown_status_and_names_the_statuses(
    trainer_client, trainer, conversation
):
    """The API answers ``?status=bogus`` with a 400; the page did not list every conversation
    with "Any" chosen as if no status were asked: a 422 with the filter's error, naming the
    statuses, and no conversations (as the Red team page answers an unknown category)."""
    services.conversation_create(owner=trainer, title="Kept apart")
    url = reverse("labeling:conversation-list")
    page = trainer_client.get(url, {"status": "bogus"})
    text = page.content.decode()
    assert page.status_code == 422
    assert escape('There is no status "bogus"') in text
    assert "draft, finished and discarded" in text
    assert "No conversations are shown until the filters are right." in text
    assert "Kept apart" not in text
    # No status, or an empty one, is every status, as before; a known one filters.
    for query in ({}, {"status": ""}, {"status": "draft"}, {"q": "kept", "status": "draft"}):
        page = trainer_client.get(url, query)
        assert page.status_code == 200 and "Kept apart" in page.content.decode(), query
    finished = trainer_client.get(url, {"status": "finished"}).content.decode()
    assert "No conversations match." in finished and "Kept apart" not in finished
    # Nothing listed: the new conversation's form is open, as on an empty list.
    assert '<details class="card" open>' in finished


def test_the_list_counts_the_turns_of_the_branch_shown_not_its_alternatives(
    trainer_client, trainer, conversation
):
    """Edited turns leave their alternatives in the tree: the Messages column (and the API's
    ``turn_count``) counts the turns on the branch the editor shows, as the README says."""
    first, reply, _ = write_turns(conversation, trainer, "hi", "hello", "what now?")
    services.message_branch(original=reply, author=trainer, content="hello there")
    services.message_branch(original=first, author=trainer, content="good morning")
    write_turns(conversation, trainer, "morning!")
    assert Message.objects.filter(conversation=conversation).count() == 6

    page = trainer_client.get(reverse("labeling:conversation-list"))
    listed = trainer_client.get("/api/conversations/").json()["results"]

    assert [row.turn_count for row in page.context["page"]] == [2]  # "good morning", "morning!"
    assert "<td>2</td>" in page.content.decode()
    assert [row["turn_count"] for row in listed] == [2]
    # Switching back to the first branch counts its turns: "hi", "hello there".
    services.branch_switch(message=first, user=trainer)
    page = trainer_client.get(reverse("labeling:conversation-list"))
    assert [row.turn_count for row in page.context["page"]] == [2]
    services.branch_switch(message=reply, user=trainer)
    page = trainer_client.get(reverse("labeling:conversation-list"))
    assert [row.turn_count for row in page.context["page"]] == [3]  # "hi", "hello", "what now?"


def test_a_conversation_is_written_in_the_project_the_trainer_picks_among_theirs(
    trainer_client, trainer
):
    from django.contrib.auth.models import Group

    from ranking.projects.models import DEFAULT_PROJECT_SLUG
    from ranking.projects.services import project_create

    open_to_all = project_create(name="Helpfulness", slug="helpful", status="active")
    experts = Group.objects.create(name="experts")
    project_create(name="Safety", slug="safety", status="active", trainer_groups=[experts])
    page = trainer_client.get(reverse("labeling:conversation-list")).content.decode()
    assert 'value="helpful"' in page and 'value="safety"' not in page

    trainer_client.post(
        reverse("labeling:conversation-create"), {"title": "Tips", "project": "helpful"}
    )
    assert Conversation.objects.get(title="Tips").project_id == open_to_all.pk
    # A project not open to the trainer is refused and nothing is created.
    trainer_client.post(
        reverse("labeling:conversation-create"), {"title": "Sneaky", "project": "safety"}
    )
    assert not Conversation.objects.filter(title="Sneaky").exists()
    # None picked: the default project.
    trainer_client.post(reverse("labeling:conversation-create"), {"title": "Plain"})
    assert Conversation.objects.get(title="Plain").project.slug == DEFAULT_PROJECT_SLUG
    # The default project is the empty choice, listed once; its slug is still taken.
    page = trainer_client.get(reverse("labeling:conversation-list")).content.decode()
    assert page.count("Default project") == 1
    assert f'value="{DEFAULT_PROJECT_SLUG}"' not in page
    trainer_client.post(
        reverse("labeling:conversation-create"), {"title": "Named", "project": DEFAULT_PROJECT_SLUG}
    )
    assert Conversation.objects.get(title="Named").project.slug == DEFAULT_PROJECT_SLUG


def test_write_turns_through_the_editor(trainer_client, conversation):
    url = reverse("labeling:message-append", args=[conversation.pk])
    trainer_client.post(url, {"content": "hello **there**", "role": "user"})
    response = trainer_client.post(url, {"content": "hi!", "role": "assistant"}, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="editor"' in body and "<strong>there</strong>" in body
    assert "Write the user&#x27;s turn" in body or "Write the user's turn" in body
    assert list(Message.objects.values_list("role", flat=True)) == ["user", "assistant"]


def test_model_and_trainer_text_cannot_inject_script(trainer_client, conversation):
    url = reverse("labeling:message-append", args=[conversation.pk])
    trainer_client.post(url, {"content": "<script>alert(1)</script><img src=x onerror=alert(2)>"})
    body = trainer_client.get(reverse("labeling:editor", args=[conversation.pk])).content.decode()
    assert "<script>alert(1)" not in body and "<img" not in body
    # The edit box shows the text the trainer wrote, escaped.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


@pytest.mark.parametrize(("text", "kept"), [("my <b>unsent</b> turn", True), ("x" * 20001, False)])
def test_a_turn_sent_from_a_stale_tab_after_finishing_is_shown_and_kept(
    trainer_client, conversation, trainer, text, kept
):
    write_turns(conversation, trainer, "hi", "hello!")
    services.conversation_finish(conversation=conversation, user=trainer)
    url = reverse("labeling:message-append", args=[conversation.pk])

    response = trainer_client.post(url, {"content": text, "role": "user"}, **HTMX)

    assert response.status_code == 422
    body = response.content.decode()
    assert "This conversation is finished; reopen it to edit." in body
    assert conversation.messages.count() == 2
    if kept:
        assert "it is kept as your draft, and Reopen brings it back" in body
        assert "my &lt;b&gt;unsent&lt;/b&gt; turn</textarea>" in body
        assert conversation.drafts.get(author=trainer).content == text
    else:
        assert "copy it before you leave" in body and text in body
        assert not conversation.drafts.exists()
    # Reopened, the composer holds it.
    if kept:
        services.conversation_reopen(conversation=conversation, user=trainer)
        editor = trainer_client.get(reverse("labeling:editor", args=[conversation.pk]))
        assert "my &lt;b&gt;unsent&lt;/b&gt; turn</textarea>" in editor.content.decode()
        assert 'id="unsent"' not in editor.content.decode()


@pytest.mark.parametrize("closing", ["finish", "discard"])
@pytest.mark.parametrize(("text", "kept"), [("my <b>better</b> reply", True), ("x" * 20001, False)])
def test_an_edit_saved_from_a_stale_tab_after_closing_shows_why_and_keeps_the_text(
    trainer_client, conversation, trainer, closing, text, kept
):
    _, reply = write_turns(conversation, trainer, "hi", "hello!")
    getattr(services, f"conversation_{closing}")(conversation=conversation, user=trainer)
    url = reverse("labeling:message-branch", args=[reply.pk])

    response = trainer_client.post(url, {"content": text}, **HTMX)

    assert response.status_code == 422
    body = response.content.decode()
    status = "finished" if closing == "finish" else "discarded"
    assert f"This conversation is {status}; reopen it to edit." in body
    assert conversation.messages.count() == 2
    if kept:
        assert "it is kept as that turn's draft, and Reopen brings it back" in body
        assert "my &lt;b&gt;better&lt;/b&gt; reply</textarea>" in body
        assert conversation.drafts.get(author=trainer, editing=reply).content == text
        # Reopened, the turn's edit box holds it, open.
        services.conversation_reopen(conversation=conversation, user=trainer)
        editor = trainer_client.get(reverse("labeling:editor", args=[conversation.pk]))
        page = editor.content.decode()
        assert "my &lt;b&gt;better&lt;/b&gt; reply</textarea>" in page
        assert '<details class="edit-turn" open>' in page and 'id="unsent"' not in page
    else:
        assert "copy it before you leave" in body and text in body
        assert not conversation.drafts.exists()


# Just over the limit, and far over it (100 KB).
OVERSIZED = pytest.mark.parametrize("length", [20001, 100_000])


@OVERSIZED
@pytest.mark.parametrize("htmx", [True, False])
def test_an_oversized_turn_is_a_422_with_the_limit_and_nothing_is_lost(
    trainer_client, conversation, trainer, length, htmx
):
    first = services.message_append(conversation=conversation, author=trainer, content="hi")
    services.draft_save(conversation=conversation, author=trainer, content="half a thought")
    text = "w" * length
    response = trainer_client.post(
        reverse("labeling:message-append", args=[conversation.pk]),
        {"content": text},
        **(HTMX if htmx else {}),
    )
    assert response.status_code == 422
    body = response.content.decode()
    assert f"limited to 20000 characters ({length} given)" in body
    assert text in body  # back in the composer
    conversation.refresh_from_db()
    assert list(conversation.messages.all()) == [first] and conversation.active_leaf == first
    assert conversation.drafts.get().content == "half a thought"


@OVERSIZED
def test_an_oversized_draft_is_a_422_and_the_saved_draft_is_kept(
    trainer_client, conversation, trainer, length
):
    services.draft_save(conversation=conversation, author=trainer, content="half a thought")
    response = trainer_client.post(
        reverse("labeling:draft-save", args=[conversation.pk]), {"content": "w" * length}
    )
    assert response.status_code == 422
    assert b"not saved" in response.content
    # One sentence naming the limit, not a form's list of field errors.
    assert b"Drafts are limited to 20000 characters." in response.content
    assert b"* content" not in response.content
    assert conversation.drafts.get().content == "half a thought"


def test_draft_is_saved_and_restored_after_a_reload(trainer_client, conversation):
    response = trainer_client.post(
        reverse("labeling:draft-save", args=[conversation.pk]), {"content": "half-written thought"}
    )
    assert response.status_code == 200 and b"Draft saved" in response.content
    page = trainer_client.get(reverse("labeling:editor", args=[conversation.pk])).content.decode()
    assert ">half-written thought</textarea>" in page


def test_a_draft_save_that_arrives_after_its_turn_was_sent_is_refused(trainer_client, conversation):
    """The composer's autosave can leave after Send: the sent turn must not come back as the
    next turn's draft. The page names the message its turn follows (``after``)."""
    page = trainer_client.get(reverse("labeling:editor", args=[conversation.pk])).content.decode()
    assert 'name="after" id="composer-after" value="0"' in page
    sent = trainer_client.post(
        reverse("labeling:message-append", args=[conversation.pk]),
        {"role": "user", "content": "hello"},
        **HTMX,
    )
    assert sent.status_code == 200
    late = trainer_client.post(
        reverse("labeling:draft-save", args=[conversation.pk]),
        {"content": "hello", "after": "0"},
        **HTMX,
    )
    assert late.status_code == 422
    assert "This turn was sent" in late.content.decode()
    assert not conversation.drafts.exists()
    page = trainer_client.get(reverse("labeling:editor", args=[conversation.pk])).content.decode()
    leaf = conversation.messages.get()
    assert f'name="after" id="composer-after" value="{leaf.pk}"' in page
    # The next turn's own draft, sent with the page's current ``after``, is kept.
    kept = trainer_client.post(
        reverse("labeling:draft-save", args=[conversation.pk]),
        {"content": "the assistant's answer", "after": str(leaf.pk)},
        **HTMX,
    )
    assert kept.status_code == 200
    assert conversation.drafts.get().content == "the assistant's answer"


def test_a_draft_of_a_turn_another_tab_sent_first_comes_back_as_its_own_side(
    trainer_client, conversation, trainer
):
    """A user turn refused because another tab sent the user's turn first stays the user's as
    the trainer types on (the composer sends the side it was written for with each save): the
    reloaded editor says so and asks before sending it as the assistant's."""
    (sent,) = write_turns(conversation, trainer, "sent from the other tab")
    refused = trainer_client.post(
        reverse("labeling:message-append", args=[conversation.pk]),
        {"role": "user", "content": "a question of my own", "after": "0"},
        **HTMX,
    )
    assert refused.status_code == 422
    assert 'name="role" id="composer-role" value="user"' in refused.content.decode()
    saved = trainer_client.post(
        reverse("labeling:draft-save", args=[conversation.pk]),
        {"content": "a question of my own, typed on", "role": "user", "after": str(sent.pk)},
        **HTMX,
    )
    assert saved.status_code == 200
    assert conversation.drafts.get().role == "user"
    page = trainer_client.get(reverse("labeling:editor", args=[conversation.pk])).content.decode()
    assert ">a question of my own, typed on</textarea>" in page
    assert 'data-written-role="user"' in page
    assert "written as the user's turn; the next turn is now the assistant's" in page
    assert 'name="role" id="composer-role" value="user"' in page


def test_a_draft_typed_for_the_next_side_comes_back_as_before(trainer_client, conversation):
    for role in ("user", ""):  # typed for the next side, or saved before drafts kept it
        trainer_client.post(
            reverse("labeling:draft-save", args=[conversation.pk]),
            {"content": "hello", "role": role, "after": "0"},
            **HTMX,
        )
        page = trainer_client.get(reverse("labeling:editor", args=[conversation.pk]))
        body = page.content.decode()
        assert ">hello</textarea>" in body and "data-written-role" not in body
        assert 'name="role" id="composer-role" value="user"' in body


@pytest.mark.parametrize("role", ["system", "User", " user", "nobody"])
def test_a_draft_typed_for_no_side_is_a_422_and_the_saved_draft_is_kept(
    trainer_client, conversation, trainer, role
):
    services.draft_save(conversation=conversation, author=trainer, content="mine", role="user")
    response = trainer_client.post(
        reverse("labeling:draft-save", args=[conversation.pk]),
        {"content": "other", "role": role, "after": "0"},
        **HTMX,
    )
    assert response.status_code == 422
    assert "Draft not saved: Role: Select a valid choice." in response.content.decode()
    draft = conversation.drafts.get()
    assert (draft.content, draft.role) == ("mine", "user")


def test_a_turn_sent_from_a_page_that_missed_later_turns_is_refused_and_kept(
    trainer_client, conversation, trainer
):
    """A reply written on a page (another tab) that still shows the first question, sent after
    another reply and the next question were added, answers the first question: it is not
    appended as the reply to the second. The text comes back with the turns it missed."""
    (question,) = write_turns(conversation, trainer, "Where should I go?")
    write_turns(conversation, trainer, "Lisbon.", "And when?")
    response = trainer_client.post(
        reverse("labeling:message-append", args=[conversation.pk]),
        {"role": "assistant", "content": "Porto, I would say.", "after": str(question.pk)},
        **HTMX,
    )
    assert response.status_code == 422
    body = response.content.decode()
    assert "The conversation changed" in body
    assert "Porto, I would say.</textarea>" in body and "And when?" in body
    assert not conversation.messages.filter(content="Porto, I would say.").exists()
    leaf = conversation.messages.get(content="And when?")
    assert f'name="after" id="composer-after" value="{leaf.pk}"' in body


def test_other_trainers_get_404_and_admins_can_read(
    client, other_trainer, admin_user, conversation
):
    client.force_login(other_trainer)
    assert client.get(reverse("labeling:editor", args=[conversation.pk])).status_code == 404
    assert (
        client.post(
            reverse("labeling:message-append", args=[conversation.pk]), {"content": "x"}
        ).status_code
        == 404
    )
    client.force_login(admin_user)
    assert client.get(reverse("labeling:editor", args=[conversation.pk])).status_code == 200


def test_branch_and_switch_through_views(trainer_client, conversation, trainer):
    first, reply = write_turns(conversation, trainer, "hi", "hello")
    response = trainer_client.post(
        reverse("labeling:message-branch", args=[reply.pk]),
        {"content": "howdy"},
        **HTMX,
    )
    assert response.status_code == 200 and "2/2" in response.content.decode()
    response = trainer_client.post(reverse("labeling:branch-switch", args=[reply.pk]), **HTMX)
    body = response.content.decode()
    assert "1/2" in body and "hello" in body
    assert first.children.count() == 2


@pytest.mark.parametrize("closing", ["finish", "discard"])
def test_a_closed_conversation_shows_its_alternatives_but_switches_to_none(
    trainer_client, conversation, trainer, closing
):
    """Switching branches is an edit: a finished or discarded conversation shows where its
    turns have alternatives, with no buttons to switch; a switch sent from a tab that missed
    the finish is a 422 saying why, and the branch shown stays."""
    first, reply = write_turns(conversation, trainer, "hi", "hello")
    alternative = services.message_branch(original=first, author=trainer, content="hey")
    services.branch_switch(message=reply, user=trainer)
    getattr(services, f"conversation_{closing}")(conversation=conversation, user=trainer)

    page = trainer_client.get(reverse("labeling:editor", args=[conversation.pk]))
    body = page.content.decode()
    assert "1/2" in body
    assert reverse("labeling:branch-switch", args=[alternative.pk]) not in body

    url = reverse("labeling:branch-switch", args=[alternative.pk])
    response = trainer_client.post(url, **HTMX)

    assert response.status_code == 422
    status = "finished" if closing == "finish" else "discarded"
    assert f"This conversation is {status}; reopen it to edit." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.active_leaf == reply


def test_suggest_queues_a_job_and_shows_progress(trainer_client, conversation, trainer, policy):
    worker_seen()  # a queued job polls while a live worker serves its queue
    services.message_append(conversation=conversation, author=trainer, content="hi")
    response = trainer_client.post(
        reverse("labeling:suggest", args=[conversation.pk]), {"n": "2"}, **HTMX
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="suggestions"' in body and "every 1s" in body


@pytest.mark.parametrize("role", ["system", "robot", " user"])
def test_suggestions_for_a_role_they_are_not_written_for_are_refused_as_such(
    trainer_client, conversation, trainer, policy, role
):
    """Asked for a system turn, the answer was "The next turn is the user's.", as if only the
    side were wrong: the role is refused as no role suggestions take, naming those they take;
    the wrong side's turn keeps its own sentence. The API refuses such a role alike."""
    url = reverse("labeling:suggest", args=[conversation.pk])

    response = trainer_client.post(url, {"n": "2", "role": role}, **HTMX)

    assert response.status_code == 422
    body = unescape(response.content.decode())
    assert "Suggestions are for the user's or the assistant's turn" in body
    assert "next turn" not in body
    assert not GenerationJob.objects.exists()
    wrong_side = trainer_client.post(url, {"n": "2", "role": "assistant"}, **HTMX)
    assert wrong_side.status_code == 422
    assert "The next turn is the user's." in unescape(wrong_side.content.decode())
    question = services.message_append(conversation=conversation, author=trainer, content="hi")
    api = trainer_client.post(
        "/api/generation-jobs/",
        {"prefix_message_id": question.pk, "n": 2, "role": role},
        content_type="application/json",
    )
    assert api.status_code == 400 and "not a valid choice" in str(api.json()["role"])
    assert not GenerationJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_suggestions_asked_for_while_the_job_queue_is_down_say_so_until_they_are_sent(
    trainer_client, conversation, trainer, policy, broker
):
    """The warning was only in the answer to asking for suggestions: the slot's next poll, a
    second later, said "Queued, next in line" while the job still waited for the queue to
    come back. The slot says it for as long as the job is not published."""
    services.message_append(conversation=conversation, author=trainer, content="hi")
    broker.down = True
    said = "The job queue is unreachable right now: your request is saved and runs as soon"
    asked = trainer_client.post(
        reverse("labeling:suggest", args=[conversation.pk]), {"n": "1"}, **HTMX
    )
    assert asked.status_code == 200 and said in asked.content.decode()
    job = GenerationJob.objects.get(purpose=GenerationJob.Purpose.SUGGESTION)
    says_unpublished_until_published(
        trainer_client,
        broker,
        job=job,
        parts={reverse("labeling:suggestions", args=[conversation.pk, job.pk]): said},
        pages=(reverse("labeling:editor", args=[conversation.pk]),),
    )


def test_suggestions_show_their_place_in_the_queue_then_generating(
    trainer_client,
    conversation,
    trainer,
    other_trainer,
    policy,
    broker,
    django_capture_on_commit_callbacks,
):
    services.message_append(conversation=conversation, author=trainer, content="hi")
    # Published (a job the broker has not taken yet says that instead).
    with django_capture_on_commit_callbacks(execute=True):
        ahead = sampler_services.generation_job_create(
            messages=[{"role": "user", "content": "first"}],
            n=1,
            purpose=GenerationJob.Purpose.SUGGESTION,
            requested_by=other_trainer,
        )
        job = services.suggestion_request(conversation=conversation, author=trainer, n=2)
    url = reverse("labeling:suggestions", args=[conversation.pk, job.pk])
    body = trainer_client.get(url, **HTMX).content.decode()
    assert "Queued behind 1 request" in body and 'aria-live="polite"' in body
    assert reverse("labeling:suggestion-cancel", args=[conversation.pk, job.pk]) in body
    GenerationJob.objects.filter(pk=ahead.pk).update(status="running")
    GenerationJob.objects.filter(pk=job.pk).update(status="running")
    body = trainer_client.get(url, **HTMX).content.decode()
    assert "Generating 2 suggestions" in body and "every 1s" in body


@pytest.mark.parametrize("move", ["branch", "switch"])
def test_a_suggestion_in_the_composer_for_a_turn_no_longer_next_does_not_block_the_composer(
    trainer_client, conversation, trainer, policy, move
):
    """The trainer used a suggestion, then edited the question into a new branch (or switched
    to another one): the composer's text stays, as their own, and can be saved and sent."""
    (question,) = write_turns(conversation, trainer, "Where to?")
    if move == "switch":
        services.message_branch(original=question, author=trainer, content="Where to, in May?")
        question = conversation.messages.get(content="Where to, in May?")
    job = services.suggestion_request(conversation=conversation, author=trainer, n=1)
    sample = sampler_services.generation_job_run_inline(job_id=job.pk).samples.get()
    conversation.refresh_from_db()
    services.draft_save(
        conversation=conversation, author=trainer, content="Lisbon.", sample_id=sample.pk
    )
    if move == "branch":
        services.message_branch(original=question, author=trainer, content="Where to, in May?")
    else:
        services.branch_switch(message=conversation.messages.get(content="Where to?"), user=trainer)
    conversation.refresh_from_db()
    leaf = conversation.active_leaf
    page = trainer_client.get(reverse("labeling:editor", args=[conversation.pk])).content.decode()
    assert ">Lisbon.</textarea>" in page
    assert 'name="sample_id" id="composer-sample" value=""' in page
    composer = {"content": "Lisbon.", "sample_id": "", "after": str(leaf.pk)}
    saved = trainer_client.post(reverse("labeling:draft-save", args=[conversation.pk]), composer)
    assert saved.status_code == 200
    sent = trainer_client.post(
        reverse("labeling:message-append", args=[conversation.pk]), composer, **HTMX
    )
    assert sent.status_code == 200
    assert conversation.messages.get(content="Lisbon.").origin == Message.Origin.HUMAN


def test_a_trainer_cancels_then_retries_a_suggestion(
    trainer_client, conversation, trainer, policy, django_capture_on_commit_callbacks
):
    worker_seen()  # a queued job polls while a live worker serves its queue
    services.message_append(conversation=conversation, author=trainer, content="hi")
    with django_capture_on_commit_callbacks(execute=False):
        job = services.suggestion_request(conversation=conversation, author=trainer, n=2)
    cancel = reverse("labeling:suggestion-cancel", args=[conversation.pk, job.pk])
    body = trainer_client.post(cancel, **HTMX).content.decode()
    job.refresh_from_db()
    assert job.status == "cancelled" and "Suggestions cancelled" in body
    assert "every 1s" not in body
    retry = reverse("labeling:suggestion-retry", args=[conversation.pk, job.pk])
    with django_capture_on_commit_callbacks(execute=False):
        body = trainer_client.post(retry, **HTMX).content.decode()
    job.refresh_from_db()
    assert job.status == "queued" and "every 1s" in body
    # Retrying a job that is not failed or cancelled is refused, with a message.
    response = trainer_client.post(retry, **HTMX)
    assert response.status_code == 409 and b"Only failed or cancelled" in response.content


@pytest.mark.parametrize("ended", ["succeeded", "failed"])
def test_cancelling_a_suggestion_that_has_ended_is_refused_in_the_apis_words(
    trainer_client, conversation, trainer, policy, django_capture_on_commit_callbacks, ended
):
    services.message_append(conversation=conversation, author=trainer, content="hi")
    with django_capture_on_commit_callbacks(execute=False):
        job = services.suggestion_request(conversation=conversation, author=trainer, n=2)
    GenerationJob.objects.filter(pk=job.pk).update(status=ended, finished_at=timezone.now())
    cancel = reverse("labeling:suggestion-cancel", args=[conversation.pk, job.pk])
    response = trainer_client.post(cancel, **HTMX)
    assert response.status_code == 409
    assert f"The job has already {ended}: nothing to cancel." in response.content.decode()
    job.refresh_from_db()
    assert job.status == ended


def test_another_trainer_cannot_cancel_my_suggestion(
    conversation, trainer, other_trainer, policy, django_capture_on_commit_callbacks
):
    from django.test import Client

    services.message_append(conversation=conversation, author=trainer, content="hi")
    with django_capture_on_commit_callbacks(execute=False):
        job = services.suggestion_request(conversation=conversation, author=trainer, n=2)
    other = Client()
    other.force_login(other_trainer)
    response = other.post(reverse("labeling:suggestion-cancel", args=[conversation.pk, job.pk]))
    assert response.status_code in {403, 404}
    job.refresh_from_db()
    assert job.status == "queued"


@pytest.mark.parametrize("prefixed", [True, False])
def test_a_suggestion_job_is_not_shown_cancelled_or_retried_under_another_conversation(
    trainer_client, conversation, trainer, policy, django_capture_on_commit_callbacks, prefixed
):
    """The trainer's job for one conversation (after its first turn, or for an empty one,
    which only its draft links), asked for under the editor of another of theirs: 404, and
    the job is left as it was."""
    other = services.conversation_create(owner=trainer, title="Other plans")
    if prefixed:
        services.message_append(conversation=conversation, author=trainer, content="hi")
    with django_capture_on_commit_callbacks(execute=False):
        job = services.suggestion_request(conversation=conversation, author=trainer, n=2)
    own = trainer_client.get(
        reverse("labeling:suggestions", args=[conversation.pk, job.pk]), **HTMX
    )
    assert own.status_code == 200
    for name in ("suggestions", "suggestion-cancel", "suggestion-retry"):
        url = reverse(f"labeling:{name}", args=[other.pk, job.pk])
        send = trainer_client.get if name == "suggestions" else trainer_client.post
        assert send(url, **HTMX).status_code == 404, name
    job.refresh_from_db()
    assert job.status == "queued"
    # Cancelled under its own conversation, it is not retried under the other one either.
    trainer_client.post(reverse("labeling:suggestion-cancel", args=[conversation.pk, job.pk]))
    retry = trainer_client.post(
        reverse("labeling:suggestion-retry", args=[other.pk, job.pk]), **HTMX
    )
    assert retry.status_code == 404
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_an_admin_cannot_show_a_trainers_suggestions_under_another_conversation(
    admin_client_, conversation, trainer, policy, django_capture_on_commit_callbacks
):
    other = services.conversation_create(owner=trainer, title="Other plans")
    services.message_append(conversation=conversation, author=trainer, content="hi")
    with django_capture_on_commit_callbacks(execute=False):
        job = services.suggestion_request(conversation=conversation, author=trainer, n=2)
    wrong = reverse("labeling:suggestions", args=[other.pk, job.pk])
    assert admin_client_.get(wrong, **HTMX).status_code == 404
    right = reverse("labeling:suggestions", args=[conversation.pk, job.pk])
    assert admin_client_.get(right, **HTMX).status_code == 200


def test_a_job_not_asked_for_as_suggestions_is_not_shown_in_the_editor(
    trainer_client, conversation, trainer, policy, django_capture_on_commit_callbacks
):
    """A job of another purpose whose prefix is a turn of this conversation (one made through
    the generation API, say) is not this editor's suggestions."""
    user_turn = services.message_append(conversation=conversation, author=trainer, content="hi")
    with django_capture_on_commit_callbacks(execute=False):
        job = sampler_services.generation_job_create(
            prefix_message=user_turn,
            n=1,
            purpose=GenerationJob.Purpose.MANUAL,
            requested_by=trainer,
        )
    url = reverse("labeling:suggestions", args=[conversation.pk, job.pk])
    assert trainer_client.get(url, **HTMX).status_code == 404


def test_suggest_with_bad_count_is_a_422_message(trainer_client, conversation, policy):
    response = trainer_client.post(
        reverse("labeling:suggest", args=[conversation.pk]), {"n": "99"}, **HTMX
    )
    assert response.status_code == 422 and b'role="alert"' in response.content


def test_finish_from_the_editor(trainer_client, conversation, trainer):
    write_turns(conversation, trainer, "hi", "hello")
    response = trainer_client.post(reverse("labeling:finish", args=[conversation.pk]))
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.FINISHED


SCRIPT = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


def _suggestion_job(conversation, trainer):
    user_turn = services.message_append(conversation=conversation, author=trainer, content="hi")
    job = sampler_services.generation_job_create(
        prefix_message=user_turn,
        n=2,
        params={"max_new_tokens": 4},
        seed=1,
        purpose=GenerationJob.Purpose.SUGGESTION,
        requested_by=trainer,
        queue=False,
    )
    job = sampler_services.generation_job_run_inline(job_id=job.pk)
    job.samples.update(text=SCRIPT)
    return job


def test_script_in_model_suggestions_is_shown_as_text(
    trainer_client, conversation, trainer, policy
):
    job = _suggestion_job(conversation, trainer)

    response = trainer_client.get(
        reverse("labeling:suggestions", args=[conversation.pk, job.pk]), **HTMX
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in body and "<img" not in body
    assert body.count("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;") == 2


def test_script_in_a_model_written_turn_is_shown_as_text(
    trainer_client, conversation, trainer, policy
):
    job = _suggestion_job(conversation, trainer)
    sample = job.samples.first()
    services.message_append(
        conversation=conversation, author=trainer, content=sample.text, sample_id=sample.pk
    )
    message = Message.objects.get(role="assistant")
    assert message.origin == Message.Origin.MODEL

    body = trainer_client.get(reverse("labeling:editor", args=[conversation.pk])).content.decode()

    assert "<script>alert" not in body and "<img src=x" not in body
    assert '&lt;script&gt;alert("pwned")&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;' in body


@pytest.mark.parametrize("editing", [False, True])
def test_a_draft_save_from_a_stale_tab_after_discarding_is_refused_and_keeps_nothing(
    trainer_client, conversation, trainer, editing
):
    """Another tab discarded the conversation: this tab's autosave (the composer's, or an
    edit's) is refused with the reason, as its Send would be; the page keeps its local copy."""
    _, reply = write_turns(conversation, trainer, "hi", "hello!")
    services.conversation_discard(conversation=conversation, user=trainer)
    if editing:
        url = reverse("labeling:edit-draft-save", args=[reply.pk])
        data = {"content": "hello there!"}
    else:
        url = reverse("labeling:draft-save", args=[conversation.pk])
        data = {"content": "and another thing", "after": str(reply.pk)}

    response = trainer_client.post(url, data, **HTMX)

    assert response.status_code == 422
    assert "This conversation is discarded; reopen it to edit." in response.content.decode()
    assert not conversation.drafts.exists()


def test_line_breaks_a_browser_form_sends_as_crlf_are_stored_as_newlines(
    trainer_client, conversation, trainer
):
    """A form posted without htmx sends a textarea's line breaks as CRLF: turns, drafts and
    instructions keep them as "\\n" (as the model writes and the exports give them), and an
    unchanged multi-line turn saved as a branch is "nothing changed", not a second copy."""
    (user_turn,) = write_turns(conversation, trainer, "Plan my day:\nmorning\nevening")
    sent = trainer_client.post(
        reverse("labeling:message-append", args=[conversation.pk]),
        {"content": "Morning:\r\nrun.\r\rEvening:\rread.", "after": user_turn.pk},
    )
    assert sent.status_code == 200
    conversation.refresh_from_db()
    assert conversation.active_leaf.content == "Morning:\nrun.\n\nEvening:\nread."

    unchanged = trainer_client.post(
        reverse("labeling:message-branch", args=[user_turn.pk]),
        {"content": "Plan my day:\r\nmorning\r\nevening"},
    )
    assert unchanged.status_code == 422 and "Nothing changed" in unchanged.content.decode()
    assert not Message.objects.filter(content__contains="\r").exists()
    assert user_turn.parent is None
    assert Message.objects.filter(conversation=conversation, parent=None).count() == 1

    trainer_client.post(
        reverse("labeling:draft-save", args=[conversation.pk]),
        {"content": "Next:\r\nsleep", "after": conversation.active_leaf_id},
    )
    assert conversation.drafts.get().content == "Next:\nsleep"

    created = trainer_client.post(
        reverse("labeling:conversation-create"), {"title": "T", "instructions": "a\r\nb"}
    )
    assert Conversation.objects.get(pk=created.url.split("/")[-2]).instructions == "a\nb"


@pytest.mark.parametrize("project", ["", "default"])
def test_the_list_page_starts_no_conversation_in_a_closed_default_project(trainer_client, project):
    from ranking.projects.models import Project, project_default_id

    Project.objects.filter(pk=project_default_id()).update(status=Project.Status.DONE)

    data = {"title": "after done", "project": project}
    form = _create_form(_refused_create(trainer_client, data))

    assert "Project: No active project &#x27;default&#x27; is open to you." in form
    assert 'value="after done"' in form


def test_suggestions_stop_polling_while_their_job_waits_for_no_worker(
    trainer_client, conversation, trainer, policy, django_capture_on_commit_callbacks
):
    """Suggestions queued where no live worker serves the interactive queue cannot come: the
    slot stops asking every second, names the queue and offers "Check again" (without
    JavaScript, the editor). Before, it asked every second for as long as the page was open."""
    services.message_append(conversation=conversation, author=trainer, content="hi")
    with django_capture_on_commit_callbacks(execute=False):
        job = services.suggestion_request(conversation=conversation, author=trainer, n=2)
    url = reverse("labeling:suggestions", args=[conversation.pk, job.pk])
    polls_only_while_work_can_move(
        trainer_client, url, job=job, element="suggestions", trigger='hx-trigger="every 1s"'
    )
