import json
import re
from unittest import mock

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown

from config.celery import app
from labeling.models import Conversation, Message
from sampler.generation import services
from sampler.generation.models import GenerationJob
from sampler.jobs.services import job_fail
from tests.conftest import (
    polls_only_while_work_can_move,
    post_json,
    says_unpublished_until_published,
    worker_seen,
)

JOBS_URL = "/api/generation-jobs/"
PROMPT = [{"role": "user", "content": "hi! how was your weekend?"}]
HTMX = {"HTTP_HX_REQUEST": "true"}


def _post(client: Client, data: object):
    return client.post(JOBS_URL, json.dumps(data), content_type="application/json")


def _job_url(job_id: int) -> str:
    return f"{JOBS_URL}{job_id}/"


def _job_section(html: str, job: GenerationJob) -> str:
    """The opening tag of the job's section: where the polling attributes live."""
    return re.search(rf'<section id="job-{job.pk}"[^>]*>', html).group(0)


def _queued_job(trainer) -> GenerationJob:
    return services.generation_job_create(
        messages=PROMPT,
        n=2,
        params={"max_new_tokens": 8},
        seed=3,
        requested_by=trainer,
        queue=False,
    )


def test_create_records_the_request_and_queues_one_run_after_commit(
    policy, trainer, trainer_client, django_capture_on_commit_callbacks
):
    payload = {
        "messages": PROMPT,
        "n": 3,
        "params": {"temperature": 0.7, "max_new_tokens": 10},
        "seed": 42,
    }
    with (
        mock.patch.object(app, "send_task") as send_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = _post(trainer_client, payload)

    assert response.status_code == 201, response.content
    body = response.json()
    job = GenerationJob.objects.get()
    assert body["id"] == job.pk and body["status"] == "queued"
    assert body["n"] == 3 and body["seed"] == 42 and body["role"] == "assistant"
    assert body["params"]["temperature"] == 0.7 and body["params"]["max_new_tokens"] == 10
    assert body["prompt_messages"] == PROMPT
    assert body["model_version"] == "micro" and body["samples"] == []
    assert job.requested_by == trainer and job.params == body["params"]
    # Queued for an interactive worker with the job's token, not run in the request.
    send_task.assert_called_once()
    assert send_task.call_args.kwargs["args"] == ("generation", job.pk, job.publish_token)
    assert send_task.call_args.kwargs["queue"] == "generation"
    assert job.status == GenerationJob.Status.QUEUED and not job.samples.exists()


def test_create_from_a_prefix_message_of_ones_own_conversation(policy, trainer, trainer_client):
    conversation = Conversation.objects.create(owner=trainer)
    question = Message.objects.create(conversation=conversation, role="user", content="hello?")
    response = _post(trainer_client, {"prefix_message_id": question.pk, "n": 1})
    assert response.status_code == 201, response.content
    assert response.json()["prefix_message_id"] == question.pk
    assert response.json()["prompt_messages"] == [{"role": "user", "content": "hello?"}]


@pytest.mark.parametrize(("ending", "role"), [("user", "user"), ("assistant", "assistant")])
def test_a_prefix_message_takes_only_the_next_turns_role(
    policy, trainer, trainer_client, ending, role
):
    """A list of messages was checked for the turn it is continued by; a prefix message was
    not: a user turn asked after a user turn was queued (a model asked to answer itself)."""
    conversation = Conversation.objects.create(owner=trainer)
    last = Message.objects.create(conversation=conversation, role="user", content="hello?")
    if ending == "assistant":
        last = Message.objects.create(
            conversation=conversation, parent=last, role="assistant", content="hi!"
        )
    next_turn = "assistant" if ending == "user" else "user"
    with mock.patch.object(app, "send_task") as send_task:
        response = _post(trainer_client, {"prefix_message_id": last.pk, "n": 1, "role": role})
    assert response.status_code == 400
    assert response.json() == {
        "role": [f"The next turn after these messages is the {next_turn}'s, not the {role}'s."]
    }
    assert not GenerationJob.objects.exists() and not send_task.called
    with mock.patch.object(app, "send_task"):
        taken = _post(trainer_client, {"prefix_message_id": last.pk, "n": 1, "role": next_turn})
    assert taken.status_code == 201, taken.content


def test_a_prefix_message_opened_by_several_system_messages_is_continued(
    policy, trainer, trainer_client
):
    """An import may open a conversation with several system messages; a path through them
    takes the next turn as any other (a ranking task's alternatives are sampled so)."""
    conversation = Conversation.objects.create(owner=trainer)
    parent = None
    for role, content in (("system", "Be kind."), ("system", "Be brief."), ("user", "hi?")):
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role=role, content=content
        )
    with mock.patch.object(app, "send_task"):
        taken = _post(trainer_client, {"prefix_message_id": parent.pk, "n": 1})
        refused = _post(trainer_client, {"prefix_message_id": parent.pk, "n": 1, "role": "user"})
    assert taken.status_code == 201, taken.content
    assert refused.status_code == 400 and list(refused.json()) == ["role"]


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"messages": PROMPT, "n": 0}, "n", "greater than or equal to 1"),
        ({"messages": PROMPT, "n": 17}, "n", "at most 16"),
        ({"messages": PROMPT, "n": "many"}, "n", "Must be an integer"),
        ({"messages": PROMPT, "n": "3"}, "n", "Must be an integer"),
        ({"messages": PROMPT, "n": True}, "n", "Must be an integer"),
        ({"messages": PROMPT, "n": 2.0}, "n", "Must be an integer"),
        ({"messages": PROMPT, "n": 2, "params": {"temperature": True}}, "params", "number"),
        ({"messages": PROMPT, "n": 2, "params": {"max_new_tokens": 1.9}}, "params", ""),
        (
            {"messages": [{"role": "user", "content": 123}], "n": 2},
            "messages",
            "Must be a string",
        ),
        ({"messages": PROMPT, "n": 2, "params": {"max_new_tokens": 250}}, "params", "16"),
        ({"messages": PROMPT, "n": 2, "params": {"temperature": 0}}, "params", "between"),
        ({"messages": PROMPT, "n": 2, "params": {"top_p": 1.5}}, "params", ""),
        ({"messages": PROMPT, "n": 2, "params": {"max_new_tokens": 10**5}}, "params", ""),
        ({"messages": PROMPT, "n": 2, "params": {"beam_width": 3}}, "params", "beam_width"),
        ({"messages": PROMPT, "n": 2, "params": {"temperature": "hot"}}, "params", "number"),
        ({"messages": PROMPT, "n": 2, "seed": -1}, "seed", ""),
        ({"messages": PROMPT, "n": 2, "role": "system"}, "role", "valid choice"),
        ({"messages": [{"role": "robot", "content": "x"}], "n": 2}, "messages", "valid choice"),
        ({"messages": [{"role": "user", "content": "x" * 20001}], "n": 2}, "messages", "20000"),
        ({"n": 2}, "detail", "exactly one of the two"),
        (
            {"messages": [{"role": "user", "content": "x", "extra": 1}], "n": 2},
            "messages",
            "Unknown fields: 'extra'.",
        ),
        # Both: the messages would be quietly ignored.
        ({"n": 2, "messages": PROMPT, "prefix_message_id": 1}, "detail", "exactly one of the two"),
    ],
)
def test_invalid_requests_are_400_with_a_message_and_nothing_is_queued(
    policy, trainer_client, django_capture_on_commit_callbacks, payload, field, message
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = _post(trainer_client, payload)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert message in json.dumps(response.json()[field])
    assert callbacks == [] and not GenerationJob.objects.exists()


def test_a_bad_sampling_parameter_is_named_under_params(policy, trainer_client):
    response = _post(trainer_client, {"messages": PROMPT, "n": 1, "params": {"temperature": 0}})
    assert response.status_code == 400
    assert response.json() == {"params": ["temperature must be between 0.05 and 2.0."]}
    unknown = _post(trainer_client, {"messages": PROMPT, "n": 1, "params": {"beam_width": 3}})
    assert unknown.json() == {"params": ["Unknown sampling parameters: beam_width."]}
    assert not GenerationJob.objects.exists()


def test_a_prefix_message_of_someone_elses_conversation_is_refused_like_a_missing_one(
    policy, other_trainer, trainer_client
):
    conversation = Conversation.objects.create(owner=other_trainer)
    theirs = Message.objects.create(conversation=conversation, role="user", content="private")
    response = _post(trainer_client, {"prefix_message_id": theirs.pk, "n": 1})
    missing = _post(trainer_client, {"prefix_message_id": theirs.pk + 1000, "n": 1})
    assert response.status_code == missing.status_code == 400
    assert response.json() == missing.json()
    assert response.json() == {
        "prefix_message_id": ["No message with that id in your conversations."]
    }
    assert not GenerationJob.objects.exists()


def test_reading_a_job_shows_its_status_then_its_samples_once_the_task_ran(
    policy, trainer, trainer_client
):
    job = _queued_job(trainer)
    before = trainer_client.get(_job_url(job.pk))
    assert before.status_code == 200
    assert before.json()["status"] == "queued" and before.json()["samples"] == []

    services.generation_job_run_inline(job_id=job.pk)

    body = trainer_client.get(_job_url(job.pk)).json()
    assert body["status"] == "succeeded" and body["finished_at"] and body["error"] == ""
    assert [sample["index"] for sample in body["samples"]] == [0, 1]
    stored = dict(job.samples.values_list("index", "text"))
    for sample in body["samples"]:
        assert sample["text"] == stored[sample["index"]]
        assert 1 <= sample["token_count"] <= 8 and sample["logprob_sum"] < 0
        assert sample["finish_reason"] in {"end_of_turn", "length"}


def test_a_trainer_cannot_read_another_trainers_job_but_an_admin_can(
    policy, other_trainer, trainer_client, admin_client_
):
    job = _queued_job(other_trainer)
    assert trainer_client.get(_job_url(job.pk)).status_code == 404
    assert admin_client_.get(_job_url(job.pk)).status_code == 200


def test_the_generation_api_needs_a_logged_in_trainer(policy, trainer, plain_user):
    job = _queued_job(trainer)
    anonymous = Client()
    assert _post(anonymous, {"messages": PROMPT, "n": 1}).status_code in {401, 403}
    assert anonymous.get(_job_url(job.pk)).status_code in {401, 403}
    no_role = Client()
    no_role.force_login(plain_user)
    assert _post(no_role, {"messages": PROMPT, "n": 1}).status_code == 403
    assert no_role.get(_job_url(job.pk)).status_code == 403
    assert GenerationJob.objects.count() == 1


# ---- the job page's htmx partial (sampler/views.py job_detail) --------------------------------


def test_job_partial_polls_while_the_job_runs_and_stops_once_it_ended(
    policy, trainer, trainer_client
):
    worker_seen()  # a queued job polls while a live worker serves its queue
    job = _queued_job(trainer)
    url = reverse("sampler:job-detail", args=[job.pk])

    queued = trainer_client.get(url, **HTMX).content.decode()
    assert "<html" not in queued
    section = _job_section(queued, job)
    assert 'hx-trigger="every 1s"' in section and f'hx-get="{url}"' in section

    services.generation_job_run_inline(job_id=job.pk)
    finished = trainer_client.get(url, **HTMX).content.decode()
    section = _job_section(finished, job)
    assert 'data-status="succeeded"' in section
    assert "hx-trigger" not in section and "hx-get" not in section
    assert "every 1s" not in finished
    assert finished.count('data-sample-id="') == 2


def test_job_partial_of_a_failed_job_stops_polling_and_says_why(policy, trainer, trainer_client):
    job = _queued_job(trainer)
    job_fail(job=job, error="the worker ran out of memory")
    html = trainer_client.get(reverse("sampler:job-detail", args=[job.pk]), **HTMX).content.decode()
    assert "hx-trigger" not in _job_section(html, job) and "every 1s" not in html
    assert "the worker ran out of memory" in html


@pytest.mark.parametrize("prefix", ["/api/generation-jobs/", "/api/jobs/generation/"])
def test_cancel_is_a_409_once_the_job_ended_by_itself_and_repeatable_once_cancelled(
    policy, trainer, admin_client_, prefix
):
    job = _queued_job(trainer)
    cancelled = admin_client_.post(f"{prefix}{job.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert admin_client_.post(f"{prefix}{job.pk}/cancel/").status_code == 200
    for ended in ("succeeded", "failed"):
        GenerationJob.objects.filter(pk=job.pk).update(status=ended)
        refused = admin_client_.post(f"{prefix}{job.pk}/cancel/")
        assert refused.status_code == 409
        assert refused.json() == {"detail": f"The job has already {ended}: nothing to cancel."}
        assert GenerationJob.objects.get(pk=job.pk).status == ended


def test_retry_queues_a_failed_job_again_and_refuses_one_that_succeeded_with_a_409(
    policy, trainer, other_trainer, trainer_client, django_capture_on_commit_callbacks
):
    job = _queued_job(trainer)
    job_fail(job=job, error="the worker ran out of memory")
    with (
        mock.patch.object(app, "send_task") as send_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = trainer_client.post(f"{_job_url(job.pk)}retry/")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued" and send_task.call_count == 1

    job.refresh_from_db()
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.SUCCEEDED)
    refused = trainer_client.post(f"{_job_url(job.pk)}retry/")
    assert refused.status_code == 409
    assert isinstance(refused.json()["detail"], str) and refused.json()["detail"]
    assert GenerationJob.objects.get(pk=job.pk).status == GenerationJob.Status.SUCCEEDED

    theirs = Client()
    theirs.force_login(other_trainer)
    assert theirs.post(f"{_job_url(job.pk)}retry/").status_code == 404


def test_a_job_is_found_under_its_own_kind_only(policy, trainer, admin_client_):
    job = _queued_job(trainer)  # a trainer's own request, not a ranking task's replies
    assert admin_client_.get(f"/api/jobs/generation/{job.pk}/").json()["kind"] == "generation"
    wrong = admin_client_.get(f"/api/jobs/ranking_preparation/{job.pk}/")
    assert wrong.status_code == 404
    assert wrong.json() == {"detail": "No ranking preparation job with that id."}
    GenerationJob.objects.filter(pk=job.pk).update(purpose=GenerationJob.Purpose.RANKING)
    assert admin_client_.get(f"/api/jobs/generation/{job.pk}/").status_code == 404
    found = admin_client_.get(f"/api/jobs/ranking_preparation/{job.pk}/")
    assert found.json()["kind"] == "ranking_preparation"


def test_a_trainer_with_too_many_unfinished_jobs_is_refused_until_some_end(
    policy, trainer, trainer_client, admin_client_, settings
):
    """One person cannot fill the queues: past GENERATION_MAX_UNFINISHED_PER_USER jobs waiting
    or running, a new one is a 429 that stores nothing; cancelling one makes room."""
    settings.GENERATION_MAX_UNFINISHED_PER_USER = 2
    payload = {"messages": PROMPT, "n": 1, "params": {"max_new_tokens": 4}}
    with mock.patch.object(app, "send_task"):
        created = [_post(trainer_client, payload) for _ in range(2)]
        assert [response.status_code for response in created] == [201, 201]
        refused = _post(trainer_client, payload)
        assert refused.status_code == 429
        assert "2 generation jobs waiting or running" in refused.json()["detail"]
        assert GenerationJob.objects.filter(requested_by=trainer).count() == 2
        # The editor's suggestions count too, and say why in the page.
        conversation = Conversation.objects.create(owner=trainer, title="t")
        page = trainer_client.post(
            reverse("labeling:suggest", args=[conversation.pk]), {"n": "1"}, **HTMX
        )
        assert "2 generation jobs waiting or running" in page.content.decode()
        assert GenerationJob.objects.filter(requested_by=trainer).count() == 2

        cancelled = trainer_client.post(f"{_job_url(created[0].json()['id'])}cancel/")
        assert cancelled.status_code == 200
        assert _post(trainer_client, payload).status_code == 201
        # A retried job counts as a new one: no way around the cap.
        retried = trainer_client.post(f"{_job_url(created[0].json()['id'])}retry/")
        assert retried.status_code == 429
        assert GenerationJob.objects.get(pk=created[0].json()["id"]).status == "cancelled"
        # A job that cannot be retried says so, cap or no cap.
        queued = trainer_client.post(f"{_job_url(created[1].json()['id'])}retry/")
        assert queued.status_code == 409, queued.json()
        assert "Only failed or cancelled jobs can be retried" in queued.json()["detail"]
        # Admins are not limited.
        assert [_post(admin_client_, payload).status_code for _ in range(3)] == [201] * 3


def test_the_job_api_gives_staff_an_errors_own_line_and_a_retry_forgets_the_old_worker(
    policy, trainer, admin_client_
):
    job = _queued_job(trainer)
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.FAILED,
        error='ValueError: boom\n  File "/srv/tandem/sampler/x.py", line 3, in run\n    boom()\n',
        worker="celery@gpu-1",
        heartbeat_at=timezone.now(),
    )
    state = admin_client_.get(f"/api/jobs/generation/{job.pk}/").json()
    assert state["error"] == "ValueError: boom"  # no traceback, no server path
    assert "/srv/" in GenerationJob.objects.get(pk=job.pk).error  # the record keeps it
    with mock.patch.object(app, "send_task"):
        retried = admin_client_.post(f"/api/jobs/generation/{job.pk}/retry/")
    assert retried.status_code == 202
    assert retried.json()["worker"] == "" and retried.json()["heartbeat_at"] is None


@pytest.mark.django_db(transaction=True)
def test_the_playground_says_when_the_job_queue_is_down_and_keeps_the_job(
    policy, trainer_client, broker
):
    """The warning was shown above the job's part (a message at the top of the job's page),
    where it stayed once the queue was back and the job ran. The job's part says it, in what
    it polls, while the job is not published."""
    broker.down = True
    fields = {"message": "hello?", "n": 1, "temperature": 0.8, "top_p": 1.0, "max_new_tokens": 8}
    partial = trainer_client.post(reverse("sampler:generate"), fields, **HTMX)
    assert partial.status_code == 200
    assert "job queue is unreachable" in partial.content.decode()
    page = trainer_client.post(reverse("sampler:generate"), fields, follow=True)
    assert page.status_code == 200 and "job queue is unreachable" in page.content.decode()
    for job in GenerationJob.objects.all():
        assert job.status == GenerationJob.Status.QUEUED and job.published_at is None
    assert GenerationJob.objects.count() == 2
    job = GenerationJob.objects.latest("pk")
    url = reverse("sampler:job-detail", args=[job.pk])
    tail = "is saved, but the job queue is unreachable right now: it starts as soon as the queue"
    GenerationJob.objects.exclude(pk=job.pk).delete()  # the outbox sends this one alone
    says_unpublished_until_published(
        trainer_client, broker, job=job, parts={url: f"Job {job.pk} {tail}"}, pages=(url,)
    )


def test_a_failed_jobs_error_names_no_server_address_or_weights_path_to_trainers(
    policy, trainer, trainer_client, admin_client_
):
    """Trainers never see where a version is served from (its path, its server's URL), in
    the job's error either; staff read the error whole."""
    job = _queued_job(trainer)
    server = "http://10.0.0.7:8000/v1"
    policy.backend_options = {"base_url": server, "model": "m"}
    policy.save(update_fields=["backend_options"])
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.FAILED,
        error=f"The model server at {server} failed (HTTP 400: bad). The tokenizer at "
        f"{policy.path} has no chat template.",
    )
    shown = [
        trainer_client.get(_job_url(job.pk)).json()["error"],
        trainer_client.get(reverse("sampler:job-detail", args=[job.pk])).content.decode(),
    ]
    for text in shown:
        assert "The model server at" in text and "failed (HTTP 400: bad)" in text
        assert server not in text and policy.path not in text
    staff = admin_client_.get(_job_url(job.pk)).json()["error"]
    assert server in staff and policy.path in staff


