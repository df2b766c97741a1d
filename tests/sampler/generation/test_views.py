"""The "Try the model" page: its form's limits and its recent jobs, refreshed through htmx."""

import json
import re
from datetime import timedelta
from unittest import mock

import pytest
from django.urls import reverse

from config.celery import app
from sampler.generation import services
from sampler.generation.models import GenerationJob
from sampler.generation.params import MIN_PROMPT_TOKENS
from sampler.generation.views import JOB_FINISHED_EVENT
from sampler.jobs.kinds import job_kind_of
from tests.conftest import says_unpublished_until_published, worker_seen

HTMX = {"HTTP_HX_REQUEST": "true"}
FIELDS = {"message": "hello?", "n": 1, "temperature": 0.8, "top_p": 1.0}


def _job(trainer) -> GenerationJob:
    return services.generation_job_create(
        messages=[{"role": "user", "content": "hi"}],
        n=1,
        params={"max_new_tokens": 8},
        requested_by=trainer,
        purpose=GenerationJob.Purpose.PLAYGROUND,
        queue=False,
    )


def _tokens_input_with(client, policy, settings, *, cap: int, context_length: int) -> str:
    """The token-limit input the page shows with the site's ``cap`` and an active policy of
    ``context_length`` tokens."""
    settings.GENERATION_MAX_NEW_TOKENS = cap
    policy.context_length = context_length
    policy.save(update_fields=["context_length"])
    html = client.get(reverse("sampler:generate")).content.decode()
    return re.search(r'<input[^>]*name="max_new_tokens"[^>]*>', html).group(0)


def _asked(client, max_new_tokens: int):
    with mock.patch.object(app, "send_task"):
        return client.post(
            reverse("sampler:generate"), {**FIELDS, "max_new_tokens": max_new_tokens}, **HTMX
        )


def test_the_token_limit_offered_is_what_the_active_versions_context_leaves(
    policy, trainer_client, settings
):
    """The site's cap is 256 tokens, but a 64-token context leaves a reply 48 after the
    prompt's 16: the form offers 48 at most (and starts there), and refuses more in the
    service's words, storing nothing."""
    most = 64 - MIN_PROMPT_TOKENS
    tokens = _tokens_input_with(trainer_client, policy, settings, cap=256, context_length=64)
    assert f'max="{most}"' in tokens and f'value="{most}"' in tokens

    assert f"ask for at most {most}." in _asked(trainer_client, 100).content.decode()
    assert not GenerationJob.objects.exists()
    assert _asked(trainer_client, most).status_code == 200
    assert GenerationJob.objects.get().params["max_new_tokens"] == most


@pytest.mark.parametrize(
    ("context_length", "cap", "asked", "refusal"),
    [
        # The context leaves more than the cap: the cap, in the form's words.
        (4096, 32, 33, "less than or equal to 32"),
        # No limit fits a 16-token context: the form offers the cap, and the service refuses
        # any, saying why (rather than a limit that would be refused too).
        (MIN_PROMPT_TOKENS, 256, 1, "too short for any reply"),
    ],
)
def test_the_token_limit_offered_is_the_sites_cap_where_the_context_sets_none(
    policy, trainer_client, settings, context_length, cap, asked, refusal
):
    tokens = _tokens_input_with(
        trainer_client, policy, settings, cap=cap, context_length=context_length
    )
    assert f'max="{cap}"' in tokens
    assert refusal in _asked(trainer_client, asked).content.decode()
    assert not GenerationJob.objects.exists()


@pytest.mark.parametrize("headers", [HTMX, {}], ids=["htmx", "page"])
def test_a_refused_form_is_a_422_with_the_form_and_its_reasons(policy, trainer_client, headers):
    """The playground answered a refused form (a field out of range, a limit the service
    refuses) with a 200, where every other page answers a refused form with a 422: a 422, with
    the reasons and the typed text, and nothing stored."""
    url = reverse("sampler:generate")
    with mock.patch.object(app, "send_task") as send_task:
        out_of_range = trainer_client.post(
            url, {**FIELDS, "n": 99, "message": "keep me"}, **headers
        )
        refused = trainer_client.post(url, {**FIELDS, "max_new_tokens": 10**6}, **headers)
    for response in (out_of_range, refused):
        assert response.status_code == 422
        assert 'role="alert"' in response.content.decode()
    assert "Completions" in out_of_range.content.decode()
    if not headers:
        assert "keep me" in out_of_range.content.decode()
    assert not GenerationJob.objects.exists() and not send_task.called


