"""Every form field's help text is on the page, where its aria-describedby points."""

from html.parser import HTMLParser

import pytest

pytestmark = pytest.mark.django_db


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, list[str]] = {}
        self.described_by: list[str] = []
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.setdefault(attributes["id"], [])
            self._open.append(attributes["id"])
        self.described_by.extend((attributes.get("aria-describedby") or "").split())

    def handle_data(self, data) -> None:
        for element_id in self._open:
            self.ids[element_id].append(data)

    def handle_endtag(self, tag) -> None:
        # Good enough for the short help-text elements this test reads: they hold no children.
        if self._open:
            self._open.pop()


@pytest.mark.parametrize(
    "url",
    [
        "/write/",
        "/exports/",
        "/training/",
        "/models/",
        "/projects/",
        "/projects/default/",
        "/write/redteam/",
        "/write/redteam/runs/",
        "/write/feedback/",
        "/write/guidelines/",
        "/rank/projects/",
        "/rank/quality/",
        "/generate/",
        "/models/comparisons/",
    ],
)
def test_every_aria_describedby_points_at_help_text_on_the_page(admin_client_, url):
    response = admin_client_.get(url, follow=True)
    assert response.status_code == 200, url
    page = _Ids()
    page.feed(response.content.decode())
    missing = [target for target in page.described_by if target not in page.ids]
    assert missing == [], f"{url}: aria-describedby names no element: {missing}"
    empty = [target for target in page.described_by if not "".join(page.ids[target]).strip()]
    assert empty == [], f"{url}: aria-describedby names an empty element: {empty}"
