"""Generation backends: options checked per backend, the transformers backend's batches, the
openai backend against a server that is down (a real refused connection) and against a real
chat-completions server of this test's own, and the executor putting such a job back in its
queue until its attempts are spent or giving each job of a batch its own outcome."""

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from django.utils import timezone

from config.celery import app
from sampler.generation import services
from sampler.generation.backends import (
    BackendError,
    BackendUnavailable,
    GenerationRequest,
    backend_get,
    validate_options,
)
from sampler.generation.models import GenerationJob, Sample
from sampler.generation.params import GenerationParams
from sampler.jobs.kinds import job_kind_named
from sampler.jobs.models import INTERNAL_ERROR_MESSAGE
from sampler.jobs.services import job_execute
from sampler.registry.services import model_version_register
from tests.conftest import free_port

pytestmark = pytest.mark.usefixtures("fresh_backends")

PROMPT = [{"role": "user", "content": "hi! how was your weekend?"}]


@pytest.mark.parametrize(
    ("backend", "options", "field"),
    [
        ("transformers", {"model": "x"}, "model"),
        ("vllm", {"max_model_len": "256"}, "max_model_len"),
        ("vllm", {"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ("vllm", {"trust_remote_code": True}, "trust_remote_code"),
        ("vllm", {"dtype": "int3"}, "dtype"),
        ("openai", {"model": "m"}, "base_url"),
        ("openai", {"base_url": "http://server:8000/v1"}, "model"),
        ("openai", {"base_url": "ftp://server/v1", "model": "m"}, "base_url"),
        # Credentials in the URL are a secret kept in the database and shown in job errors.
        ("openai", {"base_url": "https://user:sk-secret@s/v1", "model": "m"}, "base_url"),
        ("openai", {"base_url": "https://sk-secret@s/v1", "model": "m"}, "base_url"),
        ("openai", {"base_url": "http://s/v1", "model": "m", "api_key_env": "sk-a"}, "api_key_env"),
        ("openai", {"base_url": "http://s/v1", "model": "m", "api_key_env": "a b"}, "api_key_env"),
        ("openai", {"base_url": "http://s/v1", "model": "m", "api_key_env": "K\n"}, "api_key_env"),
        ("openai", {"base_url": "http://s/v1", "model": "m", "api_key": "secret"}, "api_key"),
        # The app's own secrets are never a model server's key (the worker would send them).
        ("openai", {"base_url": "http://s/v1", "model": "m", "api_key_env": "SECRET_KEY"},
         "api_key_env"),
        ("openai", {"base_url": "http://s/v1", "model": "m", "api_key_env": "DATABASE_URL"},
         "api_key_env"),
        # The deployment's own secrets, which every container gets from .env.
        ("openai", {"base_url": "http://s/v1", "model": "m", "api_key_env": "POSTGRES_PASSWORD"},
         "api_key_env"),
        ("openai", {"base_url": "http://s/v1", "model": "m",
                    "api_key_env": "EXPORT_PSEUDONYM_KEY"}, "api_key_env"),
        ("openai", {"base_url": "http://s/v1", "model": "m", "max_retries": True}, "max_retries"),
        ("openai", {"base_url": "http://s/v1", "model": "m", "timeout": 0}, "timeout"),
    ],
)  # fmt: skip
def test_bad_backend_options_are_named_with_what_they_must_be(backend, options, field):
    assert field in validate_options(backend, options)


def test_good_backend_options_pass():
    assert validate_options("transformers", {}) == {}
    assert validate_options("vllm", {"max_model_len": 256, "dtype": "float32"}) == {}
    assert (
        validate_options(
            "openai",
            {
                "base_url": "https://api.example.org/v1",
                "model": "m",
                "api_key_env": "SERVER_API_KEY",
                "timeout": 30,
                "max_retries": 2,
                "logprobs": False,
                "supports_n": False,
                "extra_sampling_params": True,
            },
        )
        == {}
    )


KEY_MESSAGE = "looks like a key: give the name of the environment variable that holds it"


@pytest.mark.parametrize(
    "name", ["HF_TOKEN", "HF_API_KEY", "SK_SERVER_API_KEY", "OPENAI_API_KEY", "VLLM_API_TOKEN"]
)
def test_variable_names_that_start_like_a_key_are_names(name):
    options = {"base_url": "http://s/v1", "model": "m", "api_key_env": name}
    assert validate_options("openai", options) == {}


@pytest.mark.parametrize(
    "key", ["sk-proj-Abc123", "sk_live_abc", "hf_AbCdEf123", "hf_abc", "Bearer abc", "bearer x"]
)
def test_a_key_given_where_its_variables_name_belongs_is_refused_as_a_key(key):
    options = {"base_url": "http://s/v1", "model": "m", "api_key_env": key}
    assert validate_options("openai", options) == {"api_key_env": KEY_MESSAGE}


def _no_key_variable(name: str) -> str:
    return (
        f"{name} is not a model server's key variable: name one ending in _API_KEY or "
        "_API_TOKEN, HF_TOKEN, or one listed in MODEL_API_KEY_ENVS"
    )


@pytest.mark.parametrize(
    "name",
    ["PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "REDIS_PASSWORD", "GITHUB_TOKEN", "SERVER_KEY", "PATH"],
)
def test_a_variable_that_names_no_model_servers_key_is_refused_saying_which_are_taken(name):
    """The worker sends the variable's value to base_url: a staff user who named another of
    the server's secrets there had it sent to a server of their choosing."""
    options = {"base_url": "http://s/v1", "model": "m", "api_key_env": name}
    assert validate_options("openai", options) == {"api_key_env": _no_key_variable(name)}


def test_a_variable_listed_in_model_api_key_envs_is_taken_unless_it_is_tandems_own(settings):
    settings.MODEL_API_KEY_ENVS = ["SERVER_KEY", "SECRET_KEY"]
    options = {"base_url": "http://s/v1", "model": "m", "api_key_env": "SERVER_KEY"}
    assert validate_options("openai", options) == {}
    own = validate_options("openai", options | {"api_key_env": "SECRET_KEY"})
    assert "one of Tandem's own settings" in own["api_key_env"]


def _request(seed, *, messages=PROMPT, n=3):
    return GenerationRequest(
        messages=messages, n=n, params=GenerationParams(max_new_tokens=10), seed=seed
    )


def test_transformers_batches_jobs_each_with_its_own_seed_and_count(micro_model_dir):
    backend = backend_get(backend="transformers", path=str(micro_model_dir), device="cpu")
    longer = [*PROMPT, {"role": "assistant", "content": "good"}, {"role": "user", "content": "ok"}]
    requests = [_request(1), _request(2, messages=longer, n=2), _request(1, n=4)]
    first = backend.generate_many(requests)
    again = backend.generate_many(requests)
    assert [len(result.completions) for result in first] == [3, 2, 4]
    texts = [[c.text for c in result.completions] for result in first]
    assert texts == [[c.text for c in result.completions] for result in again]
    for result in first:
        assert result.logprob_kind == "sampling"
        for completion in result.completions:
            assert 1 <= completion.token_count <= 10
            assert completion.logprob_sum < 0
            assert completion.finish_reason in {"end_of_turn", "length"}
            assert completion.finished or completion.token_count == 10
    # The solo path gives a job its completions too (same interface, one prefix).
    solo = backend.generate(_request(1))
    assert len(solo.completions) == 3 and solo.logprob_kind == "sampling"


def test_openai_backend_says_a_server_that_is_down_is_unavailable():
    port = free_port()  # nothing listens there: a real refused connection
    backend = backend_get(
        backend="openai",
        path="",
        options={"base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "max_retries": 0},
    )
    with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{port}"):
        backend.generate(_request(1))


@pytest.mark.parametrize(
    ("variable", "value", "refusal"),
    [
        ("TANDEM_TEST_API_KEY", None, "TANDEM_TEST_API_KEY"),
        # One of the app's own settings, saved before that was refused: never sent anywhere.
        ("SECRET_KEY", "s" * 50, "one of Tandem's own settings"),
        # Another of the server's secrets, saved before such names were refused.
        ("AWS_SECRET_ACCESS_KEY", "a" * 40, "AWS_SECRET_ACCESS_KEY is not a model server's key"),
    ],
)
def test_openai_backend_refuses_a_key_variable_it_cannot_send(
    monkeypatch, variable, value, refusal
):
    if value is None:
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, value)
    with pytest.raises(BackendError, match=refusal):
        backend_get(
            backend="openai",
            path="",
            options={"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": variable},
        )
    if value is None:
        assert variable not in os.environ


class RecordingBroker:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send_task(self, name, args=(), queue=None, **options):
        self.sent.append({"args": tuple(args), "queue": queue, **options})


def test_a_job_whose_server_is_down_is_queued_again_then_fails_with_the_reason(
    db, trainer, monkeypatch, django_capture_on_commit_callbacks
):
    broker = RecordingBroker()
    monkeypatch.setattr(app, "send_task", broker.send_task)
    budget = job_kind_named("generation").max_attempts
    port = free_port()
    version = model_version_register(
        name="down",
        path="",
        backend="openai",
        backend_options={"base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "max_retries": 0},
        context_length=256,
    )
    with django_capture_on_commit_callbacks(execute=True):
        job = services.generation_job_create(
            messages=PROMPT, n=2, seed=3, model_version=version, requested_by=trainer
        )
    for attempt in range(1, budget + 1):
        token = broker.sent[-1]["args"][2]
        with django_capture_on_commit_callbacks(execute=True):
            job_execute(kind_name="generation", job_id=job.pk, token=token)
        job.refresh_from_db()
        if attempt < budget:
            # Back in its queue, published again with a growing delay, the reason kept.
            assert job.status == GenerationJob.Status.QUEUED and job.attempts == attempt
            assert f"127.0.0.1:{port}" in job.error
            delay = services.BACKEND_RETRY_DELAY * 2 ** (attempt - 1)
            assert broker.sent[-1]["countdown"] == delay
    assert job.status == GenerationJob.Status.FAILED
    assert f"127.0.0.1:{port}" in job.error and f"Gave up after {budget} attempts" in job.error
    assert not Sample.objects.filter(job=job).exists()


def test_an_openai_version_cannot_write_user_turns_and_needs_a_context_length(db, trainer):
    from django.core.exceptions import ValidationError

    options = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    with pytest.raises(ValidationError) as error:
        model_version_register(name="x", path="", backend="openai", backend_options=options)
    assert "context_length" in error.value.message_dict
    version = model_version_register(
        name="x", path="", backend="openai", backend_options=options, context_length=64
    )
    with pytest.raises(ValidationError) as error:
        services.generation_job_create(
            messages=PROMPT, n=1, role="user", model_version=version, queue=False
        )
    assert "role" in error.value.message_dict
    # The recorded context is what the room check uses: 60 new tokens leave no room in 64.
    with pytest.raises(ValidationError) as error:
        services.generation_job_create(
            messages=PROMPT, n=1, params={"max_new_tokens": 60}, model_version=version, queue=False
        )
    assert "max_new_tokens" in error.value.message_dict
    assert GenerationJob.objects.count() == 0


def test_jobs_waiting_together_for_a_version_are_sampled_in_one_call_and_stored_once(
    policy, trainer, monkeypatch, django_capture_on_commit_callbacks
):
    broker = RecordingBroker()
    monkeypatch.setattr(app, "send_task", broker.send_task)
    with django_capture_on_commit_callbacks(execute=True):
        jobs = [
            services.generation_job_create(
                messages=PROMPT, n=2, seed=seed, params={"max_new_tokens": 8}, requested_by=trainer
            )
            for seed in (1, 2, 3)
        ]
    tokens = {message["args"][1]: message["args"][2] for message in broker.sent}
    calls = []
    from sampler.generation.backends.huggingface import TransformersBackend

    original = TransformersBackend.generate_many
    monkeypatch.setattr(
        TransformersBackend,
        "generate_many",
        lambda self, requests: calls.append(len(requests)) or original(self, requests),
    )
    job_execute(kind_name="generation", job_id=jobs[0].pk, token=tokens[jobs[0].pk])
    assert calls == [3]
    for job in jobs:
        job.refresh_from_db()
        assert job.status == GenerationJob.Status.SUCCEEDED and job.attempts == 1
        assert job.samples.count() == 2
    # Their own messages arrive later and do nothing.
    for job in jobs[1:]:
        assert job_execute(kind_name="generation", job_id=job.pk, token=tokens[job.pk]) is None
    assert Sample.objects.filter(job__in=jobs).count() == 6
    assert timezone.now() >= jobs[0].finished_at


def test_the_openai_prefix_keeps_its_system_message_and_drops_the_oldest_doubling():
    from sampler.generation.backends.openai_api import _Prefix, _too_long

    system = {"role": "system", "content": "s"}
    turns = [{"role": "user", "content": str(index)} for index in range(6)]
    prefix = _Prefix([system, *turns])
    assert prefix.sent == [system, *turns]
    dropped = []
    while prefix.drop_more():
        dropped.append(prefix.dropped)
        assert prefix.sent == [system, *turns[prefix.dropped :]]
    assert dropped == [1, 2, 4, 5]  # one message is always left
    assert _Prefix([{"role": "user", "content": "only"}]).drop_more() is False
    assert _too_long(400, "This model's maximum context length is 256 tokens. However, ...")
    assert not _too_long(400, "Unknown model 'x'") and not _too_long(500, "context length")


def _run_here(name: str, options: dict, caplog) -> tuple[GenerationJob, list]:
    """A one-reply job of an ``openai`` version with ``options``, run in this process (as
    ``manage.py generate`` does); the job and what the executor logged."""
    version = model_version_register(
        name=name, path="", backend="openai", backend_options=options, context_length=256
    )
    return _run_job_of(version, caplog)


def _run_job_of(version, caplog) -> tuple[GenerationJob, list]:
    """A one-reply job of ``version``, run in this process; the job and what was logged."""
    import logging

    from sampler.jobs.services import job_run_inline

    job = services.generation_job_create(
        messages=[{"role": "user", "content": "hi"}], n=1, model_version=version, queue=False
    )
    with caplog.at_level(logging.INFO, logger="sampler.jobs.services"):
        job = job_run_inline(job=job)
    return job, [record for record in caplog.records if record.name == "sampler.jobs.services"]


def test_a_job_run_here_against_a_server_that_is_down_fails_once_saying_so(policy, caplog):
    """Run from no queue, nothing tries it again: the log does not say it will be, and the
    error is the server's, logged as one line without a traceback."""
    port = free_port()  # nothing listens there
    options = {"base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "max_retries": 0}
    job, logged = _run_here("down-here", options, caplog)
    assert job.status == GenerationJob.Status.FAILED
    assert f"127.0.0.1:{port}" in job.error and "Gave up after" not in job.error
    assert [record.levelname for record in logged] == ["ERROR"]
    assert "tried again" not in logged[0].getMessage() and logged[0].exc_info is None


def test_a_failure_the_job_explains_is_logged_as_its_message_without_a_traceback(
    policy, caplog, monkeypatch
):
    monkeypatch.delenv("TANDEM_TEST_API_KEY", raising=False)
    options = {
        "base_url": "http://127.0.0.1:9/v1",
        "model": "m",
        "api_key_env": "TANDEM_TEST_API_KEY",
    }
    job, logged = _run_here("no-key", options, caplog)
    assert job.status == GenerationJob.Status.FAILED and "TANDEM_TEST_API_KEY" in job.error
    assert [record.levelname for record in logged] == ["ERROR"]
    assert "TANDEM_TEST_API_KEY" in logged[0].getMessage() and logged[0].exc_info is None


def test_transformers_batch_with_a_refused_request_gives_the_others_their_results(
    micro_model_dir,
):
    """One request the engine refuses (no room for a prompt in the micro model's 256-token
    context) spoils the batched pass: each request is then sampled alone, and only it fails."""
    backend = backend_get(backend="transformers", path=str(micro_model_dir), device="cpu")
    refused = GenerationRequest(
        messages=PROMPT, n=1, params=GenerationParams(max_new_tokens=250), seed=1
    )
    outcomes = backend.generate_many([_request(1, n=2), refused, _request(2, n=1)])
    assert [len(outcome.completions) for outcome in (outcomes[0], outcomes[2])] == [2, 1]
    assert isinstance(outcomes[1], BackendError) and "no room for a prompt" in str(outcomes[1])
    # Refused for what it asks: sent again as it is, it is refused again.
    from sampler.generation.backends import RequestRefused

    assert isinstance(outcomes[1], RequestRefused)


def test_a_model_folder_the_engine_cannot_serve_is_the_versions_fault_not_a_refusal(
    micro_model_dir, tmp_path
):
    """Loading runs before the request is looked at: a folder with no chat template is mended
    by an admin, and a red-team retry sends the attacks it failed again."""
    import shutil

    from sampler.generation.backends import RequestRefused

    folder = tmp_path / "no-template"
    shutil.copytree(micro_model_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    backend = backend_get(backend="transformers", path=str(folder), device="cpu")
    for call in (
        lambda: backend.generate(_request(1)),
        lambda: backend.generate_many([_request(1)])[0],
    ):
        try:
            outcome = call()
        except BackendError as error:
            outcome = error
        assert isinstance(outcome, BackendError) and "no chat template" in str(outcome)
        assert not isinstance(outcome, RequestRefused)


def test_a_model_that_runs_out_of_memory_as_it_loads_fails_each_request_saying_so(
    micro_model_dir, monkeypatch
):
    """Weights that do not fit the accelerator: each request fails with that reason, as when
    a pass runs out of memory, not with the engine's traceback."""
    import weakref

    import torch

    from sampler.generation import sampling

    class Weights:
        """What a load had read when it ran out of memory."""

    loads: list[weakref.ref] = []

    def load_model(path, *, device="auto"):
        weights = Weights()
        loads.append(weakref.ref(weights))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(sampling, "load_model", load_model)
    sampling.model_cache.clear()
    backend = backend_get(backend="transformers", path=str(micro_model_dir), device="cpu")
    with pytest.raises(BackendError, match=r"ran out of accelerator memory \(CUDA out of memory"):
        backend.generate(_request(1))
    outcomes = backend.generate_many([_request(1), _request(2), _request(3)])
    assert all(
        isinstance(outcome, BackendError) and "ran out of accelerator memory" in str(outcome)
        for outcome in outcomes
    )
    # Loaded once for the three requests, and nothing of a failed load is held by its error.
    assert len(loads) == 2 and all(load() is None for load in loads)


# What the chat server below answers, by the last user turn it is sent.
TOO_LONG = "x" * 2000
UNSTORABLE_REPLY = "reply with a NUL and a lone surrogate"
ABSURD_COUNT = "reply with an absurd token count"
REFUSED_WITH_NUL = "refuse with a NUL in the reason"
BUSY = "answer as a server too busy to take it"
NOT_SERVED = "answer as a server that serves no such model"
TIMED_OUT = "answer as a server that timed out waiting for the request"
LOCKED = "answer as a server whose resource is held by another request"
# TGI's refusal of a request past its tokens, as TGI words it: 422, {"error": "<text>"}.
TGI_LIMIT = 1000
TGI_TOO_LONG = (
    "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 5000 "
    "`inputs` tokens and 8 `max_new_tokens`"
)


class ChatServer(BaseHTTPRequestHandler):
    """A chat-completions server as vLLM's answers: a prompt past its context is a 400 that
    says so; otherwise ``n`` replies with log-probabilities, or what the prompt asks for."""

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # Every request's body, in order (the tests that read it run one server each).
    received: list[dict] = []

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append(request)
        prompt = request["messages"][-1]["content"]
        if self.path.startswith("/tgi/"):
            sent = sum(len(message["content"]) for message in request["messages"])
            if sent > TGI_LIMIT:
                self._answer(422, {"error": TGI_TOO_LONG, "error_type": "validation"})
                return
        if prompt == BUSY:
            self._answer(503, {"error": {"message": "overloaded, try later", "code": 503}})
            return
        if prompt in (TIMED_OUT, LOCKED):
            status = 408 if prompt == TIMED_OUT else 409
            self._answer(status, {"error": {"message": "try again", "code": status}})
            return
        if prompt == NOT_SERVED:
            self._answer(404, {"error": {"message": "The model does not exist.", "code": 404}})
            return
        if prompt == REFUSED_WITH_NUL:
            self._answer(400, {"error": {"message": "cannot\x00 do that", "code": 400}})
            return
        if len(prompt) > 1000:
            message = (
                "This model's maximum context length is 4096 tokens. However, you requested "
                "9000 tokens."
            )
            self._answer(
                400, {"error": {"message": message, "type": "BadRequestError", "code": 400}}
            )
            return
        text = "bad\x00text\ud800" if prompt == UNSTORABLE_REPLY else "reply"
        # Log-probabilities when asked for, except for ABSURD_COUNT (its count is the usage's).
        with_logprobs = request.get("logprobs") and prompt != ABSURD_COUNT
        logprobs = {"content": [{"token": "r", "logprob": -0.5, "bytes": None, "top_logprobs": []}]}
        choices = [
            {
                "index": index,
                "message": {"role": "assistant", "content": f"{text} {index}"},
                "finish_reason": "stop",
                "logprobs": logprobs if with_logprobs else None,
            }
            for index in range(request.get("n", 1))
        ]
        tokens = 2**64 if prompt == ABSURD_COUNT else len(choices)
        usage = {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}
        self._answer(
            200,
            {"id": "x", "object": "chat.completion", "created": 0, "model": request["model"],
             "choices": choices, "usage": usage},
        )  # fmt: skip


@pytest.fixture
def chat_server() -> Iterator[ThreadingHTTPServer]:
    """A ``ChatServer`` this test runs (its requests in ``RequestHandlerClass.received``)."""
    handler = type("RecordingChatServer", (ChatServer,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _served(server: ThreadingHTTPServer, name: str, *, prefix: str = "v1", **options):
    return _openai_version(name, f"http://127.0.0.1:{server.server_port}/{prefix}", **options)


def _openai_version(name: str, base_url: str, **options):
    return model_version_register(
        name=name,
        path="",
        backend="openai",
        context_length=4096,
        backend_options={"base_url": base_url, "model": "policy", "max_retries": 0, **options},
    )


@pytest.fixture
def chat_server_version(db, chat_server):
    """An ``openai`` version served by a ``ChatServer`` this test runs."""
    return _served(chat_server, "served")


def test_without_logprobs_k_replies_are_k_requests_of_one(db, chat_server, fresh_backends):
    """A reply's length then comes from the usage, which sums a request's replies: asking for
    n first would be answered, thrown away and asked again one by one."""
    backend = services._backend(_served(chat_server, "no-logprobs", logprobs=False))
    three = backend.generate(_request(1, n=3))
    assert [c.text for c in three.completions] == ["reply 0"] * 3
    assert all(c.token_count == 1 and c.logprob_sum is None for c in three.completions)
    assert [body["n"] for body in chat_server.RequestHandlerClass.received] == [1, 1, 1]
    assert three.notes == []


def test_tgis_refusal_of_a_long_prefix_is_read_and_the_prefix_cut_from_the_left(
    db, chat_server, fresh_backends
):
    """TGI says a request is too long in its own words, as a bare string in ``error``: read as
    such, the oldest messages are dropped until it fits (a system message stays)."""
    backend = services._backend(_served(chat_server, "tgi", prefix="tgi/v1"))
    turns = [{"role": "system", "content": "be brief"}]
    for index in range(6):
        turns += [
            {"role": "user", "content": f"question {index} " + "q" * 200},
            {"role": "assistant", "content": "a" * 100},
        ]
    turns.append({"role": "user", "content": "last?"})
    result = backend.generate(
        GenerationRequest(messages=turns, n=1, params=GenerationParams(max_new_tokens=8), seed=1)
    )
    assert [c.text for c in result.completions] == ["reply 0"]
    assert result.notes[0].startswith("Prefix truncated from the left: dropped the ")
    sent = chat_server.RequestHandlerClass.received[-1]["messages"]
    assert sent[0] == turns[0] and sent[-1] == turns[-1]
    assert sum(len(message["content"]) for message in sent) <= TGI_LIMIT
    # Nothing left to drop: the job fails with TGI's own words, not "Error code: 422".
    alone = [{"role": "user", "content": "y" * (TGI_LIMIT + 1)}]
    with pytest.raises(BackendError, match="must be <= 4096"):
        backend.generate(GenerationRequest(messages=alone, n=1, params=GenerationParams(), seed=1))


@pytest.fixture
def run_batch(chat_server_version, trainer, monkeypatch, django_capture_on_commit_callbacks):
    """Runs one job (n=1) of ``chat_server_version`` per prompt, queued together: the first
    one's message runs them all in one batch. Gives the jobs back, as they ended.
    ``run_batch.again(jobs)`` runs the first job's latest message (its newest publication)."""
    return _batch_runner(
        chat_server_version, trainer, monkeypatch, django_capture_on_commit_callbacks
    )


def _batch_runner(version, trainer, monkeypatch, django_capture_on_commit_callbacks):
    broker = RecordingBroker()
    monkeypatch.setattr(app, "send_task", broker.send_task)

    def again(jobs: list[GenerationJob]) -> list[GenerationJob]:
        lead = jobs[0].pk
        token = [message["args"][2] for message in broker.sent if message["args"][1] == lead][-1]
        with django_capture_on_commit_callbacks(execute=True):
            job_execute(kind_name="generation", job_id=lead, token=token)
        for job in jobs:
            job.refresh_from_db()
        return jobs

    def run(prompts: list[str]) -> list[GenerationJob]:
        with django_capture_on_commit_callbacks(execute=True):
            jobs = [
                services.generation_job_create(
                    messages=[{"role": "user", "content": prompt}],
                    n=1,
                    seed=1,
                    params={"max_new_tokens": 8},
                    model_version=version,
                    requested_by=trainer,
                )
                for prompt in prompts
            ]
        return again(jobs)

    run.again = again
    run.broker = broker
    return run


def test_a_request_the_server_refuses_fails_only_its_own_job_in_a_batch(run_batch):
    first, refused, last = run_batch(["hello", TOO_LONG, "how are you?"])
    for job in (first, last):
        assert job.status == GenerationJob.Status.SUCCEEDED and job.error == ""
        assert [sample.text for sample in job.samples.all()] == ["reply 0"]
    # Failed with its own reason, its attempt counted: it does not come back to spoil another.
    assert refused.status == GenerationJob.Status.FAILED and refused.attempts == 1
    assert "maximum context length" in refused.error and not refused.samples.exists()


def test_a_request_refused_for_what_it_asks_is_told_from_one_its_server_cannot_serve(chat_server):
    """A prompt past the model's context with nothing left to cut is refused again as it is
    (``RequestRefused``). Any other 400 (a server answers it for a key or options it will not
    take, or its own error preparing a prompt) and a model the server does not serve (404) may
    be its configuration's doing, which an admin may change: ``BackendError``s that are no
    refusal of the request."""
    from sampler.generation.backends import RequestRefused

    base_url = f"http://127.0.0.1:{chat_server.server_port}/v1"
    backend = backend_get(
        backend="openai", path="", options={"base_url": base_url, "model": "m", "max_retries": 0}
    )

    def generate(prompt: str):
        return backend.generate(_request(1, messages=[{"role": "user", "content": prompt}], n=1))

    with pytest.raises(RequestRefused, match="maximum context length"):
        generate(TOO_LONG)
    for prompt, status in ((REFUSED_WITH_NUL, 400), (NOT_SERVED, 404)):
        with pytest.raises(BackendError, match=f"HTTP {status}") as refused:
            generate(prompt)
        assert not isinstance(refused.value, RequestRefused)
    # The answers the client itself retries as passing (a request timed out, a conflict) are
    # the server's state past its retries, not the request's fault: the job is queued again.
    for prompt, status in ((TIMED_OUT, 408), (LOCKED, 409)):
        with pytest.raises(BackendUnavailable, match=f"HTTP {status}"):
            generate(prompt)


def test_a_job_run_inside_another_raises_its_refusal_once_recorded(chat_server_version):
    """``raise_refused``: a job whose request is refused for what it asks fails with the
    reason, then raises ``JobRefused`` for the job running it; one that failed otherwise (the
    model not served) is only recorded, as before."""
    from sampler.jobs.services import JobRefused

    def job_of(prompt: str) -> GenerationJob:
        return services.generation_job_create(
            messages=[{"role": "user", "content": prompt}],
            n=1,
            params={"max_new_tokens": 8},
            model_version=chat_server_version,
            queue=False,
        )

    refused = job_of(TOO_LONG)
    with pytest.raises(JobRefused, match="maximum context length"):
        services.generation_job_run_inline(job_id=refused.pk, raise_refused=True)
    refused.refresh_from_db()
    assert refused.status == GenerationJob.Status.FAILED
    assert "maximum context length" in refused.error
    not_served = job_of(NOT_SERVED)
    not_served = services.generation_job_run_inline(job_id=not_served.pk, raise_refused=True)
    assert not_served.status == GenerationJob.Status.FAILED and "HTTP 404" in not_served.error


def test_a_partner_that_cannot_be_stored_fails_alone_and_the_others_are_stored(run_batch):
    """A server's token count past what the table holds (SQLite: OverflowError, PostgreSQL:
    DataError): that job fails saying so; the job whose message ran the batch and the partner
    after it are stored, none is left running."""
    first, absurd, last = run_batch(["hello", ABSURD_COUNT, "how are you?"])
    for job in (first, last):
        assert job.status == GenerationJob.Status.SUCCEEDED and job.error == ""
        assert job.samples.count() == 1
    assert absurd.status == GenerationJob.Status.FAILED and absurd.attempts == 1
    assert absurd.error.split(":")[0] in {"OverflowError", "DataError"}
    # Trainers read a plain sentence, not the exception and where it was raised.
    assert absurd.error_public == INTERNAL_ERROR_MESSAGE
    assert not absurd.samples.exists()


def test_a_time_limit_met_storing_a_partner_stops_the_batch_and_hands_the_partners_back(
    run_batch, monkeypatch
):
    """The worker's time limit is the job's whose message ran the batch: met while a partner's
    replies are stored (the content filter scoring them), it fails that job with the time
    limit, as met anywhere else, and the partners go back to their queue uncounted, none
    stored. Before, the partner was failed with the time limit and the batch went on past it."""
    from celery.exceptions import SoftTimeLimitExceeded

    moderate = services.samples_moderate
    calls = []

    def out_of_time(**kwargs):
        # The first store is a partner's (the lead's comes last); the limit is met once.
        calls.append(kwargs)
        if len(calls) == 1:
            raise SoftTimeLimitExceeded()
        return moderate(**kwargs)

    monkeypatch.setattr(services, "samples_moderate", out_of_time)
    lead, *partners = run_batch(["hello", "how are you?", "and you?"])
    assert (lead.status, lead.attempts) == (GenerationJob.Status.FAILED, 1)
    assert lead.error == "It ran past its time limit and was stopped."
    assert [(job.status, job.attempts) for job in partners] == [
        (GenerationJob.Status.QUEUED, 0)
    ] * 2
    assert not Sample.objects.exists() and len(calls) == 1


def test_a_reply_a_database_cannot_store_is_stored_made_storable_with_a_note(run_batch):
    """A NUL (which PostgreSQL refuses) and an unpaired surrogate (which UTF-8 cannot encode)
    in what the server wrote: replaced by U+FFFD, the job's notes say so, all three stored."""
    first, replaced, last = run_batch(["hello", UNSTORABLE_REPLY, "how are you?"])
    assert [job.status for job in (first, replaced, last)] == [GenerationJob.Status.SUCCEEDED] * 3
    assert [sample.text for sample in replaced.samples.all()] == ["bad\ufffdtext\ufffd 0"]
    assert "replaced by U+FFFD" in replaced.notes and "sample 0" in replaced.notes


def test_a_refusal_whose_reason_a_database_cannot_store_fails_the_job_with_it_made_storable(
    run_batch,
):
    """PostgreSQL refuses a NUL: the reason is kept with U+FFFD in its place, the job failed
    (not left running by a database error when failing it)."""
    first, refused = run_batch(["hello", REFUSED_WITH_NUL])
    assert first.status == GenerationJob.Status.SUCCEEDED
    assert refused.status == GenerationJob.Status.FAILED
    assert "cannot\ufffd do that" in refused.error and "\x00" not in refused.error


def test_transformers_batch_that_runs_out_of_memory_is_sampled_request_by_request(
    micro_model_dir, monkeypatch
):
    """A batch too large for the accelerator's memory (raised here as the GPU raises it: this
    machine has none) costs no job: each request is sampled alone. A request too large alone
    fails with the reason, not with a traceback that fails the jobs batched with it."""
    from sampler.generation.backends import huggingface

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")

    monkeypatch.setattr(huggingface, "sample_completions_many", out_of_memory)
    backend = backend_get(backend="transformers", path=str(micro_model_dir), device="cpu")
    outcomes = backend.generate_many([_request(1, n=2), _request(2, n=1)])
    assert [len(outcome.completions) for outcome in outcomes] == [2, 1]

    monkeypatch.setattr(huggingface, "sample_completions", out_of_memory)
    [alone] = backend.generate_many([_request(1, n=2)])
    assert isinstance(alone, BackendError)
    assert str(alone) == (
        "The model ran out of accelerator memory (CUDA out of memory. Tried to allocate 2.00 GiB)."
    )
    # Memory another pass held may be free on another try: not a refusal of the request.
    from sampler.generation.backends import RequestRefused

    assert not isinstance(alone, RequestRefused)


def test_a_batch_whose_model_cannot_be_loaded_fails_every_job_alike(
    db, micro_model_dir, tmp_path, trainer, monkeypatch, django_capture_on_commit_callbacks
):
    """The micro model's weights gone from its directory: the batched pass fails as a whole
    (an OSError, no refusal of one request). Every job of the batch fails with the same reason,
    its attempt counted, not the job whose message ran it alone while the others go back to
    their queue uncounted."""
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(micro_model_dir, moved)
    version = model_version_register(name="moved", path=str(moved))
    (moved / "model.safetensors").unlink()
    run = _batch_runner(version, trainer, monkeypatch, django_capture_on_commit_callbacks)
    jobs = run(["hello", "how are you?", "bye"])
    assert [(job.status, job.attempts) for job in jobs] == [(GenerationJob.Status.FAILED, 1)] * 3
    assert jobs[0].error.startswith("OSError: ")
    assert {job.error for job in jobs} == {jobs[0].error}
    assert not Sample.objects.filter(job__in=jobs).exists()


def test_a_request_the_server_fails_every_time_costs_its_own_job_alone(run_batch):
    """One request the server answers 503 every time (busy or failing, after the client's
    retries), batched between two others. The reply had before it is stored; the job after it,
    never sent, goes back to its queue at once with no attempt counted, and succeeds when its
    own message runs it. The refused one is queued again with its own delay and gives up once
    its attempts are spent. Before, the whole call failed: all three were charged every attempt
    and, queued again together, failed together."""
    budget = job_kind_named("generation").max_attempts
    first, busy, after = run_batch(["hello", BUSY, "how are you?"])
    assert (first.status, first.attempts) == (GenerationJob.Status.SUCCEEDED, 1)
    assert Sample.objects.filter(job=first).count() == 1
    assert (busy.status, busy.attempts) == (GenerationJob.Status.QUEUED, 1)
    assert "HTTP 503" in busy.error
    assert (after.status, after.attempts) == (GenerationJob.Status.QUEUED, 0)
    assert not Sample.objects.filter(job=after).exists()
    [handed_back] = [m for m in run_batch.broker.sent if m["args"][1] == after.pk][1:]
    assert not handed_back.get("countdown")  # published again at once

    # Its own message runs it first (the refused one is still waiting out its delay).
    run_batch.again([after, busy])
    assert (after.status, after.attempts) == (GenerationJob.Status.SUCCEEDED, 1)
    assert (busy.status, busy.attempts) == (GenerationJob.Status.QUEUED, 1)

    for attempt in range(2, budget + 1):
        _retry_delays_passed([busy])
        run_batch.again([busy])
        assert busy.attempts == attempt and "HTTP 503" in busy.error
        if attempt < budget:
            assert busy.status == GenerationJob.Status.QUEUED
            delay = services.BACKEND_RETRY_DELAY * 2 ** (attempt - 1)
            assert run_batch.broker.sent[-1]["countdown"] == delay
    assert busy.status == GenerationJob.Status.FAILED
    assert f"Gave up after {budget} attempts" in busy.error
    assert not Sample.objects.filter(job=busy).exists()


def test_a_server_down_for_a_whole_batch_charges_each_job_once_it_is_tried(
    db, trainer, monkeypatch, django_capture_on_commit_callbacks
):
    """No server answers: the job whose message runs the batch is tried, charged and queued
    again with its delay; the others, not sent, go back uncounted and are each charged when
    their own message tries them. No job is handed back without end."""
    version = _openai_version("nobody-home", f"http://127.0.0.1:{free_port()}/v1")
    run = _batch_runner(version, trainer, monkeypatch, django_capture_on_commit_callbacks)
    jobs = run(["one", "two", "three"])
    assert [(job.status, job.attempts) for job in jobs] == [
        (GenerationJob.Status.QUEUED, 1),
        (GenerationJob.Status.QUEUED, 0),
        (GenerationJob.Status.QUEUED, 0),
    ]
    run.again(jobs[1:])  # the second one's message: it is tried, the third handed back again
    assert [job.attempts for job in jobs] == [1, 1, 0]
    run.again(jobs[2:])
    assert [job.attempts for job in jobs] == [1, 1, 1]
    assert all(job.status == GenerationJob.Status.QUEUED for job in jobs)
    assert all("did not answer" in job.error for job in jobs)


def _retry_delays_passed(jobs: list[GenerationJob]) -> None:
    """As if the jobs' retry delays had passed (their messages' countdowns did)."""
    from datetime import timedelta

    from django.utils import timezone

    GenerationJob.objects.filter(pk__in=[job.pk for job in jobs]).update(
        queued_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_job_waiting_out_its_retry_delay_is_not_batched_before_it_is_due(run_batch):
    """Its backoff holds: another job's message does not take it along early, and the outbox
    does not publish it again while its own message waits out the countdown."""
    from sampler.jobs.services import jobs_tick

    jobs = run_batch([BUSY, "hello", "how are you?"])
    assert [(job.status, job.attempts) for job in jobs] == [
        (GenerationJob.Status.QUEUED, 1),
        (GenerationJob.Status.QUEUED, 0),
        (GenerationJob.Status.QUEUED, 0),
    ]
    assert jobs[0].queued_at > jobs[0].published_at  # queued from when its delay ends
    sent = len(run_batch.broker.sent)
    assert jobs_tick().republished == 0 and len(run_batch.broker.sent) == sent

    # The second one's message arrives: it takes the third along, not the one still waiting.
    run_batch.again(jobs[1:])
    assert [(job.status, job.attempts) for job in jobs] == [
        (GenerationJob.Status.QUEUED, 1),
        (GenerationJob.Status.SUCCEEDED, 1),
        (GenerationJob.Status.SUCCEEDED, 1),
    ]
    assert len(run_batch.broker.sent) == sent  # the third ran in the second's batch


def test_a_job_of_a_version_saved_naming_another_secret_fails_without_sending_it(
    policy, caplog, monkeypatch
):
    """A version saved before such names were refused: its jobs fail saying why, and the
    variable's value goes nowhere."""
    from sampler.registry.models import ModelVersion

    monkeypatch.setenv("PGPASSWORD", "database-password")
    options = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "SERVER_API_KEY"}
    monkeypatch.setenv("SERVER_API_KEY", "a-key")
    clients = []

    def client(**kwargs):
        clients.append(kwargs)
        raise AssertionError("a client was made with the variable's value")

    monkeypatch.setattr("openai.OpenAI", client)
    version = model_version_register(
        name="stored", path="", backend="openai", backend_options=options, context_length=256
    )
    ModelVersion.objects.filter(pk=version.pk).update(
        backend_options=options | {"api_key_env": "PGPASSWORD"}
    )
    job, _ = _run_job_of(version, caplog)
    assert job.status == GenerationJob.Status.FAILED
    assert _no_key_variable("PGPASSWORD") in job.error
    assert clients == []
