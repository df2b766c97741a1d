import pytest
from playwright.sync_api import expect

from ranking.exports.models import DatasetExport
from sampler.jobs.kinds import job_kind_of
from tests.browser.conftest import log_in, quiet_until_checked_again, requests_to
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


def test_the_exports_table_stops_checking_while_an_export_waits_for_no_worker(
    page, live_server, admin_user, settings
):
    """An export queued while no worker serves its queue cannot move (a job waiting is never
    failed), so the table stops asking every second (under a fake clock: a minute goes by with
    no request) and says why, with a button to check again. Once a worker is live, that check
    finds the table polling again, and it shows the export's end. Before, the table asked every
    second for as long as the page stayed open."""
    # No worker counts as live (the run's own, started by an earlier test, beats every second):
    # a cutoff an hour ahead, so that even a heartbeat written as the page asks is too old.
    settings.WORKER_LIVE_SECONDS = -3600
    export = DatasetExport.objects.create(format="pairs", created_by=admin_user)
    queue = job_kind_of(export).queue_for(export)
    polls = requests_to(page, "exports/status")
    page.clock.install()
    log_in(page, live_server, "ada", PASSWORD)
    page.goto(f"{live_server.url}/exports/")
    table = page.locator("#export-table")
    row = table.locator(f'tr[data-export-id="{export.pk}"]')
    expect(row).to_have_attribute("data-status", "queued")
    note = page.locator("#exports-no-worker")
    expect(note).to_contain_text(f"serving the {queue} queue")
    expect(table).not_to_have_attribute("hx-trigger", "every 1s")
    quiet_until_checked_again(page, polls=polls, note=note, queue=queue, settings=settings)
    expect(table).to_have_attribute("hx-trigger", "every 1s")
    DatasetExport.objects.filter(pk=export.pk).update(status=DatasetExport.Status.FAILED)
    page.clock.run_for(1_500)
    expect(row).to_have_attribute("data-status", "failed")
    expect(table).not_to_have_attribute("hx-trigger", "every 1s")
    expect(page.locator("#export-table")).to_have_count(1)
    expect(page).to_have_url(f"{live_server.url}/exports/")


def test_the_format_select_shows_its_longest_choice_whole(page, live_server, admin_user):
    """At 1366x768 it read "Preference pairs (p": it is now as wide as its longest choice
    needs (the width the browser gives the same select left to size itself)."""
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, live_server, "ada", PASSWORD)
    page.goto(f"{live_server.url}/exports/")
    widths = page.locator("#id_format").evaluate(
        """(select) => {
          const free = select.cloneNode(true);
          free.style.width = "auto";
          free.style.minWidth = "0";
          free.style.maxWidth = "none";
          free.style.position = "absolute";
          document.body.append(free);
          const needed = free.getBoundingClientRect().width;
          free.remove();
          return [select.getBoundingClientRect().width, needed];
        }"""
    )
    shown, needed = widths
    assert shown >= needed - 0.5, widths