def test_a_failed_jobs_error_hides_the_server_address_its_version_has_moved_from(
    policy, trainer, trainer_client
):
    """The version's server moved (its base_url patched) after the job failed naming the old
    one: trainers still do not read that address."""
    job = _queued_job(trainer)
    old = "http://10.0.0.7:8000/v1"
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.FAILED,
        error=f"The model server at {old} did not answer (ConnectError: refused).",
    )
    policy.backend_options = {"base_url": "http://10.0.0.9:8000/v1", "model": "m"}
    policy.save(update_fields=["backend_options"])
    shown = trainer_client.get(_job_url(job.pk)).json()["error"]
    assert "10.0.0.7" not in shown
    assert shown.startswith("The model server at ") and "did not answer" in shown


def test_a_default_model_that_cannot_be_registered_is_refused_without_its_server_path(
    db, trainer_client, settings, tmp_path, caplog
):
    """No policy is active and SAMPLER_MODEL names no model: the trainer is told an admin must
    promote one, not where the server looked (the log says that, for the operator)."""
    missing = tmp_path / "srv-models" / "policy"
    settings.SAMPLER_MODEL = str(missing)
    with mock.patch.object(app, "send_task") as send_task:
        response = _post(trainer_client, {"messages": PROMPT, "n": 1})
    assert response.status_code == 400
    body = response.content.decode()
    assert "srv-models" not in body and "admin" in response.json()["model_version"][0]
    assert str(missing) in caplog.text
    assert not GenerationJob.objects.exists() and not send_task.called


