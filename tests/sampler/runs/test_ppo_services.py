"""PPO runs and comparisons through the services, the command and the Models page."""

import json
import re
from io import StringIO
from pathlib import Path

import pytest
import torch
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from labeling.models import Message
from ranking.exports.filters import ExportFilters
from ranking.projects.models import project_default_id
from ranking.quality.selectors import human_preference_between_versions
from sampler.comparisons.models import ModelComparison
from sampler.comparisons.services import model_comparison_create, optimised_against
from sampler.jobs.services import job_run_inline
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active, model_version_tree
from sampler.registry.services import model_version_register, model_version_save
from sampler.runs import data as run_data
from sampler.runs import services as training_services
from sampler.runs.models import TrainingRun
from sampler.training import ppo as ppo_training
from sampler.training.model import build_reward_model, load_tokenizer
from sampler.training.rollout import build_prompt_data
from tests.conftest import says_unpublished_until_published
from tests.ranking.conftest import (  # noqa: F401  (ranked: a fixture)
    conversation_in_split,
    finished_conversation,
    ranked,
)

pytestmark = pytest.mark.django_db

TINY_RUN = {"max_steps": 2, "batch_size": 4, "max_new_tokens": 8, "eval_prompts": 4}


@pytest.fixture(autouse=True)
def model_root(settings, tmp_path) -> Path:
    settings.MODEL_ROOT = tmp_path / "models"
    return settings.MODEL_ROOT


