"""The parts a page refreshes through htmx, asked for with and without htmx."""

import pytest
from django.urls import reverse

BASE_LAYOUT = 'id="main-nav"'

PREVIEW_QUERY = {"format": "pairs", "pair_mode": "per_ranker", "split": "all"}
PREVIEW_QUERY |= {"test_fraction": "0.1", "split_seed": "0"}

# A fragment's URL name and query, and what marks the page it belongs to and the fragment.
FRAGMENTS = [
    ("sampler:training-runs", {}, "Start training", 'id="run-table"'),
    ("sampler:comparisons", {}, "<h1>Models</h1>", 'id="comparison-table"'),
    ("ranking:export-status", {}, "Start export", 'id="export-table"'),
    ("ranking:export-preview", PREVIEW_QUERY, "Start export", 'id="preview"'),
    ("sampler:generate-recent-jobs", {}, "<h1>Try the model</h1>", 'id="recent-jobs"'),
]


@pytest.mark.parametrize(("name", "query", "page_marker", "fragment_marker"), FRAGMENTS)
def test_a_fragment_opened_without_htmx_is_the_whole_page_it_belongs_to(
    admin_client_, name, query, page_marker, fragment_marker
):
    """What a page polls or fills in through htmx is a fragment; a plain GET of its address
    (a bookmark, a typed address) gets the whole page, in the site's layout."""
    url = reverse(name)

    page = admin_client_.get(url, query)
    fragment = admin_client_.get(url, query, headers={"HX-Request": "true"})

    assert page.status_code == 200
    html = page.content.decode()
    assert BASE_LAYOUT in html and page_marker in html and fragment_marker in html
    assert fragment.status_code == 200
    assert BASE_LAYOUT not in fragment.content.decode()
    assert fragment_marker in fragment.content.decode()
