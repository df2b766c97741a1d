import gzip
import io
import json
import re
import sys

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from config.text import LINE_MESSAGE
from labeling.conversations import importing, services
from labeling.conversations.models import Conversation, Message
from labeling.conversations.services import conversations_import
from ranking.exports.demonstrations import demonstration_records
from ranking.exports.filters import ExportFilters
from ranking.projects.models import DEFAULT_PROJECT_SLUG, Project, project_default_id
from ranking.projects.services import project_create
from tests.labeling.conversations.conftest import (
    GOOD_PLAIN,
    GOOD_WITH_SYSTEM,
    MIXED_FILE,
    MULTI_LINE_TITLES,
    jsonl,
)


def _chain(conversation: Conversation) -> list[Message]:
    """The conversation's messages from the active leaf up to the root, root first."""
    chain, message = [], conversation.active_leaf
    while message is not None:
        chain.append(message)
        message = message.parent
    return list(reversed(chain))


def test_a_file_with_bad_lines_saves_nothing_and_reports_every_bad_line(trainer):
    report = conversations_import(
        lines=io.BytesIO(MIXED_FILE), owner=trainer, title_prefix="batch 1: "
    )

    assert report.created == 0 and report.conversation_ids == [] and report.valid == 2
    assert [line for line, _ in report.errors] == [2, 3, 5]
    assert "invalid JSON" in report.errors[0][1]
    assert "role must be one of" in report.errors[1][1] and "'bot'" in report.errors[1][1]
    assert "messages[1]: expected role 'assistant', got 'user'" in report.errors[2][1]
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_a_valid_file_is_imported_whole(trainer):
    report = conversations_import(
        lines=io.BytesIO(jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN)),
        owner=trainer,
        title_prefix="batch 1: ",
    )

    assert report.ok and report.created == 2 and len(report.conversation_ids) == 2
    assert Conversation.objects.count() == 2 and Message.objects.count() == 7

    first, second = Conversation.objects.filter(pk__in=report.conversation_ids).order_by("pk")
    for conversation in (first, second):
        assert conversation.owner == trainer
        assert conversation.source == Conversation.Source.IMPORTED
        assert conversation.status == Conversation.Status.FINISHED
        assert conversation.finished_at is not None
    assert first.title == "batch 1: Greetings"
    assert second.title == "batch 1: What is the capital of France?"

    chain = _chain(first)
    assert [(m.role, m.content) for m in chain] == [
        (m["role"], m["content"]) for m in GOOD_WITH_SYSTEM["messages"]
    ]
    assert [m.origin for m in chain] == ["human", "human", "model", "human", "human"]
    assert chain[0].parent is None
    assert set(first.messages.all()) == set(chain)  # linear: no stray branches
    assert all(m.author is None and m.sample is None for m in chain)
    assert [m.origin for m in _chain(second)] == ["human", "model"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"[1, 2]", "JSON object"),
        (b'{"messages": []}', "non-empty list"),
        (b'{"messages": "hi"}', "non-empty list"),
        (json.dumps({"messages": [{"role": "user", "content": "Hi"}]}).encode(), "assistant"),
        (json.dumps({"messages": [{"role": "assistant", "content": "Hi"}]}).encode(), "user"),
        (
            json.dumps(
                {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant"}]}
            ).encode(),
            "content must be a non-empty string",
        ),
        (
            json.dumps(
                {"messages": [{"role": "user", "content": "  "}, GOOD_PLAIN["messages"][1]]}
            ).encode(),
            "non-empty",
        ),
        (
            json.dumps(
                {"messages": [{"role": "user", "content": "x" * 20001}, GOOD_PLAIN["messages"][1]]}
            ).encode(),
            "limit is 20000",
        ),
        (
            json.dumps(
                {"messages": [*GOOD_PLAIN["messages"], {"role": "system", "content": "Late"}]}
            ).encode(),
            "system messages may only come first",
        ),
        (
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "Hi", "origin": "robot"},
                        GOOD_PLAIN["messages"][1],
                    ]
                }
            ).encode(),
            "origin must be human, model or model_edited",
        ),
        (
            json.dumps({"messages": GOOD_PLAIN["messages"] * 101}).encode(),
            "the limit is 200",
        ),
        (
            json.dumps({"title": 7, "messages": GOOD_PLAIN["messages"]}).encode(),
            "title must be a string",
        ),
        (
            json.dumps(
                {"messages": [{"role": "user", "content": "a\u0000b"}, GOOD_PLAIN["messages"][1]]}
            ).encode(),
            "NUL",
        ),
        (
            b'{"messages": [{"role": "user", "content": "\\ud800"}, '
            b'{"role": "assistant", "content": "ok"}]}',
            "surrogate",
        ),
        (b"\xff\xfe{}", "UTF-8"),
        (b"[" * 100_000, "invalid JSON"),
        (
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "Hi", "orign": "human"},
                        GOOD_PLAIN["messages"][1],
                    ]
                }
            ).encode(),
            "messages[0]: unknown key 'orign' (it takes role, content, origin)",
        ),
        (
            json.dumps({"messages": GOOD_PLAIN["messages"], "titel": "x"}).encode(),
            "unknown key 'titel' (it takes title, messages)",
        ),
        (b"", "the file holds no conversation"),
        (
            b'{"messages": [{"role": "user", "content": "Hi", "content": "Bye"}, '
            b'{"role": "assistant", "content": "ok"}]}',
            "the key 'content' appears twice in one object",
        ),
    ],
)
def test_an_invalid_line_is_reported_and_saves_nothing(trainer, line, expected):
    report = conversations_import(lines=[line], owner=trainer)
    assert report.created == 0
    assert len(report.errors) == 1 and report.errors[0][0] == 1
    assert expected in report.errors[0][1]
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_blank_lines_are_skipped_but_counted(trainer):
    report = conversations_import(
        lines=["", "   \n", json.dumps(GOOD_PLAIN), "\n", "{"], owner=trainer
    )
    assert report.valid == 1 and report.created == 0
    assert report.errors == [(5, report.errors[0][1])]