def test_a_finished_jobs_last_status_answer_tells_the_page_to_refresh_its_recent_jobs(
    policy, trainer, trainer_client
):
    """The status poll stops at a final state; that answer raises the event the recent-jobs
    table listens for, so it does not keep showing the job as queued."""
    job = _job(trainer)
    url = reverse("sampler:job-detail", args=[job.pk])
    polled = trainer_client.get(url, **HTMX)
    assert "HX-Trigger" not in polled.headers

    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.SUCCEEDED)
    last = trainer_client.get(url, **HTMX)
    assert json.loads(last.headers["HX-Trigger"]) == {JOB_FINISHED_EVENT: {}}
    # The job's own page, opened without htmx, is the page as before.
    page = trainer_client.get(url)
    assert page.status_code == 200 and "HX-Trigger" not in page.headers
    assert f"Generation job {job.pk}" in page.content.decode()


def test_the_recent_jobs_table_listens_and_its_fragment_shows_the_status_now(
    policy, trainer, trainer_client
):
    job = _job(trainer)
    page = trainer_client.get(reverse("sampler:generate")).content.decode()
    table = re.search(r'<div id="recent-jobs"[^>]*>', page).group(0)
    assert f'hx-trigger="{JOB_FINISHED_EVENT} from:body' in table
    assert f'hx-get="{reverse("sampler:generate-recent-jobs")}"' in table

    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.SUCCEEDED)
    fragment = trainer_client.get(reverse("sampler:generate-recent-jobs"), **HTMX)
    html = fragment.content.decode()
    assert html.lstrip().startswith('<div id="recent-jobs"')
    assert "Succeeded" in html and "Queued" not in html
    # Asked for as the target itself, not swapped out of band (which would leave it empty).
    assert "hx-swap-oob" not in html


def _recent_jobs_trigger(html: str) -> str:
    return re.search(r'<div id="recent-jobs"[^>]*hx-trigger="([^"]*)"', html).group(1)


def test_the_recent_jobs_table_polls_itself_only_while_a_job_it_lists_is_unfinished(
    policy, trainer, trainer_client
):
    """It was refreshed only by the end of the job polled above it, so a job started earlier
    (or in another tab) that ended meanwhile stayed "Queued" or "Running" until a reload. It
    now asks for itself every 2 s while any job it lists is unfinished, and stops once none is
    (a job too old to be listed does not keep it polling). A queued job polls while a live
    worker serves its queue (the next test: not without one)."""
    worker_seen()
    polling = f"{JOB_FINISHED_EVENT} from:body, every 2s"
    finished_only = f"{JOB_FINISHED_EVENT} from:body"

    def page_trigger() -> str:
        return _recent_jobs_trigger(
            trainer_client.get(reverse("sampler:generate")).content.decode()
        )

    def fragment_trigger() -> str:
        url = reverse("sampler:generate-recent-jobs")
        return _recent_jobs_trigger(trainer_client.get(url, **HTMX).content.decode())

    assert page_trigger() == finished_only  # no jobs yet
    older = _job(trainer)
    assert page_trigger() == polling and fragment_trigger() == polling
    GenerationJob.objects.filter(pk=older.pk).update(status=GenerationJob.Status.RUNNING)
    assert fragment_trigger() == polling
    GenerationJob.objects.filter(pk=older.pk).update(status=GenerationJob.Status.SUCCEEDED)
    assert page_trigger() == finished_only and fragment_trigger() == finished_only

    # The new job swapped in out of band is queued: that copy polls.
    with mock.patch.object(app, "send_task"):
        answer = trainer_client.post(
            reverse("sampler:generate"), {**FIELDS, "max_new_tokens": 8}, **HTMX
        )
    assert _recent_jobs_trigger(answer.content.decode()) == polling
    newest = GenerationJob.objects.latest("created_at")
    GenerationJob.objects.filter(pk=newest.pk).update(status=GenerationJob.Status.FAILED)
    assert fragment_trigger() == finished_only

    # An unfinished job past the ten listed is not shown, and does not keep the table polling.
    GenerationJob.objects.filter(pk=older.pk).update(
        status=GenerationJob.Status.QUEUED, created_at=older.created_at - timedelta(days=1)
    )
    for _ in range(9):
        listed = _job(trainer)
        GenerationJob.objects.filter(pk=listed.pk).update(status=GenerationJob.Status.CANCELLED)
    assert fragment_trigger() == finished_only


