import json

import pytest
from django.test import Client
from django.utils.dateparse import parse_datetime

from config.text import LINE_MESSAGE
from labeling.conversations import services
from labeling.conversations.models import Conversation, Message
from tests.labeling.conftest import write_turns
from tests.labeling.conversations.conftest import MULTI_LINE_TITLES


def _post(client: Client, url: str, data: dict | None = None):
    return client.post(url, json.dumps(data or {}), content_type="application/json")


@pytest.fixture
def others_conversation(other_trainer):
    conversation = services.conversation_create(owner=other_trainer, title="Otto's")
    services.message_append(conversation=conversation, author=other_trainer, content="Hi there")
    return conversation


def test_the_api_creates_a_conversation_in_a_project_open_to_the_caller_only(trainer_client):
    from django.contrib.auth.models import Group

    from ranking.projects.services import project_create

    helpful = project_create(name="Helpfulness", slug="helpful", status="active")
    experts = Group.objects.create(name="experts")
    project_create(name="Safety", slug="safety", status="active", trainer_groups=[experts])
    created = _post(trainer_client, "/api/conversations/", {"title": "A", "project": "helpful"})
    assert created.status_code == 201
    assert Conversation.objects.get(pk=created.json()["id"]).project_id == helpful.pk
    refused = _post(trainer_client, "/api/conversations/", {"title": "B", "project": "safety"})
    assert refused.status_code == 400 and "project" in refused.json()
    # A slug is matched as written: " helpful " names no project (it was trimmed and taken).
    for spaced in (" helpful ", "helpful\n"):
        refused = _post(trainer_client, "/api/conversations/", {"title": "B", "project": spaced})
        assert refused.status_code == 400 and "project" in refused.json()
    assert not Conversation.objects.filter(title="B").exists()


def test_every_conversation_answer_names_its_project_by_the_slug_stored(
    trainer_client, django_assert_max_num_queries
):
    """A conversation created in a project (named in any letter case) was answered without it,
    so a client could not see where it went; the create, detail and list answers name it."""
    from ranking.projects.models import DEFAULT_PROJECT_SLUG
    from ranking.projects.services import project_create

    project_create(name="Helpfulness", slug="helpful", status="active")
    created = _post(trainer_client, "/api/conversations/", {"title": "A", "project": "HELPFUL"})
    assert created.status_code == 201 and created.json()["project"] == "helpful"
    plain = _post(trainer_client, "/api/conversations/", {"title": "B"})
    assert plain.json()["project"] == DEFAULT_PROJECT_SLUG
    detail = trainer_client.get(f"/api/conversations/{created.json()['id']}/")
    assert detail.json()["project"] == "helpful"
    for title in "CDEF":
        _post(trainer_client, "/api/conversations/", {"title": title, "project": "helpful"})
    with django_assert_max_num_queries(8):  # one query for the projects, not one a row
        listed = trainer_client.get("/api/conversations/").json()["results"]
    assert {row["title"]: row["project"] for row in listed} == {
        "A": "helpful",
        "B": DEFAULT_PROJECT_SLUG,
        **{title: "helpful" for title in "CDEF"},
    }


