import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from labeling.conversations import services
from labeling.guidelines import services as guideline_services
from labeling.guidelines.models import GuidelineVersion
from tests.labeling.conftest import write_turns


def test_first_use_creates_version_1_with_the_default_content(db):
    version = guideline_services.guideline_version_ensure_current()
    assert version.number == 1
    text = version.text.lower()
    for topic in ("helpful", "truthful", "harmless", "clarifying question", "an ai", "refuse"):
        assert topic in text
    assert "concise" in text or "verbose" in text
    assert guideline_services.guideline_version_ensure_current() == version


def test_editing_creates_a_new_version_and_only_admins_edit(admin_user, trainer, version_2):
    assert version_2.number == 2 and version_2.author == admin_user
    assert GuidelineVersion.objects.get(number=1).text != version_2.text  # v1 kept as it was
    with pytest.raises(ValidationError, match="Nothing changed"):
        guideline_services.guideline_version_create(author=admin_user, text=version_2.text)
    with pytest.raises(ValidationError, match="50000"):
        guideline_services.guideline_version_create(author=admin_user, text="x" * 50001)
    with pytest.raises(PermissionDenied):
        guideline_services.guideline_version_create(author=trainer, text="mine now")
    assert GuidelineVersion.objects.count() == 2


def test_messages_record_the_version_they_were_written_under(trainer, admin_user):
    conversation = services.conversation_create(owner=trainer)
    first, reply = write_turns(conversation, trainer, "hi", "hello")
    assert first.guideline_version.number == 1 and reply.guideline_version.number == 1
    guideline_services.guideline_version_create(author=admin_user, text="v2 text")
    branch = services.message_branch(original=reply, author=trainer, content="hey")
    assert branch.guideline_version.number == 2


def test_only_the_current_version_can_be_acknowledged(trainer, version_2):
    """Reading an older version is not reading the one in force: refused in words naming the
    current one, and nothing is recorded."""
    from labeling.guidelines import selectors

    version_1 = GuidelineVersion.objects.get(number=1)
    with pytest.raises(ValidationError, match="Version 1 is no longer current: version 2 is"):
        guideline_services.guideline_acknowledge(user=trainer, version=version_1)
    assert not selectors.guideline_has_read(user=trainer, version=version_1)
    guideline_services.guideline_acknowledge(user=trainer, version=version_2)
    assert selectors.guideline_has_read(user=trainer, version=version_2)


def test_a_change_note_is_one_line(admin_user, version_2):
    """A change note is a sentence shown in a line (the banner, the versions table): a line
    break or another control character in it is refused, as in every one-line field, and
    nothing is saved."""
    from config.text import LINE_MESSAGE

    for note in ("a\nb", "a\r\nb", "tab\there", "a\u2028b"):
        with pytest.raises(ValidationError) as refused:
            guideline_services.guideline_version_create(
                author=admin_user, text="# v3", change_note=note
            )
        assert refused.value.message_dict == {"change_note": [LINE_MESSAGE]}
    assert GuidelineVersion.objects.count() == 2
    # Spaces around it are trimmed, not refused (a trailing line break among them).
    saved = guideline_services.guideline_version_create(
        author=admin_user, text="# v3", change_note="  Shorter still.\n"
    )
    assert saved.change_note == "Shorter still."