def test_an_over_long_line_is_refused_without_reading_it_whole(trainer, monkeypatch):
    monkeypatch.setattr(importing, "MAX_LINE_BYTES", 100)
    short = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    long_line = json.dumps({"title": "x" * 150, **short}).encode()
    stream = io.BytesIO(jsonl(long_line, short))
    lines = list(importing.jsonl_lines(stream))
    assert len(lines) == 2 and len(lines[0]) == 102  # the limit, and room for "\r\n"
    report = conversations_import(lines=lines, owner=trainer)
    assert report.valid == 1 and report.created == 0
    assert report.errors[0][0] == 1 and "longer than 100 bytes" in report.errors[0][1]


def test_a_line_of_exactly_the_limit_is_imported_whatever_its_line_ending(trainer, monkeypatch):
    monkeypatch.setattr(importing, "MAX_LINE_BYTES", 100)
    short = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    padding = 100 - len(json.dumps({"title": "", **short}))
    at_limit = json.dumps({"title": "x" * padding, **short}).encode()
    past_limit = json.dumps({"title": "x" * (padding + 1), **short}).encode()
    assert len(at_limit) == 100
    for ending in (b"\n", b"\r\n"):
        stream = io.BytesIO(at_limit + ending + past_limit + ending + at_limit)
        report = conversations_import(lines=importing.jsonl_lines(stream), owner=trainer)
        assert report.valid == 2
        assert report.errors == [(2, "the line is longer than 100 bytes")]


def test_lines_past_the_limit_are_reported_once_and_nothing_is_saved(trainer, monkeypatch):
    monkeypatch.setattr(importing, "MAX_LINES", 2)
    report = conversations_import(lines=[json.dumps(GOOD_PLAIN)] * 4, owner=trainer)
    assert report.created == 0 and report.valid == 2
    assert len(report.errors) == 1 and report.errors[0][0] == 3
    assert not Conversation.objects.exists()