def test_the_recent_jobs_table_stops_polling_while_its_jobs_wait_for_no_worker(
    policy, trainer, trainer_client, settings
):
    """Queued jobs whose queue no live worker serves cannot change (a job waiting is never
    failed): the table does not poll for them, and says which queue waits, with a button to
    check again; a running job, or a worker seen lately, has it poll again. Before, it polled
    every 2 s for as long as the page stayed open."""
    polling = f"{JOB_FINISHED_EVENT} from:body, every 2s"
    finished_only = f"{JOB_FINISHED_EVENT} from:body"
    url = reverse("sampler:generate-recent-jobs")
    job = _job(trainer)
    worker_seen(seconds_ago=settings.WORKER_LIVE_SECONDS + 1)  # seen, not lately

    html = trainer_client.get(url, **HTMX).content.decode()
    assert _recent_jobs_trigger(html) == finished_only
    assert 'id="recent-jobs-no-worker"' in html and "Check again" in html
    queue = job_kind_of(job).queue_for(job)
    assert f"serving the {queue} queue," in " ".join(html.split())

    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.RUNNING)
    html = trainer_client.get(url, **HTMX).content.decode()
    assert _recent_jobs_trigger(html) == polling and "recent-jobs-no-worker" not in html

    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.QUEUED)
    worker_seen()
    html = trainer_client.get(url, **HTMX).content.decode()
    assert _recent_jobs_trigger(html) == polling and "recent-jobs-no-worker" not in html


def test_a_new_job_waiting_for_no_worker_is_said_to_wait_once(
    policy, trainer, trainer_client, settings
):
    """A job just asked for, queued where no live worker serves its queue, says so in its own
    part of the page; the recent jobs swapped in beside it, which list it too, do not say it
    again, nor when they ask for themselves again (their address names the job shown above).
    On their own (the page opened afresh) they say it. Before, the page said it twice."""
    worker_seen(seconds_ago=settings.WORKER_LIVE_SECONDS + 1)  # seen, not lately
    with mock.patch.object(app, "send_task"):
        answer = trainer_client.post(
            reverse("sampler:generate"), {**FIELDS, "max_new_tokens": 8}, **HTMX
        )
    html = answer.content.decode()
    job = GenerationJob.objects.latest("created_at")
    queue = job_kind_of(job).queue_for(job)
    assert html.count("Queued work here") == 1 and 'id="job-no-worker"' in html
    assert f"serving the {queue} queue," in " ".join(html.split())

    again = re.search(r'<div id="recent-jobs"[^>]*hx-get="([^"]*)"', html).group(1)
    assert again == f"{reverse('sampler:generate-recent-jobs')}?shown={job.pk}"
    assert "Queued work here" not in trainer_client.get(again, **HTMX).content.decode()

    alone = trainer_client.get(reverse("sampler:generate-recent-jobs"), **HTMX).content.decode()
    assert alone.count("Queued work here") == 1 and 'id="recent-jobs-no-worker"' in alone
    # A value naming no job it lists leaves the table as it is on its own.
    for shown in ("abc", "0", str(job.pk + 1000)):
        html = trainer_client.get(
            reverse("sampler:generate-recent-jobs"), {"shown": shown}, **HTMX
        ).content.decode()
        assert 'id="recent-jobs-no-worker"' in html, shown


def test_a_new_job_is_swapped_into_the_recent_jobs_out_of_band(policy, trainer_client):
    with mock.patch.object(app, "send_task"):
        answer = trainer_client.post(
            reverse("sampler:generate"), {**FIELDS, "max_new_tokens": 8}, **HTMX
        )
    html = answer.content.decode()
    assert re.search(r'<div id="recent-jobs" hx-swap-oob="true"', html)
    assert "Queued" in html


