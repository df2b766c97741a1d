"""`train_sft`: demonstrations in, a policy that talks like them out (registered, not active)."""

from io import StringIO

import pytest
import torch
from django.core.management import CommandError, call_command
from transformers import AutoModelForCausalLM, AutoTokenizer

from ranking.exports.pipeline import write_jsonl
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active
from sampler.runs.models import TrainingRun
from sampler.training.synthetic import synthetic_demonstrations

pytestmark = pytest.mark.django_db

PHRASE = "see you at the lighthouse"


def test_train_sft_teaches_the_policy_the_phrase_every_demonstration_ends_with(
    policy, tmp_path, settings
):
    settings.MODEL_ROOT = tmp_path / "models"
    data = tmp_path / "demonstrations.jsonl"
    write_jsonl(iter(synthetic_demonstrations(400, ending=PHRASE)), data)
    out = StringIO()
    call_command(
        "train_sft",
        "--data", str(data),
        "--learning-rate", "3e-3",
        "--epochs", "10",
        "--batch-size", "8",
        "--max-length", "64",
        "--eval-every", "0",
        stdout=out,
        verbosity=0,
    )  # fmt: skip
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    version = run.output_versions.get()
    assert version.kind == ModelVersion.Kind.POLICY and version.parent == policy
    assert model_version_active() == policy  # not promoted
    assert version.metrics["loss/eval"] < 3.0

    tokenizer = AutoTokenizer.from_pretrained(version.path)
    model = AutoModelForCausalLM.from_pretrained(version.path).eval()
    for prompt in ("hello, how are you?", "what are you doing tonight?"):
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.no_grad():
            output = model.generate(**inputs, do_sample=False, max_new_tokens=30)
        reply = output[0, inputs["input_ids"].shape[1] :].tolist()
        # It says the phrase, then ends its turn: the end-of-turn token was learned too.
        assert PHRASE in tokenizer.decode(reply, skip_special_tokens=True)
        assert reply[-1] == tokenizer.eos_token_id


def test_resuming_a_run_that_already_succeeded_says_nothing_was_trained_and_if_it_is_active(
    policy, micro_model_dir
):
    from sampler.registry.services import model_version_register

    done = TrainingRun.objects.create(
        kind=TrainingRun.Kind.SFT, status=TrainingRun.Status.SUCCEEDED, output_name="micro"
    )
    policy.training_run = done
    policy.save(update_fields=["training_run"])
    out = StringIO()
    call_command("train_sft", "--resume", str(done.pk), stdout=out, verbosity=0)
    assert out.getvalue().splitlines()[0] == (
        f"run {done.pk} had already succeeded; nothing was trained: micro at "
        f"{policy.path} (the active policy)"
    )

    other = TrainingRun.objects.create(
        kind=TrainingRun.Kind.SFT, status=TrainingRun.Status.SUCCEEDED, output_name="sft2"
    )
    model_version_register(name="sft2", path=str(micro_model_dir), training_run_id=other.pk)
    out = StringIO()
    call_command("train_sft", "--resume", str(other.pk), stdout=out, verbosity=0)
    assert out.getvalue().splitlines()[0] == (
        f"run {other.pk} had already succeeded; nothing was trained: sft2 at "
        f"{micro_model_dir} (not promoted)"
    )
    assert TrainingRun.objects.get(pk=done.pk).status == TrainingRun.Status.SUCCEEDED


def test_train_sft_help_says_what_origins_takes():
    from sampler.management.commands.train_sft import Command

    help_text = " ".join(Command().create_parser("manage.py", "train_sft").format_help().split())
    assert (
        "--origins ORIGINS Origins to learn: comma-separated origins of the assistant turns to "
        "learn (human, model, model_edited; default: all), as --origin repeated" in help_text
    )


def test_train_sft_help_writes_a_default_as_the_refusals_write_numbers():
    """It said "(default 1e-08)", as Python prints a small float."""
    from sampler.management.commands.train_sft import Command

    help_text = " ".join(Command().create_parser("manage.py", "train_sft").format_help().split())
    assert "Added to Adam's denominator. (default 0.00000001)" in help_text
    assert "(default 0.0001)" in help_text and "e-0" not in help_text


def test_lora_targets_the_base_model_lacks_are_refused_before_any_run_exists(
    policy, tmp_path, settings
):
    """PEFT failed the run on its worker (NoMatchingPeftModuleError); the base's modules are
    known from its config (built on the meta device, no weight read) when the run is made."""
    settings.MODEL_ROOT = tmp_path / "models"
    data = tmp_path / "demos.jsonl"
    write_jsonl(iter(synthetic_demonstrations(4, seed=1)), data)
    arguments = ["--data", str(data), "--lora-r", "4", "--queue"]
    with pytest.raises(CommandError) as refused:
        call_command("train_sft", *arguments, "--lora-targets", "c_attn,bogus", stdout=StringIO())
    assert str(refused.value) == (
        f"--lora-targets: {policy.name} has no module named `bogus` for LoRA to adapt: name "
        "modules it has (GPT-2: c_attn, c_proj, c_fc; Llama: q_proj, k_proj, v_proj, o_proj), or "
        "leave the targets empty for PEFT's default."
    )
    assert not TrainingRun.objects.exists()
    call_command("train_sft", *arguments, "--lora-targets", "c_attn,attn.c_proj", stdout=StringIO())
    assert TrainingRun.objects.count() == 1