def test_dry_run_checks_everything_and_saves_nothing(trainer):
    report = conversations_import(lines=io.BytesIO(MIXED_FILE), owner=trainer, dry_run=True)
    assert report.valid == 2 and report.conversation_ids == []
    assert [line for line, _ in report.errors] == [2, 3, 5]
    assert not Conversation.objects.exists()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"role": ["user"], "content": "Hi"}, "role must be one of"),
        ({"role": {"user": 1}, "content": "Hi"}, "role must be one of"),
        ({"role": "user", "content": ["Hi"]}, "content must be a non-empty string"),
        ({"role": "user", "content": {"text": "Hi"}}, "content must be a non-empty string"),
        ({"role": "user", "content": "Hi", "origin": ["human"]}, "origin must be human, model or"),
        ({"role": "user", "content": "Hi", "origin": {"a": 1}}, "origin must be human, model or"),
        ({"role": "user", "content": "Hi\u0000"}, "NUL"),
        ({"role": "user", "content": "Hi \ud800"}, "unpaired surrogate"),
    ],
)
def test_lists_and_objects_where_text_belongs_are_line_errors(trainer, message, expected):
    reply = {"role": "assistant", "content": "Hello"}
    bad = json.dumps({"messages": [message, reply]}).replace("\\\\u", "\\u").encode()
    report = conversations_import(
        lines=io.BytesIO(jsonl(GOOD_PLAIN, bad, GOOD_PLAIN)), owner=trainer
    )
    assert [line for line, _ in report.errors] == [2]
    assert expected in report.errors[0][1]
    assert not Conversation.objects.exists()


def test_a_list_title_is_a_line_error(trainer):
    bad = {"title": ["x"], **GOOD_PLAIN}
    report = conversations_import(lines=io.BytesIO(jsonl(bad)), owner=trainer)
    assert report.errors == [(1, "title must be a string")]


@pytest.mark.parametrize("title", [False, 0, [], {}])
def test_a_title_that_is_an_empty_value_but_not_a_string_is_a_line_error(trainer, title):
    bad = {"title": title, **GOOD_PLAIN}
    report = conversations_import(lines=io.BytesIO(jsonl(bad)), owner=trainer)
    assert report.errors == [(1, "title must be a string")]
    assert not Conversation.objects.exists()


def test_a_null_title_is_no_title(trainer):
    report = conversations_import(
        lines=io.BytesIO(jsonl({"title": None, **GOOD_PLAIN})), owner=trainer
    )
    assert report.ok
    assert Conversation.objects.get().title == "What is the capital of France?"


@pytest.mark.parametrize("title", MULTI_LINE_TITLES)
def test_a_title_of_more_than_one_line_is_a_line_error_and_nothing_is_imported(trainer, title):
    """Refused as the API and the Write page refuse it, and the file with it."""
    bad = {"title": title, **GOOD_PLAIN}
    report = conversations_import(
        lines=io.BytesIO(jsonl(GOOD_WITH_SYSTEM, bad, GOOD_PLAIN)), owner=trainer
    )
    assert report.errors == [(2, f"title: {LINE_MESSAGE}")] and report.valid == 2
    assert not Conversation.objects.exists()


def test_a_titles_surrounding_line_breaks_are_trimmed_as_the_api_trims_them(trainer):
    report = conversations_import(
        lines=io.BytesIO(jsonl({"title": "\n Trip\r\n", **GOOD_PLAIN})), owner=trainer
    )
    assert report.ok and Conversation.objects.get().title == "Trip"


def test_a_title_taken_from_the_first_turn_is_one_line(trainer):
    first = {"role": "user", "content": "Red\x1b[31m alert\u2028now,\x85\tplease"}
    record = {"messages": [first, GOOD_PLAIN["messages"][1]]}
    report = conversations_import(lines=io.BytesIO(jsonl(record)), owner=trainer)
    assert report.ok
    assert Conversation.objects.get().title == "Red [31m alert now, please"


@pytest.mark.parametrize("prefix", ["batch\n", "batch\u2028", "\tbatch: "])
def test_a_title_prefix_of_more_than_one_line_is_refused_before_any_line(trainer, prefix):
    with pytest.raises(ValidationError) as refused:
        conversations_import(
            lines=io.BytesIO(jsonl(GOOD_PLAIN)), owner=trainer, title_prefix=prefix
        )
    assert refused.value.message_dict == {"title_prefix": [LINE_MESSAGE]}
    assert not Conversation.objects.exists()


