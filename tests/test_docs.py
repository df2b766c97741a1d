"""README.md and docs/ARCHITECTURE.md name modules, functions and files: each one exists."""

import importlib
import json
import re
from pathlib import Path

import pytest
from django.apps import apps

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("accounts", "config", "labeling", "ranking", "sampler")
# Folders of the checkout (var/ is made at run time, so its paths are not checked).
FOLDERS = (*PACKAGES, "assets", "bench", "docs", "scripts", "static", "templates", "tests")
DOTTED = re.compile(rf"(?<![\w./-])(?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(rf"(?<![\w./-])(?:{'|'.join(FOLDERS)})/[\w./-]*")
FILE_SUFFIXES = (".py", ".json", ".md", ".html", ".js", ".css", ".txt")


def code_spans(document: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", (ROOT / document).read_text())


def dotted_exists(name: str) -> bool:
    """A module, or an attribute of one (``sampler.jobs.services.job_enqueue``), or a model as
    ``app_label.Model``."""
    parts = name.split(".")
    if len(parts) == 2 and parts[1][0].isupper():
        try:
            apps.get_model(name)
        except LookupError:
            pass
        else:
            return True
    for end in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        for attribute in parts[end:]:
            target = getattr(target, attribute, None)
        return target is not None
    return False


@pytest.mark.parametrize("document", ["README.md", "docs/ARCHITECTURE.md"])
def test_every_module_and_file_the_docs_name_exists(document):
    spans = code_spans(document)
    names = {
        name for span in spans for name in DOTTED.findall(span) if not name.endswith(FILE_SUFFIXES)
    }
    paths = {path.rstrip("./") for span in spans for path in PATH.findall(span)}
    assert names and paths
    assert sorted(name for name in names if not dotted_exists(name)) == []
    assert sorted(path for path in paths if not (ROOT / path).exists()) == []


def test_the_readmes_turn_appending_example_names_its_side(trainer_client, conversation):
    """A turn's side follows from the turns before it; README's example of appending one
    names it (``role``), so sent where the other side is next it is refused, not stored on
    that side."""
    examples = re.findall(
        r"-d '(\{[^']*\})'[^`]*?/api/conversations/\d+/messages/", (ROOT / "README.md").read_text()
    )
    assert examples
    first_turn = trainer_client.post(
        f"/api/conversations/{conversation.pk}/messages/",
        json.dumps({"role": "user", "content": "Hello"}),
        content_type="application/json",
    )
    assert first_turn.status_code == 201
    for body in examples:
        assert json.loads(body)["role"] == "user"
        response = trainer_client.post(
            f"/api/conversations/{conversation.pk}/messages/",
            body,
            content_type="application/json",
        )
        assert response.status_code == 400
        assert response.json() == {"role": ["The next turn is the assistant's (turns alternate)."]}
    assert conversation.messages.count() == 1