def test_the_playground_refuses_a_trainer_past_the_unfinished_cap_in_the_form(
    policy, trainer, trainer_client, settings
):
    """The cap's refusal names no field: the playground shows it on the form (as the editor's
    suggestions do), stores nothing, and does not fail with a server error."""
    settings.GENERATION_MAX_UNFINISHED_PER_USER = 1
    _queued_job(trainer)
    fields = {"message": "hello?", "n": 1, "temperature": 0.8, "top_p": 1.0, "max_new_tokens": 8}
    with mock.patch.object(app, "send_task"):
        partial = trainer_client.post(reverse("sampler:generate"), fields, **HTMX)
        page = trainer_client.post(reverse("sampler:generate"), fields)
    for response in (partial, page):
        assert response.status_code == 422
        assert "1 generation jobs waiting or running" in response.content.decode()
    assert GenerationJob.objects.filter(requested_by=trainer).count() == 1


@pytest.mark.parametrize(
    ("messages", "role", "expected"),
    [
        (
            [*PROMPT, {"role": "assistant", "content": "fine"}],
            "assistant",
            "The next turn after these messages is the user's, not the assistant's.",
        ),
        (
            [*PROMPT, {"role": "user", "content": "hello?"}],
            "assistant",
            "Message 2 should be the assistant's turn, not the user's: turns alternate",
        ),
        (
            [{"role": "assistant", "content": "I start"}],
            "user",
            "Message 1 should be the user's turn, not the assistant's: turns alternate",
        ),
        (
            [*PROMPT, {"role": "system", "content": "late rules"}],
            "assistant",
            "Message 2 should be the assistant's turn, not the system's: turns alternate",
        ),
        (PROMPT, "user", "The next turn after these messages is the assistant's, not the user's."),
        (
            [{"role": "system", "content": "be brief"}, *PROMPT, *PROMPT],
            "assistant",
            # Numbered in the list as sent, the system message too, as a blank one is.
            "Message 3 should be the assistant's turn, not the user's",
        ),
        ([], "assistant", "The list of messages is empty: give at least one"),
    ],
    ids=[
        "answers itself",
        "two user turns",
        "opens as assistant",
        "late system",
        "user twice",
        "after a system message",
        "empty",
    ],
)
def test_messages_that_do_not_take_turns_are_400_and_nothing_is_stored(
    policy, trainer_client, messages, role, expected
):
    response = _post(trainer_client, {"messages": messages, "n": 1, "role": role})
    assert response.status_code == 400
    assert expected in json.dumps(response.json())
    assert not GenerationJob.objects.exists()


