import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from labeling.conversations import services
from labeling.conversations.models import Message
from labeling.redteam import services as redteam_services
from labeling.redteam.models import Attack
from sampler.jobs.services import job_run_inline
from sampler.models import ModelVersion
from sampler.registry.services import model_version_promote, model_version_register
from sampler.training.model import build_reward_model, load_tokenizer
from tests.labeling.conftest import model_reply
from tests.labeling.redteam.conftest import (
    CORRECTION,
    FAILED,
    PROMPT,
    attack_and_correct,
    two_attacks,
)


def test_marking_a_model_reply_stores_the_attack_with_its_prompt_and_version(
    red_team, trainer, model_version
):
    conversation, prompt, reply = red_team
    attack = redteam_services.attack_record(message=reply, user=trainer, category="harmful")
    assert attack.conversation == conversation and attack.message == reply
    assert attack.prompt_message == prompt
    assert attack.prompt_messages == [{"role": "user", "content": PROMPT}]
    assert attack.model_version == model_version and attack.created_by == trainer
    assert attack.guideline_version.number == 1
    with pytest.raises(ValidationError, match="already marked"):
        redteam_services.attack_record(message=reply, user=trainer, category="harmful")


def test_only_model_replies_of_red_team_conversations_can_be_marked(
    red_team, trainer, other_trainer, model_version
):
    _, prompt, reply = red_team
    with pytest.raises(ValidationError, match="category"):
        redteam_services.attack_record(message=reply, user=trainer, category="rude")
    with pytest.raises(ValidationError, match="model wrote"):
        redteam_services.attack_record(message=prompt, user=trainer, category="harmful")
    with pytest.raises(PermissionDenied):
        redteam_services.attack_record(message=reply, user=other_trainer, category="harmful")
    normal = services.conversation_create(owner=trainer)
    question = services.message_append(conversation=normal, author=trainer, content="hi")
    normal_reply = model_reply(normal, question, model_version, text=FAILED)
    with pytest.raises(ValidationError, match="red-team conversations"):
        redteam_services.attack_record(message=normal_reply, user=trainer, category="harmful")
    assert Attack.objects.count() == 0


def test_the_checks_take_an_attacks_prompt_and_version_from_its_reply_alone(
    red_team, trainer, model_version
):
    """What ``attack_record`` stores of the reply is what ``attack_check`` holds an admin's
    values to: the path up to the turn the reply answers, and the version that wrote it."""
    _, prompt, reply = red_team
    attack = redteam_services.attack_record(message=reply, user=trainer, category="harmful")
    check = {"message": reply, "category": "harmful", "attack": attack}
    redteam_services.attack_check(
        **check, prompt_messages=attack.prompt_messages, model_version=model_version
    )
    wrong = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": FAILED}]
    with pytest.raises(ValidationError) as refused:
        redteam_services.attack_check(**check, prompt_messages=wrong)
    assert list(refused.value.message_dict) == ["prompt_messages"]
    assert f"message {prompt.pk}" in refused.value.message_dict["prompt_messages"][0]
    other = ModelVersion.objects.create(name="policy-v2", path="/nowhere", kind="policy")
    for version in (other, None):
        with pytest.raises(ValidationError) as refused:
            redteam_services.attack_check(**check, model_version=version)
        assert "policy-v1" in refused.value.message_dict["model_version"][0]
    # A reply with no version recorded (an import) binds none.
    Message.objects.filter(pk=reply.pk).update(model_version=None)
    reply.refresh_from_db()
    redteam_services.attack_check(**{**check, "message": reply}, model_version=other)


def test_the_correction_is_a_sibling_branch_written_once(red_team, trainer):
    conversation, prompt, reply = red_team
    attack, correction = attack_and_correct(trainer, reply)
    attack.refresh_from_db()
    assert attack.correction == correction
    assert correction.parent == prompt and correction.origin == Message.Origin.HUMAN
    assert correction.guideline_version.number == 1
    conversation.refresh_from_db()
    assert conversation.active_leaf == correction
    with pytest.raises(ValidationError, match="already has its corrected reply"):
        redteam_services.attack_correct(attack=attack, author=trainer, content="Another one.")
    with pytest.raises(ValidationError, match="corrected reply"):
        redteam_services.attack_withdraw(attack=attack, user=trainer)