def test_the_recent_jobs_address_takes_no_post(policy, trainer_client):
    with mock.patch.object(app, "send_task") as send_task:
        answer = trainer_client.post(
            reverse("sampler:generate-recent-jobs"), {**FIELDS, "max_new_tokens": 8}
        )
    assert answer.status_code == 405 and not send_task.called
    assert not GenerationJob.objects.exists()


# As the executor stores an unexpected exception: its line, then the end of its traceback.
TRACEBACK = (
    'RuntimeError: CUDA out of memory\n  File "/srv/tandem/sampler/generation/tasks.py", '
    "line 9, in run\n    raise RuntimeError\nRuntimeError: CUDA out of memory"
)


def test_staff_read_a_failed_generation_job_as_its_reason_without_the_traceback(
    policy, admin_user, admin_client_
):
    """The job's page and the editor's suggestions showed staff the stored error whole (server
    paths); they show its one line, as every other job page and the jobs API do."""
    from labeling.conversations import services as conversations

    conversation = conversations.conversation_create(owner=admin_user, title="t")
    prompt = conversations.message_append(
        conversation=conversation, author=admin_user, content="Hi"
    )
    job = _job(admin_user)
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.FAILED,
        error=TRACEBACK,
        purpose=GenerationJob.Purpose.SUGGESTION,
        prefix_message=prompt,
    )
    pages = (
        admin_client_.get(reverse("sampler:job-detail", args=[job.pk])),
        admin_client_.get(reverse("labeling:suggestions", args=[conversation.pk, job.pk]), **HTMX),
    )
    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200
        assert "RuntimeError: CUDA out of memory" in html
        assert "/srv/tandem" not in html and "line 9" not in html


def test_recent_jobs_are_the_users_own_from_this_page(
    policy, trainer, trainer_client, other_trainer, admin_user, admin_client_
):
    """It listed every job of the user (the editor's suggestions, ranking alternatives), and
    an admin's listed everyone's: now the jobs its user made on this page, and no others."""

    def job(user, purpose) -> GenerationJob:
        return services.generation_job_create(
            messages=[{"role": "user", "content": "hi"}],
            n=1,
            params={"max_new_tokens": 8},
            requested_by=user,
            purpose=purpose,
            queue=False,
        )

    def listed(client) -> set[int]:
        html = client.get(reverse("sampler:generate-recent-jobs"), **HTMX).content.decode()
        return {int(pk) for pk in re.findall(r'href="/[^"]*/(\d+)/">\1</a>', html)}

    mine = job(trainer, GenerationJob.Purpose.PLAYGROUND)
    job(trainer, GenerationJob.Purpose.SUGGESTION)
    job(trainer, GenerationJob.Purpose.RANKING)
    job(other_trainer, GenerationJob.Purpose.PLAYGROUND)
    admins = job(admin_user, GenerationJob.Purpose.PLAYGROUND)
    assert listed(trainer_client) == {mine.pk}
    assert listed(admin_client_) == {admins.pk}


@pytest.mark.django_db(transaction=True)
def test_the_recent_jobs_say_which_of_their_jobs_wait_for_the_job_queue(
    policy, trainer_client, broker
):
    """A job asked for while the job queue was unreachable is said so above the table (its
    own part); the table listed it as plain "Queued", so on a page opened afresh nothing said
    it had not reached the queue. Listed on its own, the table says so of the job, until the
    outbox sent it; beside the job's own part it does not say it twice."""
    broker.down = True
    answer = trainer_client.post(
        reverse("sampler:generate"), {**FIELDS, "max_new_tokens": 8}, **HTMX
    ).content.decode()
    job = GenerationJob.objects.get()
    said = (
        f"Job {job.pk} is saved, but the job queue is unreachable right now: it starts as soon "
        "as the queue is back."
    )
    assert answer.count(said) == 1
    shown = f"{reverse('sampler:generate-recent-jobs')}?shown={job.pk}"
    assert said not in trainer_client.get(shown, **HTMX).content.decode()
    says_unpublished_until_published(
        trainer_client,
        broker,
        job=job,
        parts={reverse("sampler:generate-recent-jobs"): said},
        pages=(reverse("sampler:generate"),),
    )