@pytest.mark.parametrize("status", ["done", "paused"])
@pytest.mark.parametrize("named", [False, True])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_closed_default_project_takes_no_import_named_or_not(trainer, status, named, dry_run):
    Project.objects.filter(pk=project_default_id()).update(status=status)
    with pytest.raises(ValidationError) as refused:
        conversations_import(
            lines=io.BytesIO(jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN)),
            owner=trainer,
            dry_run=dry_run,
            project_id=project_default_id() if named else None,
        )
    assert refused.value.message_dict == {
        "project": [services.project_closed_message(DEFAULT_PROJECT_SLUG)]
    }
    assert not Conversation.objects.exists() and not Message.objects.exists()
    # Another project, active, still takes the file.
    other = project_create(name="Open", slug="open", status=Project.Status.ACTIVE)
    report = conversations_import(
        lines=io.BytesIO(jsonl(GOOD_PLAIN)), owner=trainer, project_id=other.pk
    )
    assert report.ok and report.created == 1


@pytest.mark.parametrize("status", ["done", "paused"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_closed_project_other_than_the_default_takes_no_import(trainer, status, dry_run):
    """A paused or done project takes no new work, whichever it is; before, only the default
    project was refused so, and a file went into any other closed project."""
    closed = project_create(name="Closed", slug="closed", status=status)
    with pytest.raises(ValidationError) as refused:
        conversations_import(
            lines=io.BytesIO(jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN)),
            owner=trainer,
            dry_run=dry_run,
            project_id=closed.pk,
        )
    assert refused.value.message_dict == {"project": [services.project_closed_message("closed")]}
    assert not Conversation.objects.exists() and not Message.objects.exists()
    # A draft project takes the file: its conversations are ready for when it opens.
    draft = project_create(name="Draft", slug="draft")
    report = conversations_import(
        lines=io.BytesIO(jsonl(GOOD_PLAIN)), owner=trainer, project_id=draft.pk
    )
    assert report.ok and report.created == 1


# manage.py import_conversations


def _run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_conversations", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_command_imports_a_clean_file(trainer, tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_bytes(jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN))
    out, err = _run_command(str(path), "--owner", "tess")
    assert "Imported 2 conversations." in out and err == ""
    assert Conversation.objects.filter(owner=trainer, source="imported").count() == 2


@pytest.mark.parametrize("dry_run", [False, True])
def test_command_reads_gzip_and_imports_nothing_from_a_file_with_bad_lines(
    trainer, tmp_path, dry_run
):
    path = tmp_path / "chats.jsonl.gz"
    path.write_bytes(gzip.compress(MIXED_FILE))
    out, err = io.StringIO(), io.StringIO()
    flags = ["--dry-run"] if dry_run else []
    with pytest.raises(CommandError, match="3 invalid lines \\(2 valid\\): nothing"):
        call_command(
            "import_conversations", str(path), *flags, owner="tess", stdout=out, stderr=err
        )
    assert "Imported" not in out.getvalue()
    assert [line.split(":")[0] for line in err.getvalue().splitlines()] == [
        "line 2",
        "line 3",
        "line 5",
    ]
    assert not Conversation.objects.exists()


def test_command_refuses_a_corrupt_gzip_in_one_line_and_imports_nothing(trainer, tmp_path):
    packed = bytearray(gzip.compress(jsonl(GOOD_PLAIN, GOOD_PLAIN)))
    packed[10:16] = b"\xff" * 6  # the first deflate block: zlib's error, not gzip's
    path = tmp_path / "chats.jsonl.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(CommandError, match=r"failed part way: .* Nothing was imported"):
        call_command("import_conversations", str(path), owner="tess")
    assert not Conversation.objects.exists()


def test_command_with_a_list_where_a_role_belongs_reports_the_line(trainer, tmp_path):
    path = tmp_path / "chats.jsonl"
    bad = {"messages": [{"role": ["user"], "content": "Hi"}, {"role": {}, "content": "Yo"}]}
    path.write_bytes(jsonl(GOOD_PLAIN, bad))
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 invalid lines"):
        call_command("import_conversations", str(path), "--dry-run", owner="tess", stderr=err)
    assert err.getvalue().startswith("line 2: messages[0]: role must be one of")
    assert not Conversation.objects.exists()


def test_command_reads_standard_input_and_dry_run_saves_nothing(trainer, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(jsonl(GOOD_PLAIN))))
    out, _ = _run_command("-", "--owner", "tess", "--dry-run")
    assert "1 conversation would be imported" in out
    assert not Conversation.objects.exists()


