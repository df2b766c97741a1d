"""The filter forms of the list pages (``config.forms.FilterForm``): Write, My feedback,
Feedback, Red team and Quality."""

import pytest
from django.urls import reverse
from django.utils.html import escape

from config.refusals import REPEATED_PARAMETER

# Each filter page, who may see it, and each parameter of its query string with two values it
# takes, either of which alone is answered with a 200.
FILTER_PAGES = [
    ("labeling:conversation-list", "trainer_client", "status", "draft", "finished"),
    ("labeling:conversation-list", "trainer_client", "q", "weekend", "plans"),
    ("labeling:conversation-list", "trainer_client", "page", "1", "2"),
    ("labeling:feedback-mine", "trainer_client", "page", "1", "2"),
    ("labeling:feedback", "admin_client_", "rating", "up", "down"),
    ("labeling:feedback", "admin_client_", "category", "harmful", "other"),
    ("labeling:feedback", "admin_client_", "filter_report", "false_positive", "false_negative"),
    ("labeling:feedback", "admin_client_", "model_version", "", ""),
    ("labeling:feedback", "admin_client_", "date_from", "2026-01-01", "2026-01-02"),
    ("labeling:feedback", "admin_client_", "date_to", "2026-01-01", "2026-01-02"),
    ("labeling:feedback", "admin_client_", "page", "1", "2"),
    ("labeling:redteam", "admin_client_", "category", "harmful", "other"),
    ("labeling:redteam", "admin_client_", "model_version", "", ""),
    ("labeling:redteam", "admin_client_", "page", "1", "2"),
    ("ranking:quality", "admin_client_", "submitted_from", "2026-01-01", "2026-01-02"),
    ("ranking:quality", "admin_client_", "submitted_to", "2026-01-01", "2026-01-02"),
    ("ranking:quality", "admin_client_", "model_version", "", ""),
    ("ranking:quality", "admin_client_", "project", "", ""),
]


@pytest.mark.parametrize(("name", "client_fixture", "parameter", "first", "second"), FILTER_PAGES)
def test_a_filter_given_twice_is_a_422_naming_it(
    request, conversation, name, client_fixture, parameter, first, second
):
    """The pages filtered by the last of a repeated parameter (``?status=draft&status=finished``
    listed the finished conversations), where the API refuses it with a 400: the page refuses
    it with its filters' 422, naming it in the API's words, and shows no rows."""
    client = request.getfixturevalue(client_fixture)
    url = reverse(name)
    for value in (first, second):
        assert client.get(url, {parameter: value}).status_code == 200, value
    response = client.get(url, {parameter: [first, second]})
    assert response.status_code == 422
    html = response.content.decode()
    assert escape(f'"{parameter}" is given 2 times. {REPEATED_PARAMETER}') in html
    assert "shown until the" in html  # "No conversations are shown until the filters are right."
    assert "Weekend plans" not in html


def test_the_pages_and_the_api_refuse_a_repeated_parameter_in_the_same_words(trainer_client):
    """One sentence for a parameter given twice, whichever door it comes through."""
    twice = {"status": ["draft", "finished"]}
    api = trainer_client.get("/api/conversations/", twice)
    assert api.status_code == 400 and api.json() == {"status": [REPEATED_PARAMETER]}
    page = trainer_client.get(reverse("labeling:conversation-list"), twice)
    assert page.status_code == 422 and REPEATED_PARAMETER in page.content.decode()
