"""Property tests for the services that take text: whatever text arrives (NUL, unpaired
surrogates, lists where strings belong), the answer is the stored text or a ValidationError /
a line error naming the problem, never another exception."""

import json

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.text import one_line_problem, search_text, text_problem
from labeling.conversations import services
from labeling.conversations.importing import LineError, ParsedConversation, parsed_lines
from sampler.generation.services import generation_job_create
from tests.ranking.conftest import model_version_create

# Every code point, with NUL and unpaired surrogates drawn often.
ANY_TEXT = st.text(
    alphabet=st.characters(codec=None, categories=None) | st.sampled_from("\x00\ud800\udfff"),
    max_size=40,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3)
    ),
    max_leaves=8,
)
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(text=ANY_TEXT)
def test_search_text_is_always_searchable(text):
    cleaned = search_text(text, max_chars=10)
    assert text_problem(cleaned) is None and len(cleaned) <= 10
    assert cleaned == "".join(c for c in text if c != "\x00" and not "\ud800" <= c <= "\udfff")[:10]


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(text=ANY_TEXT)
def test_a_turn_is_stored_as_typed_or_refused_with_a_content_error(trainer, text):
    conversation = services.conversation_create(owner=trainer)
    try:
        message = services.message_append(conversation=conversation, author=trainer, content=text)
    except ValidationError as error:
        assert "content" in error.message_dict
        assert text_problem(text) or not text.strip()
        assert not conversation.messages.exists()
    else:
        assert text_problem(text) is None
        message.refresh_from_db()
        assert message.content == text.strip()


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(title=ANY_TEXT, draft=ANY_TEXT)
def test_titles_and_drafts_are_stored_or_refused_by_field(trainer, title, draft):
    try:
        conversation = services.conversation_create(owner=trainer, title=title)
    except ValidationError as error:
        assert "title" in error.message_dict
        # A title is one line: surrounding whitespace is trimmed, a line break within refused.
        assert one_line_problem(title.strip()) or len(title.strip()) > 200
        return
    try:
        saved = services.draft_save(conversation=conversation, author=trainer, content=draft)
    except ValidationError as error:
        assert error.message_dict["content"] and text_problem(draft)
    else:
        saved.refresh_from_db()
        assert saved.content == draft


@PROPERTY_SETTINGS
@given(role=JSON_VALUES, content=JSON_VALUES, origin=JSON_VALUES, title=JSON_VALUES)
def test_an_import_line_of_any_shape_is_parsed_or_a_line_error(role, content, origin, title):
    record = {
        "title": title,
        "messages": [
            {"role": role, "content": content, "origin": origin},
            {"role": "assistant", "content": "ok"},
        ],
    }
    line = json.dumps(record, ensure_ascii=True)
    [(number, parsed)] = list(parsed_lines([line]))
    assert number == 1
    assert isinstance(parsed, ParsedConversation | LineError)
    if isinstance(parsed, ParsedConversation):
        assert all(text_problem(m.content) is None for m in parsed.messages)
        assert parsed.messages[0].role == role == "user"
        # Given or taken from the first turn, the title is one line.
        assert one_line_problem(parsed.title) is None


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(role=JSON_VALUES, content=JSON_VALUES)
def test_a_generation_prompt_of_any_shape_is_queued_or_refused(trainer, role, content):
    version = model_version_create("policy")
    try:
        job = generation_job_create(
            messages=[{"role": role, "content": content}],
            n=1,
            role="assistant",
            model_version=version,
            requested_by=trainer,
            queue=False,
        )
    except ValidationError as error:
        assert "messages" in error.message_dict
    else:
        assert job.prompt_messages == [{"role": role, "content": content}]
        assert isinstance(content, str) and text_problem(content) is None
    finally:
        version.jobs.all().delete()
        version.delete()