def _from_a_sample(reply, trainer):
    """``reply`` as the suggestion flow stores it: written from a sample the trainer asked for."""
    from sampler.generation.models import GenerationJob, Sample

    job = GenerationJob.objects.create(
        model_version=reply.model_version,
        prefix_message=reply.parent,
        prompt_messages=[{"role": "user", "content": PROMPT}],
        n=1,
        params={"max_new_tokens": 16},
        seed=1,
        purpose=GenerationJob.Purpose.SUGGESTION,
        status=GenerationJob.Status.SUCCEEDED,
        requested_by=trainer,
    )
    sample = Sample.objects.create(
        job=job,
        index=0,
        text=reply.content,
        token_count=12,
        finish_reason=Sample.FinishReason.END_OF_TURN,
        logprob_sum=-3.0,
    )
    Message.objects.filter(pk=reply.pk).update(sample=sample)
    reply.refresh_from_db()
    return reply


@pytest.mark.parametrize("path", ["correct", "edit"])
def test_a_correction_keeping_the_failed_replys_words_is_the_trainers_own(red_team, trainer, path):
    """It must not carry the failed sample (nor, through it, its moderation flag) or be taken
    for a model reply (a ranking source, "model_edited" in the demonstrations)."""
    _, _, reply = red_team
    reply = _from_a_sample(reply, trainer)
    attack = redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    rewritten = f"{FAILED} No: I will not help you into someone else's home."
    if path == "correct":
        correct = redteam_services.attack_correct
        correction = correct(attack=attack, author=trainer, content=rewritten)
    else:
        correction = services.message_branch(original=reply, author=trainer, content=rewritten)
    attack.refresh_from_db()
    assert attack.correction == correction
    assert correction.origin == Message.Origin.HUMAN
    assert correction.sample is None and correction.model_version is None


def test_an_attacked_reply_edited_into_a_new_branch_is_corrected_by_that_edit(red_team, trainer):
    _, _, reply = red_team
    attack = redteam_services.attack_record(message=reply, user=trainer, category="privacy")
    edited = services.message_branch(original=reply, author=trainer, content=CORRECTION)
    attack.refresh_from_db()
    assert attack.correction == edited and edited.parent == reply.parent
    # Once corrected, a further edit of the failed reply is only a branch.
    other = services.message_branch(original=reply, author=trainer, content="Something else.")
    attack.refresh_from_db()
    assert attack.correction == edited != other


def test_a_mark_made_by_mistake_can_be_withdrawn(red_team, trainer):
    _, _, reply = red_team
    attack = redteam_services.attack_record(message=reply, user=trainer, category="false")
    redteam_services.attack_withdraw(attack=attack, user=trainer)
    assert not Attack.objects.exists()


def test_rerun_scores_replies_with_the_active_reward_model(
    policy, trainer, admin_user, micro_model_dir, tmp_path, settings
):
    settings.RANKING_MAX_NEW_TOKENS = 8
    tokenizer = load_tokenizer(micro_model_dir)
    build_reward_model(micro_model_dir, tokenizer).save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    reward = model_version_promote(
        version=model_version_register(name="rm", path=str(tmp_path / "rm"), kind="reward")
    )
    attacks = two_attacks(trainer, policy)
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )
    run = job_run_inline(job=run)
    assert run.status == "succeeded", run.error
    assert run.reward_model_version == reward
    by_attack = {r.attack_id: r for r in run.results.all()}
    assert len(by_attack) == 2
    assert all(isinstance(r.reward_score, float) for r in by_attack.values())
    assert all(isinstance(r.failed_reply_reward_score, float) for r in by_attack.values())
    assert isinstance(by_attack[attacks[0].pk].correction_reward_score, float)
    assert by_attack[attacks[1].pk].correction_reward_score is None


def test_a_rerun_needs_an_admin_a_policy_and_stored_attacks(admin_user, trainer, model_version):
    with pytest.raises(ValidationError, match="No attacks"):
        redteam_services.attack_run_create(requested_by=admin_user, model_version=model_version)
    with pytest.raises(PermissionDenied):
        redteam_services.attack_run_create(requested_by=trainer, model_version=model_version)
    reward = ModelVersion.objects.create(name="rm", path="/rm", kind="reward")
    with pytest.raises(ValidationError, match="policy"):
        redteam_services.attack_run_create(requested_by=admin_user, model_version=reward)