def test_messages_that_take_turns_are_taken(policy, trainer_client):
    system = {"role": "system", "content": "be brief"}
    for messages, role in (
        ([system, *PROMPT], "assistant"),
        ([system, *PROMPT, {"role": "assistant", "content": "fine"}], "user"),
        ([system], "user"),
    ):
        response = _post(trainer_client, {"messages": messages, "n": 1, "role": role})
        assert response.status_code in (201, 503), response.json()
    assert GenerationJob.objects.count() == 3


@pytest.mark.parametrize(
    ("messages", "position"),
    [
        ([{"role": "user", "content": ""}], 1),
        ([{"role": "user", "content": "   "}], 1),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\n\t"}], 2),
        # A system turn too, as a conversation's (an import refuses a blank one).
        ([{"role": "system", "content": " "}, *PROMPT], 1),
    ],
    ids=["empty", "spaces", "blank assistant turn", "blank system turn"],
)
def test_a_blank_turn_is_400_as_a_conversations_turn_is_and_nothing_is_stored(
    policy, trainer_client, messages, position
):
    role = "assistant" if messages[-1]["role"] == "user" else "user"
    response = _post(trainer_client, {"messages": messages, "n": 1, "role": role})
    assert response.status_code == 400
    assert response.json() == {"messages": [f"Message {position}: content may not be blank."]}
    assert not GenerationJob.objects.exists()