@pytest.fixture
def reward_version(policy, tmp_path_factory):
    """A reward model on the micro backbone (random head), registered, not active."""
    out = tmp_path_factory.mktemp("rm")
    tokenizer = load_tokenizer(policy.path)
    torch.manual_seed(0)
    model = build_reward_model(policy.path, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model_version_register(name="rm", path=str(out), kind=ModelVersion.Kind.REWARD)


def _prompts_file(path: Path, count: int = 12) -> Path:
    rows = [
        {
            "messages": [{"role": "user", "content": f"question {i}?"}],
            "conversation_id": i,
            "split": "test" if i % 4 == 0 else "train",
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_prompts_from_the_database_are_every_user_turn_of_finished_conversations(trainer):
    finished_conversation(trainer, turns=("hi", "hello!", "how are you?", "fine."))
    finished_conversation(trainer, turns=("hi", "hey"))
    rows = list(run_data.prompt_records(filters=ExportFilters(test_fraction=0.0)))
    from sampler.training.records import prompt_prefixes

    prompts = {json.dumps(p) for row in rows for p in prompt_prefixes(row)}
    assert len(prompts) == 2  # "hi" (twice, once kept) and "hi / hello! / how are you?"
    everything = run_data.held_out_prompts(filters=ExportFilters(test_fraction=0.99), limit=10)
    assert [p[-1]["content"] for p in everything] == ["hi", "how are you?"]


def test_a_ppo_run_needs_a_reward_model(policy, tmp_path):
    with pytest.raises(ValidationError) as error:
        training_services.training_run_create(
            kind="ppo", data_path=str(_prompts_file(tmp_path / "p.jsonl"))
        )
    assert "reward_version" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        training_services.training_run_create(
            kind="ppo", reward_version=policy, data_path=str(_prompts_file(tmp_path / "p.jsonl"))
        )
    assert error.value.message_dict == {
        "reward_version": [f"{policy.name} is a policy, not a reward model: name a reward model."]
    }


def test_a_reply_budget_that_fills_the_context_or_a_taken_folder_is_refused_before_a_run(
    policy, reward_version, tmp_path, settings
):
    assert policy.context_length == 256
    prompts = str(_prompts_file(tmp_path / "p.jsonl"))
    with pytest.raises(ValidationError) as error:
        training_services.training_run_create(
            kind="ppo",
            config={"max_new_tokens": 250},
            reward_version=reward_version,
            data_path=prompts,
            queue=False,
        )
    assert "leaves no room for prompts in micro's 256-token context" in str(error.value)
    (Path(settings.MODEL_ROOT) / "taken").mkdir(parents=True)
    with pytest.raises(ValidationError) as taken:
        training_services.training_run_create(
            kind="ppo",
            reward_version=reward_version,
            data_path=prompts,
            output_name="taken",
            queue=False,
        )
    assert taken.value.message_dict == {
        "output_name": ["taken exists already in MODEL_ROOT: choose another name."]
    }
    assert not TrainingRun.objects.exists()


def test_train_ppo_command_registers_a_child_policy_without_promoting_it(
    policy, reward_version, tmp_path
):
    prompts = _prompts_file(tmp_path / "prompts.jsonl")
    out = StringIO()
    call_command(
        "train_ppo",
        "--data",
        str(prompts),
        "--reward-model",
        "rm",
        "--name",
        "micro-ppo-1",
        *[f"--{k.replace('_', '-')}={v}" for k, v in TINY_RUN.items()],
        stdout=out,
        verbosity=0,
    )
    run = TrainingRun.objects.get(kind=TrainingRun.Kind.PPO)
    assert run.status == TrainingRun.Status.SUCCEEDED and run.progress == 1.0
    assert run.dataset["reward_version"]["name"] == "rm" and run.dataset["sha256"]
    assert [point[0] for point in run.metrics["objective/kl"]] == [1, 2]
    version = ModelVersion.objects.get(name="micro-ppo-1")
    assert version.parent == policy and version.training_run == run and not version.is_active
    assert version.metrics["data"]["prompts/train"] == 9 and "steps" in version.metrics
    assert model_version_active() == policy
    assert "micro-ppo-1" in out.getvalue()
    rows = model_version_tree()
    tree = [(row.version.name, row.depth) for row in rows]
    assert tree.index(("micro-ppo-1", 1)) > tree.index(("micro", 0))
    shown = dict(next(row for row in rows if row.version == version).metrics)
    assert shown["score (after the EOS penalty)"] == version.metrics["objective/scores"]
    # A version trained before raw scores were recorded: its score had no penalty in it.
    version.metrics.pop("objective/raw_scores")
    version.save(update_fields=["metrics"])
    shown = dict(next(row for row in model_version_tree() if row.version == version).metrics)
    assert shown["score"] == version.metrics["objective/scores"]
    assert "score (after the EOS penalty)" not in shown


def test_a_failed_ppo_run_registers_nothing(policy, reward_version, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    run = training_services.training_run_create(
        kind="ppo",
        reward_version=reward_version,
        data_path=str(empty),
        config=TINY_RUN | {"test_fraction": 0},
        queue=False,
    )
    # Emptied of prompts after the run was made (which refuses a file without one).
    empty.write_text(json.dumps({"messages": [{"role": "assistant", "content": "x"}]}) + "\n")
    with pytest.raises(Exception, match="No prompt"):
        training_services.training_run_run_inline(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and not run.output_versions.exists()
    assert model_version_active() == policy


def test_a_ppo_policy_names_its_reward_model_as_renamed_while_it_trained(
    policy, reward_version, tmp_path, monkeypatch
):
    """The policy was registered with the reward model's name as the run had read it when it
    started: a rename made while it trained left it naming a name no version has (and the
    renamed reward model free to judge it)."""
    train = ppo_training.train_ppo

    def renamed_meanwhile(**arguments):
        reward_version.name = "rm-renamed"
        model_version_save(version=reward_version, fields=["name"])
        return train(**arguments)

    monkeypatch.setattr(ppo_training, "train_ppo", renamed_meanwhile)
    run = training_services.training_run_create(
        kind="ppo",
        reward_version=reward_version,
        data_path=str(_prompts_file(tmp_path / "prompts.jsonl")),
        config=TINY_RUN,
        output_name="micro-ppo",
        queue=False,
    )
    training_services.training_run_run_inline(run_id=run.pk)

    version = ModelVersion.objects.get(name="micro-ppo")
    assert version.metrics["reward_version"] == "rm-renamed"
    assert optimised_against(version) == {"rm-renamed"}


def test_comparison_of_two_versions_on_held_out_prompts(
    policy, reward_version, trainer, django_capture_on_commit_callbacks
):
    for index in range(12):
        finished_conversation(trainer, turns=(f"hello {index}", "hi"))
    other = model_version_register(name="micro-copy", path=policy.path)
    with django_capture_on_commit_callbacks() as queued:
        comparison = model_comparison_create(
            version_a=policy,
            version_b=other,
            reward_version=reward_version,
            prompts=8,
            max_new_tokens=8,
            filters=ExportFilters(test_fraction=0.99),
        )
    assert len(queued) == 1
    comparison = job_run_inline(job=comparison)
    results = comparison.results
    assert comparison.status == ModelComparison.Status.SUCCEEDED, comparison.error
    assert results["prompts"] == 8 and results["wins_a"] + results["wins_b"] + results["ties"] == 8
    # The same weights and the same seed: the same replies, all ties.
    assert results["ties"] == 8 and results["win_rate_a"] == 0.5
    with pytest.raises(ValidationError):
        model_comparison_create(version_a=policy, version_b=policy)


def test_a_comparison_with_no_held_out_prompt_is_refused_when_asked_for(
    policy, reward_version, trainer
):
    """Nine conversations at the default held-out fraction (0.1) all train: the comparison was
    queued and its job failed later; it is refused, saying what there is and what to do."""
    for index in range(9):
        conversation_in_split(trainer, split="train", turns=(f"question {index}?", "an answer"))
    other = model_version_register(name="micro-copy", path=policy.path)
    with pytest.raises(ValidationError) as refused:
        model_comparison_create(
            version_a=policy, version_b=other, reward_version=reward_version, queue=False
        )
    message = " ".join(refused.value.message_dict["test_fraction"])
    assert "held-out fraction of 0.1 holds out none of the 9 prompts" in message
    assert "more conversations" in message and "larger held-out fraction" in message
    assert not ModelComparison.objects.exists()
    # A larger fraction holds some of them out.
    comparison = model_comparison_create(
        version_a=policy,
        version_b=other,
        reward_version=reward_version,
        filters=ExportFilters(test_fraction=0.99),
        queue=False,
    )
    assert comparison.config["filters"]["test_fraction"] == 0.99


def test_a_comparison_with_no_prompt_at_all_is_refused_asking_for_conversations(
    policy, reward_version
):
    other = model_version_register(name="micro-copy", path=policy.path)
    with pytest.raises(ValidationError) as refused:
        model_comparison_create(
            version_a=policy, version_b=other, reward_version=reward_version, queue=False
        )
    message = " ".join(refused.value.message_dict["test_fraction"])
    assert "no prompt yet" in message and "no finished conversation" in message


def test_a_comparison_whose_held_out_prompts_are_gone_when_it_runs_fails_with_a_message(
    policy, reward_version, trainer
):
    """Data can change between the request and the run: the job checks again."""
    held_out = conversation_in_split(trainer)
    other = model_version_register(name="micro-copy", path=policy.path)
    comparison = model_comparison_create(
        version_a=policy, version_b=other, reward_version=reward_version, queue=False
    )
    held_out.delete()
    comparison = job_run_inline(job=comparison)
    assert comparison.status == ModelComparison.Status.FAILED
    assert "held-out fraction of 0.1" in comparison.error and "no prompt yet" in comparison.error


def test_a_comparison_whose_judge_was_deleted_since_fails_naming_it(
    policy, reward_version, trainer
):
    """The verdict of a smaller ensemble than the one asked for would pass for it."""
    conversation_in_split(trainer)
    other = model_version_register(name="micro-copy", path=policy.path)
    second = model_version_register(name="rm-second", path=reward_version.path, kind="reward")
    comparison = model_comparison_create(
        version_a=policy,
        version_b=other,
        reward_version=reward_version,
        extra_judges=[second],
        queue=False,
    )
    second.delete()
    comparison = job_run_inline(job=comparison)
    assert comparison.status == ModelComparison.Status.FAILED
    assert "rm-second" in comparison.error and "deleted" in comparison.error
    assert not comparison.items.exists()


def test_human_win_rate_counts_pairs_of_replies_of_both_versions(ranked, policy):  # noqa: F811
    tasks, _ = ranked
    older = model_version_register(name="older", path=policy.path)
    # Every task's source reply (ranked best by both rankers) was written by "older".
    Message.objects.filter(pk__in=[t.source_message_id for t in tasks]).update(model_version=older)
    preference = human_preference_between_versions(version_a_id=policy.pk, version_b_id=older.pk)
    assert (preference.rankings, preference.wins_a, preference.wins_b) == (6, 0, 18)
    assert preference.win_rate_a == 0.0


# ---- the Models page --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, method",
    [
        ("sampler:models", "get"),
        ("sampler:comparisons", "get"),
        ("sampler:comparison-start", "post"),
        ("sampler:ppo-run-start", "post"),
    ],
)
def test_trainers_get_403_on_the_models_pages(trainer_client, name, method):
    assert getattr(trainer_client, method)(reverse(name)).status_code == 403


def test_models_page_shows_the_tree_and_promote_comes_back_to_it(
    admin_client_, policy, reward_version
):
    page = admin_client_.get(reverse("sampler:models"))
    assert page.status_code == 200
    assert b'data-version="rm"' in page.content and b"Promote rm" in page.content
    response = admin_client_.post(
        reverse("sampler:version-promote", kwargs={"version_id": reward_version.pk}),
        {"next": reverse("sampler:models")},
    )
    assert response.status_code == 302 and response["Location"] == reverse("sampler:models")
    assert model_version_active(kind=ModelVersion.Kind.REWARD) == reward_version
    outside = admin_client_.post(
        reverse("sampler:version-promote", kwargs={"version_id": policy.pk}),
        {"next": "https://elsewhere.example/"},
    )
    assert outside["Location"] == reverse("sampler:training")


def _comparison_fields(version_a, version_b, reward_version) -> dict:
    """The Compare form as the page posts it, with its defaults."""
    return {
        "version_a": version_a.pk,
        "version_b": version_b.pk,
        "reward_version": reward_version.pk,
        "prompts": 16,
        "max_new_tokens": 16,
        # Blank: the policies' training's split (these have no recorded run: 0.1, seed 0).
        "test_fraction": "",
        "split_seed": "",
    }


def _ppo_fields(reward_version, **changed) -> dict:
    """The Models page's PPO form as it posts it, with ``changed`` values."""
    return {
        "reward_version": reward_version.pk,
        "max_steps": 3,
        "batch_size": 4,
        "learning_rate": 1e-4,
        "kl_coef": 0.05,
        "max_kl": 10,
        "max_new_tokens": 16,
        "test_fraction": 0.1,
        "lora_r": 0,
        "lora_alpha": 8,
        **changed,
    }


def test_admin_starts_ppo_and_a_comparison_from_the_models_page(
    admin_client_, policy, reward_version, trainer, django_capture_on_commit_callbacks
):
    # A prompt to evaluate on and another to train on (a run that held out all was refused,
    # and so is one whose conversations ask the same: PPO takes a prompt once).
    conversation_in_split(trainer)
    conversation_in_split(
        trainer, split="train", filters=ExportFilters(test_fraction=0.2), turns=("hey", "hi!")
    )
    with django_capture_on_commit_callbacks() as queued:
        response = admin_client_.post(
            reverse("sampler:ppo-run-start"),
            _ppo_fields(reward_version, test_fraction=0.2, lora_r=4, lora_targets="c_attn"),
        )
    run = TrainingRun.objects.get(kind=TrainingRun.Kind.PPO)
    assert response.status_code == 302 and str(run.pk) in response["Location"]
    assert len(queued) == 1 and run.config["max_kl"] == 10 and run.config["batch_size"] == 4
    assert (run.config["lora_r"], run.config["lora_alpha"], run.config["lora_targets"]) == (
        4,
        8,
        "c_attn",
    )
    assert run.dataset["source"] == "database" and run.dataset["filters"]["test_fraction"] == 0.2
    run_page = admin_client_.get(reverse("sampler:training-run", kwargs={"run_id": run.pk}))
    assert b"KL to the reference" in run_page.content and b"Reply length" in run_page.content

    other = model_version_register(name="micro-copy", path=policy.path)
    same = admin_client_.post(
        reverse("sampler:comparison-start"), {"version_a": policy.pk, "version_b": policy.pk}
    )
    assert same.status_code == 422 and b"two different versions" in same.content
    with django_capture_on_commit_callbacks() as queued:
        response = admin_client_.post(
            reverse("sampler:comparison-start"),
            _comparison_fields(other, policy, reward_version),
        )
    assert response.status_code == 302 and len(queued) == 1
    page = admin_client_.get(reverse("sampler:models"))
    assert b"micro-copy vs micro" in page.content and b'hx-get="/' in page.content


def test_the_models_page_refuses_a_comparison_with_no_held_out_prompt_on_its_fraction(
    admin_client_, policy, reward_version, trainer
):
    """It was queued, and its job failed later with "nothing to compare on"."""
    for index in range(9):
        conversation_in_split(trainer, split="train", turns=(f"question {index}?", "an answer"))
    other = model_version_register(name="micro-copy", path=policy.path)
    fields = _comparison_fields(other, policy, reward_version)
    page = admin_client_.get(reverse("sampler:models")).content.decode()
    field = page.split('id="id_test_fraction"')[0].rsplit("<input", 1)[1]
    assert 'name="test_fraction"' in field and "value=" not in field
    response = admin_client_.post(reverse("sampler:comparison-start"), fields)
    assert response.status_code == 422 and not ModelComparison.objects.exists()
    errors = response.context["comparison_form"].errors
    assert set(errors) == {"test_fraction"}, errors
    assert "fraction of 0.1 holds out none of the 9 prompts" in response.content.decode()
    response = admin_client_.post(
        reverse("sampler:comparison-start"), {**fields, "test_fraction": 0.99}
    )
    assert response.status_code == 302
    assert ModelComparison.objects.get().config["filters"]["test_fraction"] == 0.99


def test_the_models_page_refuses_a_ppo_run_with_no_held_out_prompt_on_its_fraction(
    admin_client_, policy, reward_version, trainer
):
    """It was queued, trained, and evaluated on nothing (no eval/* curve, nothing said)."""
    half = ExportFilters(test_fraction=0.5)  # trained on at 0.5, so at 0.1 too
    for index in range(9):
        turns = (f"question {index}?", "an answer")
        conversation_in_split(trainer, split="train", filters=half, turns=turns)
    fields = _ppo_fields(reward_version)
    response = admin_client_.post(reverse("sampler:ppo-run-start"), fields)
    assert response.status_code == 422 and not TrainingRun.objects.exists()
    errors = response.context["ppo_form"].errors
    assert set(errors) == {"test_fraction"}, errors
    assert (
        "No held-out prompt to evaluate on: a held-out fraction of 0.1 holds out none of the 9 "
        "prompts"
    ) in response.content.decode()
    conversation_in_split(trainer, split="test", filters=half, turns=("held out?", "yes."))
    for fraction in (0.5, 0.0):  # one holds some out; 0 asks for no evaluation
        response = admin_client_.post(
            reverse("sampler:ppo-run-start"), {**fields, "test_fraction": fraction}
        )
        assert response.status_code == 302
        assert TrainingRun.objects.latest("pk").dataset["filters"]["test_fraction"] == fraction


def test_the_models_page_refuses_a_ppo_batch_too_small_to_split_on_its_own_field(
    admin_client_, policy, reward_version
):
    """The page keeps PPO's 2 minibatches: a batch of 1 was accepted by the form, then refused
    for `minibatches`, a setting the page does not show."""
    fields = _ppo_fields(reward_version, test_fraction=0.2, batch_size=1)
    response = admin_client_.post(reverse("sampler:ppo-run-start"), fields)
    assert response.status_code == 422
    errors = response.context["ppo_form"].errors
    assert set(errors) == {"batch_size"}, errors
    assert b"minibatches" not in response.content
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_comparison_asked_for_while_the_job_queue_is_down_is_kept_and_its_table_says_so(
    admin_client_, policy, reward_version, trainer, broker
):
    """The warning ("Comparison 1 is saved, ...": a number the comparisons table shows
    nowhere) was a message at the top of the Models page, which stayed there once the queue
    was back and the comparison ran. The comparisons table says it, in the part it polls,
    naming the comparison as its rows do, while the comparison is not published."""
    conversation_in_split(trainer)
    # The default project (open to every trainer) the comparison is for: a test run before
    # this one in a transaction flushed the row its migration made.
    project_default_id()
    other = model_version_register(name="micro-copy", path=policy.path)
    broker.down = True
    response = admin_client_.post(
        reverse("sampler:comparison-start"),
        _comparison_fields(other, policy, reward_version),
        follow=True,
    )
    assert response.status_code == 200
    said = (
        f"The comparison of micro-copy with {policy.name} is saved, but the job queue is "
        "unreachable right now: it starts as soon as the queue is back."
    )
    assert said in response.content.decode()
    says_unpublished_until_published(
        admin_client_,
        broker,
        job=ModelComparison.objects.get(),
        parts={reverse("sampler:comparisons"): said},
        pages=(reverse("sampler:models"),),
    )


@pytest.mark.parametrize("first", ["test", "train"])
def test_a_ppo_run_counts_a_prompt_asked_on_both_sides_once_as_its_trainer_does(
    admin_client_, policy, reward_version, trainer, first
):
    """PPO trains on or evaluates on each distinct prompt once, on the side of the conversation
    it first reads it in: two conversations asking the same, one held out, gave the trainer
    one side only (nothing held out: no eval/* curve; nothing trained on: a failed run), and
    the check, which counted the prompt on both sides, accepted the run."""
    half = ExportFilters(test_fraction=0.5)
    second = "train" if first == "test" else "test"
    for split in (first, second):
        conversation_in_split(trainer, split=split, filters=half, turns=("same?", "an answer"))
    fields = _ppo_fields(reward_version, test_fraction=0.5)
    response = admin_client_.post(reverse("sampler:ppo-run-start"), fields)
    assert response.status_code == 422 and not TrainingRun.objects.exists()
    errors = response.context["ppo_form"].errors
    expected = (
        "No prompt to train on: a held-out fraction of 0.5 holds out the only prompt"
        if first == "test"
        else "No held-out prompt to evaluate on: a held-out fraction of 0.5 does not hold out "
        "the only prompt"
    )
    assert errors["test_fraction"][0].startswith(f"{expected} (whole conversations"), errors
    # The trainer's own split of these records.
    data = build_prompt_data(
        load_tokenizer(policy.path),
        run_data.prompt_records(filters=half),
        max_length=64,
        test_fraction=0.5,
        seed=0,
    )
    assert len(getattr(data, first)) == 1 and not getattr(data, second)
    # A prompt asked in the other conversation only: accepted.
    conversation_in_split(trainer, split=second, filters=half, turns=("other?", "an answer"))
    assert admin_client_.post(reverse("sampler:ppo-run-start"), fields).status_code == 302


def test_the_models_page_takes_as_many_ppo_steps_as_train_ppo_and_says_the_same_range(
    admin_client_, policy, reward_version, trainer
):
    """The page capped max_steps at 1,000,000 while train_ppo and the Training page's runs
    take 10,000,000, and said Django's "Ensure this value ..." rather than the range."""
    conversation_in_split(trainer)
    conversation_in_split(
        trainer, split="train", filters=ExportFilters(test_fraction=0.2), turns=("hey", "hi!")
    )
    page = admin_client_.get(reverse("sampler:models")).content.decode()
    box = re.search(r'<input type="number" name="max_steps"[^>]*>', page).group(0)
    assert 'min="1"' in box and 'max="10000000"' in box, box
    fields = _ppo_fields(reward_version, test_fraction=0.2)
    for steps in ("0", "10000001"):
        refused = admin_client_.post(
            reverse("sampler:ppo-run-start"), fields | {"max_steps": steps}
        )
        assert refused.status_code == 422 and not TrainingRun.objects.exists()
        assert refused.context["ppo_form"].errors == {
            "max_steps": ["Max steps must be between 1 and 10,000,000."]
        }
    taken = admin_client_.post(reverse("sampler:ppo-run-start"), fields | {"max_steps": "10000000"})
    assert taken.status_code == 302
    assert TrainingRun.objects.get(kind=TrainingRun.Kind.PPO).config["max_steps"] == 10_000_000