def test_create_append_branch_and_finish_through_the_api(trainer_client):
    response = _post(
        trainer_client, "/api/conversations/", {"title": "Trip", "instructions": "Be kind."}
    )
    assert response.status_code == 201, response.content
    conversation_id = response.json()["id"]
    assert response.json()["owner"] == "tess" and response.json()["status"] == "draft"

    messages_url = f"/api/conversations/{conversation_id}/messages/"
    user_turn = _post(trainer_client, messages_url, {"content": "Where should I go?"})
    assert user_turn.status_code == 201, user_turn.content
    assert user_turn.json()["role"] == "user" and user_turn.json()["parent_id"] is None
    assistant_turn = _post(
        trainer_client, messages_url, {"content": "Lisbon.", "role": "assistant"}
    ).json()
    assert assistant_turn["parent_id"] == user_turn.json()["id"]
    assert assistant_turn["origin"] == "human" and assistant_turn["author"] == "tess"

    branch = _post(
        trainer_client,
        f"/api/messages/{assistant_turn['id']}/branch/",
        {"content": "Porto, in spring."},
    )
    assert branch.status_code == 201, branch.content
    assert branch.json()["parent_id"] == user_turn.json()["id"]

    detail = trainer_client.get(f"/api/conversations/{conversation_id}/").json()
    assert {m["id"] for m in detail["messages"]} == {
        user_turn.json()["id"],
        assistant_turn["id"],
        branch.json()["id"],
    }
    assert detail["active_path"] == [user_turn.json()["id"], branch.json()["id"]]

    switched = _post(trainer_client, f"/api/messages/{assistant_turn['id']}/switch/")
    assert switched.status_code == 200
    assert switched.json()["active_leaf_id"] == assistant_turn["id"]

    finished = _post(trainer_client, f"/api/conversations/{conversation_id}/finish/")
    assert finished.status_code == 200, finished.content
    assert finished.json()["status"] == "finished" and finished.json()["finished_at"]
    reopened = _post(trainer_client, f"/api/conversations/{conversation_id}/reopen/")
    assert reopened.json()["status"] == "draft"
    discarded = _post(trainer_client, f"/api/conversations/{conversation_id}/discard/")
    assert discarded.json()["status"] == "discarded"


def test_append_after_an_explicit_parent_starts_a_new_branch(trainer, trainer_client, conversation):
    root, _ = write_turns(conversation, trainer, "Hi", "Hello!")
    response = _post(
        trainer_client,
        f"/api/conversations/{conversation.pk}/messages/",
        {"content": "Hey, what's up?", "parent_id": root.pk},
    )
    assert response.status_code == 201
    assert response.json()["parent_id"] == root.pk and response.json()["role"] == "assistant"
    assert root.children.count() == 2


def test_a_branch_posted_twice_is_a_400_naming_content_and_stores_one(
    trainer_client, conversation, trainer
):
    _, reply = write_turns(conversation, trainer, "hi", "hello!")
    url = f"/api/messages/{reply.pk}/branch/"

    assert _post(trainer_client, url, {"content": "hey"}).status_code == 201
    again = _post(trainer_client, url, {"content": "hey"})

    assert again.status_code == 400
    assert "already has an alternative" in again.json()["content"][0]
    assert Message.objects.filter(parent=reply.parent, content="hey").count() == 1


@pytest.mark.parametrize("action", ["finish", "discard", "reopen", "switch"])
def test_a_field_sent_to_an_endpoint_without_a_body_is_a_400_naming_it(
    trainer_client, conversation, trainer, action
):
    _, reply = write_turns(conversation, trainer, "hi", "hello!")
    target = f"messages/{reply.pk}" if action == "switch" else f"conversations/{conversation.pk}"

    response = _post(trainer_client, f"/api/{target}/{action}/", {"status": "discarded"})

    assert response.status_code == 400, response.content
    assert "'status'" in response.json()["detail"]
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.DRAFT and conversation.active_leaf == reply


def test_a_first_turn_naming_a_sample_made_for_another_prompt_is_a_400(
    trainer_client, conversation, unrelated_sample
):
    sample = unrelated_sample
    response = _post(
        trainer_client,
        f"/api/conversations/{conversation.pk}/messages/",
        {"content": sample.text, "sample_id": sample.pk},
    )
    assert response.status_code == 400 and "sample_id" in response.json()
    assert not Message.objects.filter(conversation=conversation).exists()


def test_parent_from_another_conversation_is_a_400(trainer_client, conversation, trainer):
    elsewhere = services.conversation_create(owner=trainer)
    foreign = services.message_append(conversation=elsewhere, author=trainer, content="Hi")
    response = _post(
        trainer_client,
        f"/api/conversations/{conversation.pk}/messages/",
        {"content": "Hello", "parent_id": foreign.pk},
    )
    assert response.status_code == 400
    assert "parent_id" in response.json()


def test_list_shows_only_own_conversations_and_filters_by_status(
    trainer_client, conversation, others_conversation
):
    response = trainer_client.get("/api/conversations/")
    assert response.status_code == 200
    assert [c["id"] for c in response.json()["results"]] == [conversation.pk]
    assert response.json()["count"] == 1
    assert trainer_client.get("/api/conversations/?status=finished").json()["count"] == 0
    assert trainer_client.get("/api/conversations/?q=weekend").json()["count"] == 1
    assert trainer_client.get("/api/conversations/?status=bogus").status_code == 400
    typo = trainer_client.get("/api/conversations/?stauts=finished")
    assert typo.status_code == 400
    assert typo.json() == {"detail": "Unknown parameters: 'stauts'."}