def test_a_retried_create_with_an_idempotency_key_queues_one_job(
    policy, trainer_client, django_capture_on_commit_callbacks
):
    payload = {"messages": PROMPT, "n": 2, "params": {"max_new_tokens": 8}, "seed": 1}
    with (
        mock.patch.object(app, "send_task") as send_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        first = post_json(trainer_client, JOBS_URL, payload, idempotency_key="job-1")
        retried = post_json(trainer_client, JOBS_URL, payload, idempotency_key="job-1")
    assert first.status_code == retried.status_code == 201, first.json()
    assert retried.json()["id"] == first.json()["id"]
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert GenerationJob.objects.count() == 1
    assert send_task.call_count == 1


@pytest.mark.django_db(transaction=True)
def test_with_an_idempotency_key_a_job_made_while_the_queue_is_down_is_a_201_and_kept(
    policy, trainer_client, monkeypatch
):
    """The answer is stored before the job is published (on commit), so it cannot be the 503
    a request without a key gets; the job is saved and queued for the outbox all the same."""
    monkeypatch.setattr(app, "send_task", mock.Mock(side_effect=BrokerDown("Connection refused")))
    payload = {"messages": PROMPT, "n": 1, "params": {"max_new_tokens": 8}}
    response = post_json(trainer_client, JOBS_URL, payload, idempotency_key="down-1")
    assert response.status_code == 201, response.json()
    job = GenerationJob.objects.get()
    assert job.status == GenerationJob.Status.QUEUED and job.published_at is None
    assert response.json()["id"] == job.pk


def test_the_job_page_stops_polling_while_its_job_waits_for_no_worker(
    policy, trainer, trainer_client
):
    """A job queued where no live worker serves its queue cannot change (a job waiting is never
    failed): its page stops asking every second, names the queue and offers "Check again".
    Before, it asked every second for as long as it stayed open."""
    job = _queued_job(trainer)
    url = reverse("sampler:job-detail", args=[job.pk])
    polls_only_while_work_can_move(
        trainer_client, url, job=job, element=f"job-{job.pk}", trigger='hx-trigger="every 1s"'
    )
