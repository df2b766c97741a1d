from labeling.conversations import services
from labeling.guidelines import services as guideline_services
from labeling.guidelines.models import GuidelineVersion
from tests.labeling.conftest import HTMX


def test_the_panel_asks_once_per_new_version(trainer_client, trainer, admin_user):
    panel = trainer_client.get("/write/guidelines/panel/", **HTMX)
    assert panel.status_code == 200
    assert b"I have read version 1" in panel.content and b"guidelines-banner" in panel.content
    read = trainer_client.post("/write/guidelines/1/read/", **HTMX)
    assert read.status_code == 200 and b"guidelines-banner" not in read.content
    assert (
        b"guidelines-banner" not in trainer_client.get("/write/guidelines/panel/", **HTMX).content
    )

    guideline_services.guideline_version_create(author=admin_user, text="# New\n\nAsk first.")
    panel = trainer_client.get("/write/guidelines/panel/", **HTMX)
    assert b"The labeling guidelines changed" in panel.content
    assert b"I have read version 2" in panel.content


def test_writing_and_ranking_pages_load_the_guidelines_panel(trainer_client, trainer):
    conversation = services.conversation_create(owner=trainer)
    for url in (f"/write/{conversation.pk}/", "/rank/"):
        response = trainer_client.get(url)
        assert response.status_code == 200
        assert b'id="guidelines-slot"' in response.content
        assert b'data-panel-url="/write/guidelines/panel/"' in response.content


def test_guidelines_page_shows_versions_and_admins_edit_it(admin_client_, trainer_client):
    page = trainer_client.get("/write/guidelines/")
    assert page.status_code == 200 and b"Labeling guidelines" in page.content
    assert b"Save as version" not in page.content
    assert trainer_client.post("/write/guidelines/edit/", {"text": "x"}).status_code == 403

    response = admin_client_.post(
        "/write/guidelines/edit/", {"text": "# Rules\n\n<script>x</script>", "change_note": "n"}
    )
    assert response.status_code == 302
    assert GuidelineVersion.objects.get(number=2).change_note == "n"
    page = admin_client_.get("/write/guidelines/?version=2")
    assert b"<h1>Rules</h1>" in page.content and b"<script>x" not in page.content
    unchanged = admin_client_.post(
        "/write/guidelines/edit/", {"text": "# Rules\n\n<script>x</script>"}
    )
    assert unchanged.status_code == 422 and b"Nothing changed" in unchanged.content
    assert admin_client_.get("/write/guidelines/?version=9").status_code == 404


def test_version_1_is_readable_by_its_number_before_anything_saved_it(trainer_client):
    """The page shows version 1 (the defaults) before its first use saves it; its address
    (``&version=1``) shows it too, without saving it."""
    response = trainer_client.get("/write/guidelines/", {"version": "1"})
    assert response.status_code == 200
    assert b"I have read version 1" in response.content
    assert not GuidelineVersion.objects.exists()
    assert trainer_client.get("/write/guidelines/", {"version": "2"}).status_code == 404


def test_version_1_before_anything_saved_it_says_so_in_place_of_a_date(trainer_client):
    """An unsaved version has no date: its line says so rather than leave an empty slot
    ("Version 1, · Default guidelines")."""
    page = trainer_client.get("/write/guidelines/").content.decode()
    assert (
        'Version 1 (not saved yet: its first use saves it) · <span dir="auto">Default guidelines'
        in page
    )
    assert "Version 1, ·" not in page


def test_the_current_text_saved_back_from_the_browser_form_is_unchanged(admin_client_):
    """A browser sends a textarea's line breaks as CRLF; the default text (LF) saved back as is
    makes no new version (trainers would be asked to read the same text again)."""
    from labeling.guidelines.models import DEFAULT_GUIDELINES

    as_sent = DEFAULT_GUIDELINES.replace("\n", "\r\n")
    unchanged = admin_client_.post("/write/guidelines/edit/", {"text": as_sent})
    assert unchanged.status_code == 422 and b"Nothing changed" in unchanged.content
    assert not GuidelineVersion.objects.filter(number__gt=1).exists()

    edited = admin_client_.post(
        "/write/guidelines/edit/", {"text": "# Rules\r\n\r\nAsk first.\rBe brief."}
    )
    assert edited.status_code == 302
    assert GuidelineVersion.objects.get(number=2).text == "# Rules\n\nAsk first.\nBe brief."


def test_a_version_stored_with_crlf_before_saved_back_unchanged_is_unchanged(
    admin_client_, admin_user
):
    """A version saved from the plain form before line breaks were taken as \\n holds CRLF;
    the same text sent back from the browser (its line breaks now \\n) is the same text, not a
    new version every trainer is asked to read again."""
    guideline_services.guideline_version_ensure_current()
    GuidelineVersion.objects.create(number=2, text="# Rules\r\n\r\nAsk first.", author=admin_user)

    response = admin_client_.post("/write/guidelines/edit/", {"text": "# Rules\r\n\r\nAsk first."})
    assert response.status_code == 422 and b"Nothing changed" in response.content
    assert not GuidelineVersion.objects.filter(number=3).exists()


def test_the_unread_banner_is_a_polite_status_not_an_alert(trainer_client, trainer):
    """The panel is loaded into every writing and ranking page: an alert would interrupt a
    screen reader on each page load; a status waits its turn."""
    panel = trainer_client.get("/write/guidelines/panel/", **HTMX).content.decode()
    assert '<div class="guidelines-banner" role="status">' in panel
    assert 'role="alert"' not in panel


def test_reading_an_old_version_is_refused_and_shows_the_current_one(
    trainer_client, trainer, version_2
):
    """Confirming version 1 once version 2 is current (a page open since, or a typed
    address) records nothing and says which version is current, showing it to read: the page
    with its "I have read version 2" form, the panel with its banner still asking."""
    from labeling.guidelines.models import GuidelineAcknowledgement

    page = trainer_client.post("/write/guidelines/1/read/", {"project": "default"})
    assert page.status_code == 409
    text = page.content.decode()
    assert "Version 1 is no longer current: version 2 is." in text
    assert "I have read version 2" in text and "Be brief." in text
    assert "marked as read" not in text

    panel = trainer_client.post("/write/guidelines/1/read/", **HTMX)
    assert panel.status_code == 409
    text = panel.content.decode()
    assert "Version 1 is no longer current: version 2 is." in text
    assert "guidelines-banner" in text and "I have read version 2" in text
    assert not GuidelineAcknowledgement.objects.exists()

    read = trainer_client.post("/write/guidelines/2/read/", {"project": "default"})
    assert read.status_code == 302
    assert GuidelineAcknowledgement.objects.get().version == version_2


def test_a_change_note_with_a_line_break_is_refused_and_the_text_kept(admin_client_):
    """The form refuses a change note with a line break in the one-line fields' words; the
    edited text and the note come back, and no version is saved."""
    from config.text import LINE_MESSAGE

    response = admin_client_.post(
        "/write/guidelines/edit/", {"text": "# Rules\n\nAsk first.", "change_note": "a\nb"}
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert LINE_MESSAGE in page and "Ask first." in page
    assert not GuidelineVersion.objects.filter(number=2).exists()
