import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from labeling.models import Conversation, Message
from sampler.generation import services
from sampler.generation.models import GenerationJob, Sample
from sampler.generation.params import MIN_PROMPT_TOKENS, GenerationParams
from sampler.generation.sampling import model_cache
from sampler.management.commands.generate import Command as GenerateCommand
from sampler.registry.models import ModelVersion
from sampler.registry.services import model_version_promote, model_version_register
from tests.sampler.conftest import PROMPT, job_unqueued


def test_job_records_provenance_and_run_stores_n_samples(policy, trainer):
    job = job_unqueued(trainer, n=4)
    assert job.status == GenerationJob.Status.QUEUED
    assert job.model_version == policy
    assert job.params["max_new_tokens"] == 12 and job.seed == 1234
    assert job.prompt_messages == PROMPT

    job = services.generation_job_run_inline(job_id=job.pk)
    assert job.status == GenerationJob.Status.SUCCEEDED
    samples = list(job.samples.order_by("index"))
    assert [s.index for s in samples] == [0, 1, 2, 3]
    for sample in samples:
        assert 1 <= sample.token_count <= 12
        assert sample.finish_reason in {"end_of_turn", "length"}
        assert sample.logprob_sum < 0
        # A sample that hit the limit used every token it was allowed.
        if sample.finish_reason == "length":
            assert sample.token_count == 12


def test_same_seed_params_and_model_give_the_same_texts(policy, trainer):
    first = services.generation_job_run_inline(job_id=job_unqueued(trainer).pk)
    second = services.generation_job_run_inline(job_id=job_unqueued(trainer).pk)
    other_seed = services.generation_job_run_inline(job_id=job_unqueued(trainer, seed=99).pk)
    texts = lambda job: [s.text for s in job.samples.order_by("index")]  # noqa: E731
    assert texts(first) == texts(second)
    assert texts(first) != texts(other_seed)


def test_running_a_job_twice_stores_its_samples_once(policy, trainer):
    job = job_unqueued(trainer)
    services.generation_job_run_inline(job_id=job.pk)
    services.generation_job_run_inline(job_id=job.pk)
    assert Sample.objects.filter(job=job).count() == 3


def test_a_message_delivered_again_after_success_does_nothing(policy, trainer):
    from sampler.jobs.services import job_execute

    job = job_unqueued(trainer)
    job = services.generation_job_run_inline(job_id=job.pk)
    first = [sample.text for sample in job.samples.order_by("index")]
    assert job_execute(kind_name="generation", job_id=job.pk, token=job.publish_token) is None
    job.refresh_from_db()
    assert job.attempts == 1 and [s.text for s in job.samples.order_by("index")] == first


def test_database_refuses_duplicate_sample_index(policy, trainer):
    job = services.generation_job_run_inline(job_id=job_unqueued(trainer).pk)
    with pytest.raises(IntegrityError):
        Sample.objects.create(
            job=job, index=0, text="x", token_count=1, finish_reason="length", logprob_sum=-1
        )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"n": 0}, "n"),
        ({"n": 17}, "n"),
        ({"params": {"temperature": 0}}, "temperature"),
        ({"params": {"top_p": 1.5}}, "top_p"),
        ({"params": {"max_new_tokens": 100000}}, "max_new_tokens"),
        ({"params": {"beam_width": 3}}, "params"),
        ({"params": {"temperature": "hot"}}, "temperature"),
        # No coercion: a boolean is not a number, a float not an integer, a string neither.
        ({"params": {"temperature": True}}, "temperature"),
        ({"params": {"max_new_tokens": 1.9}}, "max_new_tokens"),
        ({"params": {"top_k": "3"}}, "top_k"),
        ({"n": "3"}, "n"),
        ({"n": True}, "n"),
        ({"seed": 1.0}, "seed"),
        ({"params": [1, 2]}, "params"),
        ({"messages": [{"role": "user", "content": 123}]}, "messages"),
        ({"seed": -1}, "seed"),
        ({"role": "system"}, "role"),
        # The micro model's context is 256 tokens: 250 new tokens leave no room for a prompt.
        ({"params": {"max_new_tokens": 250}}, "max_new_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "x" * 20001}]}, "messages"),
    ],
)
def test_invalid_requests_are_rejected_before_anything_is_queued(policy, trainer, overrides, field):
    with pytest.raises(ValidationError) as error:
        job_unqueued(trainer, **overrides)
    assert field in error.value.message_dict
    assert GenerationJob.objects.count() == 0


