import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.conftest import PASSWORD
from tests.ranking import conftest as ranking_fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ready_task = ranking_fixtures.ready_task


def test_export_preview_counts_rows_without_putting_the_csrf_token_in_the_url(
    page, live_server, ready_task, admin_user
):
    log_in(page, live_server, "ada", PASSWORD)
    page.goto(f"{live_server.url}/exports/")
    with page.expect_request("**/exports/preview/**") as preview:
        page.get_by_role("button", name="Preview count").click()
    # A GET's query string ends up in access logs: the token stays out of it.
    assert "csrfmiddlewaretoken" not in preview.value.url
    assert "format=" in preview.value.url
    expect(page.locator("#preview")).to_contain_text("to write")