def test_command_refuses_to_import_into_a_closed_default_project(trainer, tmp_path):
    Project.objects.filter(pk=project_default_id()).update(status=Project.Status.DONE)
    path = tmp_path / "chats.jsonl"
    path.write_bytes(jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN))
    with pytest.raises(CommandError) as refused:
        _run_command(str(path), "--owner", "tess")
    assert str(refused.value) == (
        "No active project 'default' is open to you. Nothing was imported."
    )
    assert not Conversation.objects.exists()


def test_command_refuses_to_import_into_a_closed_project_other_than_the_default(trainer, tmp_path):
    project_create(name="Closed", slug="closed", status=Project.Status.PAUSED)
    path = tmp_path / "chats.jsonl"
    path.write_bytes(jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN))
    with pytest.raises(CommandError) as refused:
        _run_command(str(path), "--owner", "tess", "--project", "closed")
    assert str(refused.value) == "No active project 'closed' is open to you. Nothing was imported."
    assert not Conversation.objects.exists()


def test_command_refuses_an_unknown_owner(db, tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_bytes(jsonl(GOOD_PLAIN))
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        _run_command(str(path), "--owner", "ghost")


def test_command_reports_a_missing_file(trainer, tmp_path):
    with pytest.raises(CommandError, match="Cannot open"):
        _run_command(str(tmp_path / "missing.jsonl"), "--owner", "tess")


def test_command_reports_a_corrupt_gzip(trainer, tmp_path):
    path = tmp_path / "chats.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl(GOOD_PLAIN) * 50)[:-20])
    with pytest.raises(CommandError, match="failed part way"):
        _run_command(str(path), "--owner", "tess")


def test_a_demonstrations_export_imports_back_with_its_origins(trainer):
    conversation = services.conversation_create(owner=trainer, title="Cats")
    _question, answer = (
        services.message_append(conversation=conversation, author=trainer, content=text)
        for text in ("A name for a cat?", "How about **Miso**?")
    )
    Message.objects.filter(pk=answer.pk).update(origin=Message.Origin.MODEL_EDITED)
    services.conversation_finish(conversation=conversation, user=trainer)
    records = list(demonstration_records(ExportFilters()))

    report = conversations_import(lines=[json.dumps(r) for r in records], owner=trainer)

    assert report.ok, report.errors
    (imported,) = Conversation.objects.filter(pk__in=report.conversation_ids)
    assert [(m.role, m.content, m.origin) for m in _chain(imported)] == [
        ("user", "A name for a cat?", "human"),
        ("assistant", "How about **Miso**?", "model_edited"),
    ]


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ({"schema_version": 99}, "schema_version 99"),
        ({"schema_version": True}, "schema_version must be"),
        ({"split": "train"}, "unknown key 'split'"),
        ({"schema_version": 2, "origins": ["human"]}, "origins must be a list of 2"),
        ({"schema_version": 2, "origins": ["human", "robot"]}, "origins[1]: origin must be"),
    ],
)
def test_export_fields_are_checked_by_name(trainer, record, error):
    report = conversations_import(lines=[json.dumps({**GOOD_PLAIN, **record})], owner=trainer)

    assert report.errors and error in report.errors[0][1], report.errors
    assert not Conversation.objects.exists()


# A lone surrogate is how Python hands over bytes of the command line that are not UTF-8.
@pytest.mark.parametrize("option", ["--owner", "--title-prefix", "--project"])
@pytest.mark.parametrize("text", ["te\udcffss", "te\x00ss"])
def test_command_refuses_an_option_the_database_cannot_store_by_name(
    trainer, tmp_path, option, text
):
    path = tmp_path / "chats.jsonl"
    path.write_bytes(jsonl(GOOD_PLAIN))
    given = {"--owner": "tess", option: text}
    args = [arg for name, value in given.items() for arg in (name, value)]
    with pytest.raises(CommandError, match=f"^{option}: (NUL|Unpaired surrogate) characters"):
        _run_command(str(path), *args)
    assert not Conversation.objects.exists()