def test_paging_takes_whole_numbers_or_says_which_is_wrong(trainer_client, trainer):
    for title in ("one", "two", "three"):
        services.conversation_create(owner=trainer, title=title)
    page = trainer_client.get("/api/conversations/?limit=2&offset=1").json()
    assert page["count"] == 3 and len(page["results"]) == 2
    assert len(trainer_client.get("/api/conversations/?limit=1000").json()["results"]) == 3
    for query, name in [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=1.5", "limit"),
        ("limit=true", "limit"),
        ("offset=-5", "offset"),
        ("offset=abc", "offset"),
        ("offset=" + "9" * 30, "offset"),
    ]:
        response = trainer_client.get(f"/api/conversations/?{query}")
        assert response.status_code == 400, query
        assert response.json() == {
            name: [
                f"Must be a whole number, at least {int(name == 'limit')}, of at most 18 digits."
            ]
        }


def test_admin_lists_and_reads_everyones_conversations(
    admin_client_, conversation, others_conversation
):
    assert admin_client_.get("/api/conversations/").json()["count"] == 2
    response = admin_client_.get(f"/api/conversations/{others_conversation.pk}/")
    assert response.status_code == 200
    assert response.json()["owner"] == "otto"
    assert [m["content"] for m in response.json()["messages"]] == ["Hi there"]


def test_trainer_gets_404_on_another_trainers_conversation(trainer_client, others_conversation):
    url = f"/api/conversations/{others_conversation.pk}"
    assert trainer_client.get(f"{url}/").status_code == 404
    assert _post(trainer_client, f"{url}/messages/", {"content": "Sneaky"}).status_code == 404
    assert _post(trainer_client, f"{url}/finish/").status_code == 404
    message = others_conversation.messages.get()
    assert (
        _post(trainer_client, f"/api/messages/{message.pk}/branch/", {"content": "x"}).status_code
        == 404
    )
    assert others_conversation.messages.count() == 1


def test_turns_out_of_order_are_a_400_with_a_message(trainer_client, conversation, trainer):
    services.message_append(conversation=conversation, author=trainer, content="Hi")
    response = _post(
        trainer_client,
        f"/api/conversations/{conversation.pk}/messages/",
        {"content": "Me again", "role": "user"},
    )
    assert response.status_code == 400
    assert "alternate" in response.json()["role"][0]


@pytest.mark.parametrize("role", ["bogus", "system"])
def test_a_role_that_is_not_a_turn_role_is_named_as_such(trainer_client, conversation, role):
    response = _post(
        trainer_client,
        f"/api/conversations/{conversation.pk}/messages/",
        {"content": "Hi", "role": role},
    )
    assert response.status_code == 400
    assert response.json() == {"role": ["Must be 'user' or 'assistant'."]}
    assert not conversation.messages.exists()


@pytest.mark.parametrize("content", ["", "   ", "x" * 20001])
def test_empty_or_over_long_content_is_a_400(trainer_client, conversation, content):
    response = _post(
        trainer_client, f"/api/conversations/{conversation.pk}/messages/", {"content": content}
    )
    assert response.status_code == 400
    assert response.json()["content"]
    assert not Message.objects.exists()


def test_a_100_kb_turn_or_draft_is_a_400_with_the_limit_and_nothing_changes(
    trainer_client, conversation, trainer
):
    first = services.message_append(conversation=conversation, author=trainer, content="Hi")
    services.draft_save(conversation=conversation, author=trainer, content="Half a thought")
    text = "w" * 100_000
    turn = _post(
        trainer_client, f"/api/conversations/{conversation.pk}/messages/", {"content": text}
    )
    draft = trainer_client.put(
        f"/api/conversations/{conversation.pk}/draft/",
        json.dumps({"content": text}),
        "application/json",
    )
    for response in (turn, draft):
        assert response.status_code == 400, response.status_code
        assert "20000" in response.json()["content"][0]
    conversation.refresh_from_db()
    assert list(conversation.messages.all()) == [first] and conversation.active_leaf == first
    assert conversation.drafts.get().content == "Half a thought"


