"""The list pages that show rows a page at a time (Write, My feedback, Feedback, Red team) and
their ``?page=``."""

import pytest
from django.urls import reverse
from django.utils.html import escape

# Each list page that pages its rows, and who may see it.
LIST_PAGES = [
    ("labeling:conversation-list", "trainer_client"),
    ("labeling:feedback-mine", "trainer_client"),
    ("labeling:feedback", "admin_client_"),
    ("labeling:redteam", "admin_client_"),
]


@pytest.mark.parametrize(("name", "client_fixture"), LIST_PAGES)
@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5", "+2", " 2", "02", "9" * 19])
def test_a_page_that_is_no_page_number_is_a_422_naming_it(
    request, conversation, name, client_fixture, bad
):
    """Django's ``get_page`` showed the first page (or the last) for any of these, where the
    API refuses a bad ``offset``: the page is refused, with the filters' 422, naming it."""
    response = request.getfixturevalue(client_fixture).get(reverse(name), {"page": bad})
    assert response.status_code == 422, bad
    html = response.content.decode()
    assert escape(f'There is no page "{bad}": a page is a whole number from 1') in html
    assert "Weekend plans" not in html


@pytest.mark.parametrize(("name", "client_fixture"), LIST_PAGES)
def test_a_page_past_the_last_is_empty_and_leads_back_to_the_last(
    request, conversation, name, client_fixture
):
    """As the API answers an offset past the end (no results, not an error), a page past the
    last one lists nothing, says so, and links to the last page."""
    client = request.getfixturevalue(client_fixture)
    response = client.get(reverse(name), {"page": "7"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "There is no page 7: the list has 1 page." in html
    assert 'page=1">' in html
    assert "Weekend plans" not in html
    # The first page, given or not, is the list.
    for query in ({}, {"page": ""}, {"page": "1"}):
        assert client.get(reverse(name), query).status_code == 200, query


def test_a_page_past_the_end_of_the_write_list_says_nothing_of_an_empty_list(
    trainer_client, conversation
):
    html = trainer_client.get(reverse("labeling:conversation-list"), {"page": "3"}).content
    assert b"There is no page 3" in html and b"No conversations yet." not in html
    # Not an empty list: the new conversation's form stays closed.
    assert b'<details class="card" open>' not in html
    listed = trainer_client.get(reverse("labeling:conversation-list"), {"page": "1"}).content
    assert b"Weekend plans" in listed