def test_command_refuses_a_title_prefix_of_more_than_one_line(trainer, tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_bytes(jsonl(GOOD_PLAIN))
    with pytest.raises(CommandError, match=f"^--title-prefix: {re.escape(LINE_MESSAGE)}$"):
        _run_command(str(path), "--owner", "tess", "--title-prefix", "batch\n")
    assert not Conversation.objects.exists()


# Re-imports: a line whose conversation is already imported is skipped


def test_a_file_imported_twice_creates_its_conversations_once(trainer):
    file = jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN)
    first = conversations_import(lines=io.BytesIO(file), owner=trainer)
    again = conversations_import(lines=io.BytesIO(file), owner=trainer)

    assert first.created == 2 and first.skipped == []
    assert again.ok and again.valid == 2 and again.created == 0 and again.conversation_ids == []
    assert again.skipped == [
        (1, "already imported into the project"),
        (2, "already imported into the project"),
    ]
    assert Conversation.objects.count() == 2 and Message.objects.count() == 7


def test_a_line_repeated_in_a_file_is_created_once_whatever_its_title(trainer):
    """The title is no part of the fingerprint: the same turns under another title (or
    another prefix, in a later import) are the conversation already imported."""
    renamed = {**GOOD_PLAIN, "title": "Capitals"}
    report = conversations_import(
        lines=io.BytesIO(jsonl(GOOD_PLAIN, GOOD_WITH_SYSTEM, GOOD_PLAIN, renamed)), owner=trainer
    )
    assert report.created == 2 and report.skipped == [(3, "repeats line 1"), (4, "repeats line 1")]
    assert Conversation.objects.count() == 2

    again = conversations_import(
        lines=io.BytesIO(jsonl(renamed)), owner=trainer, title_prefix="batch 2: "
    )
    assert again.created == 0 and again.skipped == [(1, "already imported into the project")]


@pytest.mark.parametrize(
    "change",
    [
        {"content": "Paris, of course."},
        {"content": "Paris. "},  # the text counts exactly as read
        {"origin": "human"},
    ],
)
def test_a_conversation_with_a_changed_turn_is_imported_as_a_new_one(trainer, change):
    changed = {"messages": [GOOD_PLAIN["messages"][0], {**GOOD_PLAIN["messages"][1], **change}]}
    conversations_import(lines=io.BytesIO(jsonl(GOOD_PLAIN)), owner=trainer)

    report = conversations_import(lines=io.BytesIO(jsonl(changed, GOOD_PLAIN)), owner=trainer)

    assert report.created == 1 and report.skipped == [(2, "already imported into the project")]
    assert Conversation.objects.count() == 2
    assert len(set(Conversation.objects.values_list("fingerprint", flat=True))) == 2


def test_conversations_of_another_project_are_not_duplicates(trainer):
    safety = project_create(name="Safety", slug="safety", status="active")
    conversations_import(lines=io.BytesIO(jsonl(GOOD_PLAIN)), owner=trainer)

    report = conversations_import(
        lines=io.BytesIO(jsonl(GOOD_PLAIN)), owner=trainer, project_id=safety.pk
    )
    again = conversations_import(
        lines=io.BytesIO(jsonl(GOOD_PLAIN)), owner=trainer, project_id=safety.pk
    )

    assert report.created == 1 and report.skipped == []
    assert again.created == 0 and len(again.skipped) == 1
    assert sorted(Conversation.objects.values_list("project_id", flat=True)) == sorted(
        [project_default_id(), safety.pk]
    )


def test_a_conversation_written_in_the_app_has_no_fingerprint_to_match(trainer):
    conversation = services.conversation_create(owner=trainer, title="Capitals")
    for turn in GOOD_PLAIN["messages"]:
        services.message_append(conversation=conversation, author=trainer, content=turn["content"])
    Message.objects.filter(role="assistant").update(origin=Message.Origin.MODEL)
    services.conversation_finish(conversation=conversation, user=trainer)

    report = conversations_import(lines=io.BytesIO(jsonl(GOOD_PLAIN)), owner=trainer)

    assert report.created == 1 and report.skipped == []
    assert Conversation.objects.get(pk=conversation.pk).fingerprint is None
    assert Conversation.objects.get(pk=report.conversation_ids[0]).fingerprint == (
        importing.conversation_fingerprint(
            importing.ParsedMessage(m["role"], m["content"], o)
            for m, o in zip(GOOD_PLAIN["messages"], ["human", "model"], strict=True)
        )
    )