def test_over_long_title_is_a_400(trainer_client):
    response = _post(trainer_client, "/api/conversations/", {"title": "t" * 201})
    assert response.status_code == 400 and "title" in response.json()
    assert not Conversation.objects.exists()


@pytest.mark.parametrize("title", MULTI_LINE_TITLES)
def test_a_title_of_more_than_one_line_is_a_400_naming_it(trainer_client, title):
    response = _post(trainer_client, "/api/conversations/", {"title": title})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"title": [LINE_MESSAGE]}
    assert not Conversation.objects.exists()


def test_a_titles_surrounding_line_breaks_are_trimmed_as_its_spaces_are(trainer_client):
    response = _post(trainer_client, "/api/conversations/", {"title": "\n Trip\r\n"})
    assert response.status_code == 201 and response.json()["title"] == "Trip"


def test_finishing_without_an_assistant_turn_is_a_400(trainer_client, conversation, trainer):
    services.message_append(conversation=conversation, author=trainer, content="Hi")
    response = _post(trainer_client, f"/api/conversations/{conversation.pk}/finish/")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "assistant" in detail


def test_editing_a_finished_conversation_is_a_400(trainer_client, conversation, trainer):
    write_turns(conversation, trainer, "Hi", "Hello")
    services.conversation_finish(conversation=conversation, user=trainer)
    response = _post(
        trainer_client, f"/api/conversations/{conversation.pk}/messages/", {"content": "More"}
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "reopen" in detail


def test_draft_is_saved_and_replaced(trainer_client, conversation):
    url = f"/api/conversations/{conversation.pk}/draft/"
    first = trainer_client.put(url, json.dumps({"content": "Half a"}), "application/json")
    second = trainer_client.put(url, json.dumps({"content": "Half a thought"}), "application/json")
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert conversation.drafts.get().content == "Half a thought"


def test_anonymous_requests_are_refused(client, db):
    assert client.get("/api/conversations/").status_code in {401, 403}
    assert _post(client, "/api/conversations/", {"title": "x"}).status_code in {401, 403}


def test_user_without_a_role_is_refused(client, plain_user):
    client.force_login(plain_user)
    assert client.get("/api/conversations/").status_code == 403
    assert _post(client, "/api/conversations/", {"title": "x"}).status_code == 403


def test_schema_is_served_to_a_logged_in_user(trainer_client):
    response = trainer_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    assert "/api/conversations/{conversation_id}/messages/" in paths
    assert "/api/messages/{message_id}/branch/" in paths


@pytest.mark.parametrize("closing", ["discard", "finish"])
def test_a_draft_on_a_closed_conversation_is_refused_as_a_turn_is(
    trainer_client, conversation, trainer, closing
):
    write_turns(conversation, trainer, "Hi", "Hello!")
    services.draft_save(conversation=conversation, author=trainer, content="Half a thought")
    closed = _post(trainer_client, f"/api/conversations/{conversation.pk}/{closing}/")
    assert closed.status_code == 200, closed.content
    turn = _post(
        trainer_client, f"/api/conversations/{conversation.pk}/messages/", {"content": "More"}
    )
    draft = trainer_client.put(
        f"/api/conversations/{conversation.pk}/draft/",
        json.dumps({"content": "Something else"}),
        "application/json",
    )
    assert turn.status_code == 400, turn.content
    assert draft.status_code == turn.status_code, draft.content
    assert draft.json() == turn.json()
    assert "reopen it to edit" in draft.json()["detail"]
    assert conversation.drafts.get().content == "Half a thought"


def test_finish_or_discard_sent_again_answers_as_the_first_did_and_changes_nothing(
    trainer, trainer_client, conversation
):
    """A retried request (a double click, a client that timed out) finds the conversation
    already in the state it asks for: the same 200, the first finish's time kept. Moving from
    one closed state to the other is still refused."""
    write_turns(conversation, trainer, "Hi", "Hello!")
    url = f"/api/conversations/{conversation.pk}"
    first = _post(trainer_client, f"{url}/finish/")
    again = _post(trainer_client, f"{url}/finish/")
    assert first.status_code == again.status_code == 200, again.content
    assert again.json()["finished_at"] == first.json()["finished_at"]
    assert _post(trainer_client, f"{url}/discard/").status_code == 400

    _post(trainer_client, f"{url}/reopen/")
    first = _post(trainer_client, f"{url}/discard/")
    again = _post(trainer_client, f"{url}/discard/")
    assert first.status_code == again.status_code == 200, again.content
    assert again.json()["status"] == "discarded"
    assert _post(trainer_client, f"{url}/finish/").status_code == 400
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.DISCARDED


def test_reopen_of_a_conversation_in_progress_answers_200_and_writes_nothing(
    trainer_client, other_trainer, conversation
):
    """Reopen sent to a conversation that is already in progress (a double click, a retried
    request) answers as finish and discard do when sent again: the same 200 with the
    conversation, and nothing written, so its ``updated_at`` (the Write list's order) stays.
    Another trainer still finds no such conversation."""
    before = Conversation.objects.get(pk=conversation.pk).updated_at
    url = f"/api/conversations/{conversation.pk}/reopen/"
    for _ in range(2):
        response = _post(trainer_client, url)
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "draft"
        assert parse_datetime(response.json()["updated_at"]) == before
    conversation.refresh_from_db()
    assert conversation.updated_at == before
    other = Client()
    other.force_login(other_trainer)
    assert _post(other, url).status_code == 404


@pytest.mark.parametrize("closing", ["finish", "discard"])
def test_switching_branches_in_a_closed_conversation_is_refused_as_a_turn_is(
    trainer_client, conversation, trainer, closing
):
    """A finished conversation whose first turn has an alternative with no answer: switching
    to it would leave a finished conversation showing no assistant turn. It is refused as an
    appended turn is (reopen first), and nothing is written."""
    first, reply = write_turns(conversation, trainer, "Hi", "Hello!")
    alternative = services.message_branch(original=first, author=trainer, content="Hey")
    services.branch_switch(message=reply, user=trainer)
    getattr(services, f"conversation_{closing}")(conversation=conversation, user=trainer)
    before = Conversation.objects.get(pk=conversation.pk).updated_at

    switched = _post(trainer_client, f"/api/messages/{alternative.pk}/switch/")
    turn = _post(
        trainer_client, f"/api/conversations/{conversation.pk}/messages/", {"content": "More"}
    )

    assert switched.status_code == turn.status_code == 400, switched.content
    assert switched.json() == turn.json()
    assert "reopen it to edit" in switched.json()["detail"]
    conversation.refresh_from_db()
    assert conversation.active_leaf == reply and conversation.updated_at == before


def test_switching_to_the_branch_already_shown_answers_200_and_writes_nothing(
    trainer_client, conversation, trainer
):
    """As a reopen of a conversation in progress: the same 200 with the conversation, and its
    ``updated_at`` (the Write list's order) stays."""
    first, reply = write_turns(conversation, trainer, "Hi", "Hello!")
    before = Conversation.objects.get(pk=conversation.pk).updated_at
    for target in (reply, first):  # the leaf itself, or a turn whose branch ends there
        response = _post(trainer_client, f"/api/messages/{target.pk}/switch/")
        assert response.status_code == 200, response.content
        assert response.json()["active_leaf_id"] == reply.pk
        assert parse_datetime(response.json()["updated_at"]) == before
    conversation.refresh_from_db()
    assert conversation.updated_at == before


@pytest.mark.parametrize("status", ["done", "paused"])
@pytest.mark.parametrize("named", [False, True])
def test_a_closed_default_project_takes_no_new_conversation_named_or_not(
    trainer_client, status, named
):
    from ranking.projects.models import DEFAULT_PROJECT_SLUG, Project, project_default_id

    Project.objects.filter(pk=project_default_id()).update(status=status)
    body = {"title": "after done"} | ({"project": DEFAULT_PROJECT_SLUG} if named else {})

    refused = _post(trainer_client, "/api/conversations/", body)

    assert refused.status_code == 400
    assert refused.json() == {"project": ["No active project 'default' is open to you."]}
    assert not Conversation.objects.exists()
