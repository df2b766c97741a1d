"""The openai backend against a real OpenAI-compatible server (vLLM's, started by the test on
the embedded model), and an openai-served version through a real generation job and worker."""

import json

import pytest

from sampler.generation.backends import (
    BackendError,
    BackendUnavailable,
    GenerationRequest,
    RequestRefused,
    backend_get,
    backends_clear,
)
from sampler.generation.params import GenerationParams
from tests.conftest import wait_until
from tests.vllm.conftest import MAX_MODEL_LEN, SERVED_NAME

pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("fresh_backends")]

PROMPT = [{"role": "user", "content": "hi! how was your weekend?"}]


def _backend(server, **options):
    return backend_get(
        backend="openai",
        path="",
        options={"base_url": server.base_url, "model": SERVED_NAME, **options},
    )


def _request(seed, *, n=4, max_new_tokens=12, **params):
    return GenerationRequest(
        messages=PROMPT,
        n=n,
        params=GenerationParams(max_new_tokens=max_new_tokens, **params),
        seed=seed,
    )


def test_n_completions_with_seed_logprobs_and_finish_reasons(vllm_server):
    backend = _backend(vllm_server)
    first = backend.generate(_request(7))
    assert first.logprob_kind == "endpoint" and first.notes == []
    assert len(first.completions) == 4
    for completion in first.completions:
        assert 1 <= completion.token_count <= 12
        assert completion.finished or completion.token_count == 12
        assert completion.logprob_sum is not None and completion.logprob_sum < 0
    again = backend.generate(_request(7))
    assert [c.text for c in again.completions] == [c.text for c in first.completions]
    assert [c.text for c in backend.generate(_request(8)).completions] != [
        c.text for c in first.completions
    ]


def test_one_request_per_reply_when_n_is_not_supported_and_none_without_logprobs(vllm_server):
    result = _backend(vllm_server, supports_n=False, logprobs=False).generate(_request(3, n=3))
    assert len(result.completions) == 3
    assert result.logprob_kind == "none"
    assert all(c.logprob_sum is None and c.token_count >= 1 for c in result.completions)


def test_top_k_is_sent_when_the_server_takes_it_and_noted_when_not(vllm_server):
    noted = _backend(vllm_server).generate(_request(3, n=1, top_k=5))
    assert any("top_k" in note for note in noted.notes)
    backends_clear()
    sent = _backend(vllm_server, extra_sampling_params=True).generate(_request(3, n=1, top_k=5))
    assert sent.notes == [] and len(sent.completions) == 1


def test_a_refused_request_is_a_clear_error_not_a_retry(vllm_server):
    backend = _backend(vllm_server)
    # More new tokens than the served context holds: the server answers 400.
    with pytest.raises(BackendError) as error:
        backend.generate(_request(1, n=1, max_new_tokens=MAX_MODEL_LEN + 50))
    # Failed at once with the server's reason, not queued again as a server that is down, and
    # told for what it asks (past the context: sent again, it is refused again).
    assert "HTTP 400" in str(error.value) and not isinstance(error.value, BackendUnavailable)
    assert isinstance(error.value, RequestRefused)


def test_a_prefix_longer_than_the_servers_context_is_cut_from_the_left_with_a_note(vllm_server):
    system = {"role": "system", "content": "You are a kind assistant."}
    turns = [
        {
            "role": "user" if index % 2 == 0 else "assistant",
            "content": f"turn {index}: " + "tell me more about the weather and the sea " * 4,
        }
        for index in range(13)
    ]
    request = GenerationRequest(
        messages=[system, *turns],
        n=2,
        params=GenerationParams(max_new_tokens=12),
        seed=5,
    )
    result = _backend(vllm_server).generate(request)
    assert len(result.completions) == 2
    note = result.notes[0]
    assert note.startswith("Prefix truncated from the left: dropped the ")
    dropped = int(note.split("dropped the ")[1].split(" ")[0])
    assert 1 <= dropped < 13 and "of 13 messages" in note
    # What was sent fits: the same cut prefix, asked directly, is answered.
    cut = GenerationRequest(messages=[system, *turns[dropped:]], n=1, params=request.params, seed=5)
    assert _backend(vllm_server).generate(cut).notes == []


@pytest.mark.django_db(transaction=True)
def test_an_openai_version_serves_a_trainers_job_through_a_real_worker(
    vllm_server, celery_worker, trainer, trainer_client
):
    from sampler.generation.models import GenerationJob
    from sampler.registry.services import model_version_promote, model_version_register

    version = model_version_register(
        name="served",
        path="",
        backend="openai",
        backend_options={"base_url": vllm_server.base_url, "model": SERVED_NAME},
        context_length=MAX_MODEL_LEN,
    )
    model_version_promote(version=version)
    response = trainer_client.post(
        "/api/generation-jobs/",
        json.dumps({"messages": PROMPT, "n": 3, "seed": 9, "params": {"max_new_tokens": 10}}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]
    done = wait_until(
        lambda: GenerationJob.objects.filter(pk=job_id, status__in=["succeeded", "failed"]).first()
    )
    assert done.status == "succeeded", done.error
    assert done.model_version == version
    samples = list(done.samples.order_by("index"))
    assert len(samples) == 3
    assert {s.logprob_kind for s in samples} == {"endpoint"}
    assert all(s.logprob_sum < 0 and s.token_count >= 1 for s in samples)
    # The same request straight to the server gives the same texts: the job used it.
    direct = _backend(vllm_server).generate(
        GenerationRequest(messages=PROMPT, n=3, params=GenerationParams(max_new_tokens=10), seed=9)
    )
    assert [c.text for c in direct.completions] == [s.text for s in samples]