def test_dry_run_counts_what_the_import_would_create_and_skip(trainer):
    conversations_import(lines=io.BytesIO(jsonl(GOOD_PLAIN)), owner=trainer)
    file = jsonl(GOOD_PLAIN, GOOD_WITH_SYSTEM, GOOD_WITH_SYSTEM)

    dry = conversations_import(lines=io.BytesIO(file), owner=trainer, dry_run=True)
    assert Conversation.objects.count() == 1
    real = conversations_import(lines=io.BytesIO(file), owner=trainer)

    expected = [(1, "already imported into the project"), (3, "repeats line 2")]
    assert (dry.created, dry.skipped, dry.conversation_ids) == (1, expected, [])
    assert (real.created, real.skipped) == (1, expected)
    assert Conversation.objects.count() == 2


def test_allow_duplicates_imports_every_line_and_keeps_their_fingerprints(trainer):
    conversations_import(lines=io.BytesIO(jsonl(GOOD_PLAIN)), owner=trainer)
    file = jsonl(GOOD_PLAIN, GOOD_PLAIN)

    dry = conversations_import(
        lines=io.BytesIO(file), owner=trainer, allow_duplicates=True, dry_run=True
    )
    report = conversations_import(lines=io.BytesIO(file), owner=trainer, allow_duplicates=True)

    assert (dry.created, dry.skipped) == (2, []) and (report.created, report.skipped) == (2, [])
    assert Conversation.objects.count() == 3
    assert len(set(Conversation.objects.values_list("fingerprint", flat=True))) == 1
    # A later import without the flag still knows them.
    assert conversations_import(lines=io.BytesIO(file), owner=trainer).created == 0


def test_a_file_with_an_invalid_line_saves_nothing_even_when_others_would_be_skipped(trainer):
    conversations_import(lines=io.BytesIO(jsonl(GOOD_PLAIN)), owner=trainer)
    report = conversations_import(
        lines=io.BytesIO(jsonl(GOOD_PLAIN, GOOD_WITH_SYSTEM, b"{")), owner=trainer
    )
    assert report.created == 0 and report.valid == 2 and [n for n, _ in report.errors] == [3]
    assert Conversation.objects.count() == 1


def test_a_demonstrations_export_imported_twice_is_created_once(trainer):
    conversation = services.conversation_create(owner=trainer, title="Cats")
    for text in ("A name for a cat?", "How about **Miso**?"):
        services.message_append(conversation=conversation, author=trainer, content=text)
    services.conversation_finish(conversation=conversation, user=trainer)
    lines = [json.dumps(record) for record in demonstration_records(ExportFilters())]

    first = conversations_import(lines=lines, owner=trainer)
    again = conversations_import(lines=lines, owner=trainer)

    assert first.created == 1
    assert again.created == 0 and again.skipped == [(1, "already imported into the project")]
    assert Conversation.objects.count() == 2  # the one written in the app, and its import


def test_command_skips_what_is_already_imported_and_says_how_many(trainer, tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_bytes(jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN))
    _run_command(str(path), "--owner", "tess")
    new = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    path.write_bytes(jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN, new, {**new, "title": "Again"}))

    dry, _ = _run_command(str(path), "--owner", "tess", "--dry-run")
    out, err = _run_command(str(path), "--owner", "tess", "-v", "2")

    assert dry == (
        "Dry run: 1 conversation would be imported; 3 already imported, would be skipped "
        "(their turns are in the project or on an earlier line).\n"
    )
    assert out.splitlines() == [
        "line 1: skipped, already imported into the project",
        "line 2: skipped, already imported into the project",
        "line 4: skipped, repeats line 3",
        "Imported 1 conversation; 3 already imported, skipped (their turns are in the project "
        "or on an earlier line).",
    ]
    assert err == "" and Conversation.objects.count() == 3


def test_command_allow_duplicates_imports_every_line(trainer, tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_bytes(jsonl(GOOD_PLAIN, GOOD_PLAIN))
    first, _ = _run_command(str(path), "--owner", "tess")
    dry, _ = _run_command(str(path), "--owner", "tess", "--allow-duplicates", "--dry-run")
    again, _ = _run_command(str(path), "--owner", "tess", "--allow-duplicates")

    assert first.startswith("Imported 1 conversation; 1 already imported, skipped")
    assert dry == "Dry run: 2 conversations would be imported.\n"
    assert again == "Imported 2 conversations.\n"
    assert Conversation.objects.count() == 3
