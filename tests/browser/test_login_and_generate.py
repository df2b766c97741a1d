import re

import pytest
from playwright.sync_api import expect

from sampler.generation.models import GenerationJob
from sampler.generation.views import JOB_FINISHED_EVENT
from sampler.jobs.kinds import job_kind_of
from tests.browser.conftest import (
    log_in,
    quiet_until_checked_again,
    requests_to,
    try_the_model_filled,
)
from tests.conftest import PASSWORD, worker_seen
from tests.sampler.conftest import job_unqueued

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_trainer_logs_in_sees_the_nav_and_logs_out(page, live_server, trainer):
    page.goto(f"{live_server.url}/write/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.fill("#id_username", "tess")
    page.fill("#id_password", "wrong password")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_be_visible()

    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/write/")
    nav = page.get_by_role("navigation", name="Main")
    for label in ("Write", "Rank", "Try the model"):
        expect(nav.get_by_role("link", name=label)).to_be_visible()
    expect(nav.get_by_role("link", name="Exports")).to_have_count(0)
    assert page.evaluate("typeof htmx") == "object"  # served from our static files, no CDN

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def test_admin_sees_admin_links(page, live_server, admin_user):
    log_in(page, live_server, "ada", PASSWORD)
    nav = page.get_by_role("navigation", name="Main")
    for label in ("Exports", "Training", "Admin"):
        expect(nav.get_by_role("link", name=label)).to_be_visible()


def test_generation_is_queued_polled_and_swapped_in_with_htmx(
    page, live_server, celery_worker, policy, trainer
):
    message = "<script>window.pwned = 1</script> hi there!"
    try_the_model_filled(page, live_server, message, n=3, seed=11)
    expect(page.locator("#recent-jobs")).to_contain_text("No jobs yet.")
    page.get_by_role("button", name="Generate").click()
    # The page is not reloaded: htmx swaps the job in, polls it, and shows the samples; the
    # list of recent jobs below takes it too.
    expect(page.locator("#recent-jobs tbody tr")).to_have_count(1)
    expect(page.locator("#recent-jobs")).not_to_contain_text("No jobs yet.")
    job = page.locator("section.job")
    expect(job).to_have_attribute("data-status", "succeeded")
    expect(page.locator("article.sample")).to_have_count(3)
    # The list was swapped in with the job queued; the poll's last answer refreshes it.
    expect(page.locator("#recent-jobs tbody tr .badge")).to_have_text("Succeeded")
    assert page.evaluate("window.pwned") is None
    expect(page).to_have_url(f"{live_server.url}/generate/")


def test_a_job_listed_earlier_shows_its_end_in_recent_jobs_without_a_reload(
    page, live_server, policy, trainer
):
    """Only the end of the job polled above refreshed the table, so a job started earlier (in
    another tab, or before a reload) stayed "Queued" after it had ended. The table now polls
    itself while a job it lists is unfinished, and stops once none is."""
    job = job_unqueued(trainer, n=1, purpose=GenerationJob.Purpose.PLAYGROUND)  # the page's own
    worker_seen(queues=[job_kind_of(job).queue_for(job)])
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/generate/")
    badge = page.locator("#recent-jobs tbody tr .badge")
    expect(badge).to_have_text("Queued")
    # It ends on a worker this page polls nothing of.
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.SUCCEEDED)
    expect(badge).to_have_text("Succeeded")
    expect(page.locator("#recent-jobs")).to_have_attribute(
        "hx-trigger", f"{JOB_FINISHED_EVENT} from:body"
    )
    expect(page).to_have_url(f"{live_server.url}/generate/")


def test_recent_jobs_stop_checking_while_their_jobs_wait_for_no_worker(
    page, live_server, policy, trainer, settings
):
    """A job queued while no worker serves its queue cannot change (a job waiting is never
    failed), so the table stops checking (under a fake clock: a minute goes by with no request)
    and says why, with a button to check again. Once a worker is live, that check finds the
    table polling every 2 seconds again, and it shows the job's end. Before, the table polled
    every 2 seconds for as long as the page stayed open."""
    # No worker counts as live (the run's own, started by an earlier test, beats every second).
    # (a cutoff an hour ahead, so that even a heartbeat written as the page asks is too old)
    settings.WORKER_LIVE_SECONDS = -3600
    job = job_unqueued(trainer, n=1, purpose=GenerationJob.Purpose.PLAYGROUND)  # the page's own
    polls = requests_to(page, "recent-jobs")
    page.clock.install()
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/generate/")
    table = page.locator("#recent-jobs")
    badge = table.locator("tbody tr .badge")
    expect(badge).to_have_text("Queued")
    note = page.locator("#recent-jobs-no-worker")
    queue = job_kind_of(job).queue_for(job)
    expect(note).to_contain_text(f"serving the {queue} queue")
    expect(table).to_have_attribute("hx-trigger", f"{JOB_FINISHED_EVENT} from:body")
    quiet_until_checked_again(page, polls=polls, note=note, queue=queue, settings=settings)
    expect(table).to_have_attribute("hx-trigger", f"{JOB_FINISHED_EVENT} from:body, every 2s")
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.SUCCEEDED)
    page.clock.run_for(2_500)
    expect(badge).to_have_text("Succeeded")
    expect(table).to_have_attribute("hx-trigger", f"{JOB_FINISHED_EVENT} from:body")


def test_invalid_generation_request_shows_a_message_and_keeps_the_text(
    page, live_server, policy, trainer
):
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/generate/")
    page.fill("#id_message", "keep this text")
    # Bypass the browser's own min/max checks to exercise the server's validation.
    page.evaluate("document.querySelector('#id_n').removeAttribute('max')")
    page.fill("#id_n", "99")
    with page.expect_response(f"{live_server.url}/generate/") as refused:
        page.get_by_role("button", name="Generate").click()
    # A refused form is a 422, as on every page; htmx swaps it in all the same.
    assert refused.value.status == 422
    expect(page.locator("#generate-result [role=alert]")).to_contain_text("Completions")
    expect(page.locator("#id_message")).to_have_value("keep this text")