def test_a_token_limit_not_asked_for_is_lowered_to_the_cap_and_the_policy_s_context(
    policy, trainer, settings
):
    """The default limit is nobody's request: a policy with a short context, or a lower cap,
    still answers a request that names no limit (an editor's suggestions name none), while a
    limit asked for is checked as it is."""
    default = GenerationParams().max_new_tokens
    ModelVersion.objects.filter(pk=policy.pk).update(context_length=MIN_PROMPT_TOKENS + default)
    assert job_unqueued(trainer, params={}).params["max_new_tokens"] == default

    ModelVersion.objects.filter(pk=policy.pk).update(context_length=MIN_PROMPT_TOKENS + 40)
    assert job_unqueued(trainer, params={}).params["max_new_tokens"] == 40
    assert job_unqueued(trainer, params=None).params["max_new_tokens"] == 40
    with pytest.raises(ValidationError) as error:
        job_unqueued(trainer, params={"max_new_tokens": 41})
    assert "ask for at most 40" in error.value.message_dict["max_new_tokens"][0]

    settings.GENERATION_MAX_NEW_TOKENS = 30
    assert job_unqueued(trainer, params={"top_p": 0.5}).params["max_new_tokens"] == 30
    with pytest.raises(ValidationError) as error:
        job_unqueued(trainer, params={"max_new_tokens": 31})
    assert error.value.message_dict == {
        "max_new_tokens": ["max_new_tokens must be between 1 and 30."]
    }

    # A context that holds no reply is said as such, whatever the limit.
    ModelVersion.objects.filter(pk=policy.pk).update(context_length=MIN_PROMPT_TOKENS)
    with pytest.raises(ValidationError) as error:
        job_unqueued(trainer, params={})
    assert "too short for any reply" in error.value.message_dict["max_new_tokens"][0]


def test_prefix_message_renders_the_path_from_the_root_not_the_siblings(policy, trainer):
    conversation = Conversation.objects.create(owner=trainer)
    first = Message.objects.create(conversation=conversation, role="user", content="hello")
    reply = Message.objects.create(
        conversation=conversation, parent=first, role="assistant", content="hi there"
    )
    Message.objects.create(
        conversation=conversation, parent=first, role="assistant", content="other branch"
    )
    question = Message.objects.create(
        conversation=conversation, parent=reply, role="user", content="how are you?"
    )
    job = services.generation_job_create(
        prefix_message=question, n=2, requested_by=trainer, queue=False
    )
    assert job.prompt_messages == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi there"},
        {"role": "user", "content": "how are you?"},
    ]


def test_long_prefix_is_truncated_from_the_left_with_a_note(policy, trainer):
    long_history = []
    for turn in range(60):
        long_history.append(
            {"role": "user" if turn % 2 == 0 else "assistant", "content": f"turn {turn} " * 10}
        )
    job = job_unqueued(trainer, messages=long_history, params={"max_new_tokens": 8})
    job = services.generation_job_run_inline(job_id=job.pk)
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert "truncated from the left" in job.notes


def test_user_side_suggestions_are_supported(policy, trainer):
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello! how are you?"},
    ]
    job = services.generation_job_run_inline(
        job_id=job_unqueued(trainer, messages=history, role="user").pk
    )
    assert job.samples.count() == 3


def test_failed_generation_marks_the_job_failed_through_the_task(policy, trainer, settings):
    from sampler.jobs.tasks import run_job

    # Registered while it existed, deleted since: loading fails on the worker.
    broken = ModelVersion.objects.create(name="broken", path="/nonexistent/model-dir-xyz")
    job = job_unqueued(trainer, model_version=broken)
    GenerationJob.objects.filter(pk=job.pk).update(publish_token="t1", queue="generation")
    run_job.run("generation", job.pk, "t1")
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED
    assert "nonexistent" in job.error and job.attempts == 1


def test_worker_cache_loads_a_model_once_and_reloads_when_the_version_changes(
    policy, trainer, micro_model_dir, tmp_path
):
    import shutil

    model_cache.clear()
    loads_before = model_cache.loads
    services.generation_job_run_inline(job_id=job_unqueued(trainer).pk)
    services.generation_job_run_inline(job_id=job_unqueued(trainer, seed=5).pk)
    assert model_cache.loads == loads_before + 1
    copy = shutil.copytree(micro_model_dir, tmp_path / "copy")
    newer = model_version_register(name="micro-copy", path=str(copy))
    model_version_promote(version=newer)
    job = services.generation_job_run_inline(job_id=job_unqueued(trainer, model_version=None).pk)
    assert job.model_version == newer
    assert model_cache.loads == loads_before + 2


def test_generate_command_prints_samples_and_rejects_bad_input(policy, capsys):
    import json

    from django.core.management import CommandError, call_command

    call_command(
        "generate", "hello there", "-n", "2", "--max-new-tokens", "6", "--seed", "3", "--json"
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["model_version"] == "micro" and printed["seed"] == 3
    assert len(printed["samples"]) == 2
    with pytest.raises(CommandError, match="n must be an integer between"):
        call_command("generate", "hello", "-n", "40")
    with pytest.raises(CommandError) as empty:
        call_command("generate", "  ", "-n", "1")
    assert str(empty.value) == "prompt: Give the user turn to answer (it is empty)."
    with pytest.raises(CommandError, match="add --queue"):
        call_command("generate", "hello", "--timeout", "5")


def test_generate_command_help_states_the_deployments_limit_on_n(settings):
    settings.GENERATION_MAX_N = 32
    assert (
        "How many completions (1-32)."
        in GenerateCommand().create_parser("manage.py", "generate").format_help()
    )
