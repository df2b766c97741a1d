"""The vllm backend: vLLM's engine in this process, on the embedded model."""

import pytest

from sampler.generation.backends import GenerationRequest, backend_get, backends_clear
from sampler.generation.params import GenerationParams
from tests.vllm.conftest import MAX_MODEL_LEN

pytestmark = pytest.mark.vllm

PROMPT = [{"role": "user", "content": "hi! how was your weekend?"}]


@pytest.fixture(scope="module")
def engine(vllm_model_dir):
    backend = backend_get(
        backend="vllm",
        path=str(vllm_model_dir),
        options={"max_model_len": MAX_MODEL_LEN},
        device="cpu",
    )
    yield backend
    backends_clear()


def _request(seed, *, n=4, role="assistant", max_new_tokens=12, messages=PROMPT):
    return GenerationRequest(
        messages=messages,
        n=n,
        params=GenerationParams(max_new_tokens=max_new_tokens, temperature=1.0, top_p=0.95),
        seed=seed,
        role=role,
    )


def test_k_completions_with_counts_finish_reasons_and_raw_logprobs(engine):
    result = engine.generate(_request(5))
    assert result.logprob_kind == "raw"
    assert len(result.completions) == 4
    for completion in result.completions:
        assert 1 <= completion.token_count <= 12
        assert completion.finish_reason in {"end_of_turn", "length"}
        assert completion.finished or completion.token_count == 12
        assert completion.logprob_sum is not None and completion.logprob_sum < 0


def test_the_seed_makes_it_reproducible_and_another_seed_differs(engine):
    texts = lambda result: [c.text for c in result.completions]  # noqa: E731
    first, again = engine.generate(_request(11)), engine.generate(_request(11))
    other = engine.generate(_request(12))
    assert texts(first) == texts(again)
    assert texts(first) != texts(other)


def test_user_turns_and_several_jobs_in_one_call(engine):
    results = engine.generate_many(
        [_request(1, n=2), _request(2, n=3, role="user"), _request(3, n=1)]
    )
    assert [len(result.completions) for result in results] == [2, 3, 1]
    # The same job alone gives what it gave in the batch (its own seed, its own draws).
    alone = engine.generate(_request(1, n=2))
    assert [c.text for c in alone.completions] == [c.text for c in results[0].completions]


def test_a_long_prefix_is_cut_to_fit_with_a_note(engine):
    long = [
        {"role": "user" if turn % 2 == 0 else "assistant", "content": "word " * 40}
        for turn in range(9)
    ]
    result = engine.generate(_request(1, n=1, messages=long, max_new_tokens=32))
    assert any("truncated" in note for note in result.notes)
    assert len(result.completions) == 1


def test_a_vllm_version_runs_a_generation_job(engine, db, vllm_model_dir):
    from sampler.generation import services
    from sampler.registry.services import model_version_register

    version = model_version_register(
        name="engine",
        path=str(vllm_model_dir),
        backend="vllm",
        backend_options={"max_model_len": MAX_MODEL_LEN},
    )
    job = services.generation_job_create(
        messages=PROMPT, n=3, params={"max_new_tokens": 10}, seed=4, model_version=version,
        queue=False,
    )  # fmt: skip
    job = services.generation_job_run_inline(job_id=job.pk)
    assert job.status == "succeeded", job.error
    samples = list(job.samples.order_by("index"))
    assert len(samples) == 3 and {s.logprob_kind for s in samples} == {"raw"}


@pytest.mark.django_db(transaction=True)
def test_a_vllm_version_serves_jobs_in_a_real_celery_worker(celery_worker, trainer, vllm_model_dir):
    from sampler.generation import services
    from sampler.generation.models import GenerationJob
    from sampler.registry.services import model_version_register
    from tests.conftest import wait_until

    version = model_version_register(
        name="engine-in-worker",
        path=str(vllm_model_dir),
        backend="vllm",
        backend_options={"max_model_len": MAX_MODEL_LEN},
    )
    jobs = [
        services.generation_job_create(
            messages=PROMPT,
            n=2,
            params={"max_new_tokens": 8},
            seed=seed,
            model_version=version,
            requested_by=trainer,
        )
        for seed in (1, 2)
    ]
    for job in jobs:
        done = wait_until(
            lambda job=job: GenerationJob.objects.filter(
                pk=job.pk, status__in=["succeeded", "failed"]
            ).first()
        )
        assert done.status == "succeeded", done.error
        assert [s.logprob_kind for s in done.samples.all()] == ["raw", "raw"]
    # One worker process served both (the engine built once in it).
    assert len({GenerationJob.objects.get(pk=job.pk).worker for job in jobs}) == 1
