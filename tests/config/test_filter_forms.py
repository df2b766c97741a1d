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


@pytest.mark.parametrize("name", ["labeling:feedback", "labeling:redteam", "ranking:quality"])
@pytest.mark.parametrize("value", ["bogus", "0", str(10**6)])
def test_a_model_version_that_is_none_is_refused_in_the_same_words_on_every_page(
    admin_client_, name, value
):
    """Feedback and Quality said Django's "Select a valid choice. That choice is not one of the
    available choices." where Red team named the value and what to do instead: every page with
    a model version filter says the latter."""
    response = admin_client_.get(reverse(name), {"model_version": value})
    assert response.status_code == 422
    html = response.content.decode()
    expected = f'There is no model version "{value}"; leave it empty for every model version.'
    assert escape(expected) in html
    assert "Select a valid choice" not in html


def test_a_start_after_the_end_is_refused_in_the_same_words_by_the_api_and_the_pages(
    admin_client_,
):
    """The export API and the Exports page said "The end date is before the start date." where
    the Feedback and Quality pages said "The start date is after the end date.": one sentence."""
    sentence = "The start date is after the end date."
    backwards = {"date_from": "2026-02-01", "date_to": "2026-01-01"}
    api = admin_client_.get("/api/exports/stream/", {"format": "pairs", **backwards})
    assert api.status_code == 400 and api.json() == {"date_to": [sentence]}
    export_form = {"format": "pairs", "pair_mode": "per_ranker", "split": "all"}
    exports = admin_client_.get(
        reverse("ranking:export-preview"),
        {**export_form, "test_fraction": "0.1", "split_seed": "0", **backwards},
    )
    assert exports.status_code == 422 and escape(sentence) in exports.content.decode()
    feedback = admin_client_.get(reverse("labeling:feedback"), backwards)
    assert feedback.status_code == 422 and escape(sentence) in feedback.content.decode()
    quality = admin_client_.get(
        reverse("ranking:quality"),
        {"submitted_from": backwards["date_from"], "submitted_to": backwards["date_to"]},
    )
    assert quality.status_code == 422 and escape(sentence) in quality.content.decode()
