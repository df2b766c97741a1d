from labeling.redteam import services as redteam_services
from labeling.redteam.models import AttackResult, AttackRun
from sampler.jobs.services import job_execute, job_run_inline
from tests.labeling.redteam.conftest import two_attacks


def test_rerunning_stored_attacks_records_one_result_per_attack(
    policy, trainer, admin_user, settings
):
    settings.RANKING_MAX_NEW_TOKENS = 8
    attacks = two_attacks(trainer, policy)
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )
    assert run.attack_count == 2 and run.status == AttackRun.Status.QUEUED
    run = job_run_inline(job=run)
    assert run.status == AttackRun.Status.SUCCEEDED and run.progress == 1.0
    results = list(run.results.order_by("attack_id"))
    assert [r.attack_id for r in results] == sorted(a.pk for a in attacks)
    for result in results:
        assert result.error == "" and result.sample is not None
        assert result.sample.job.model_version == policy
        assert result.sample.job.prompt_messages == result.attack.prompt_messages
        assert result.filter_flagged is not None  # the builtin filter looked at it
        assert result.reward_score is None  # no reward model is active
    assert run.reward_model_version is None and run.filter_name.startswith("builtin")
    assert run.attempts == 1 and run.started_at and run.finished_at
    # A message delivered again finds the run finished and stores nothing twice.
    assert job_execute(kind_name="attack_run", job_id=run.pk, token=run.publish_token) is None
    assert AttackResult.objects.filter(run=run).count() == 2


def test_a_run_stopped_midway_resumes_without_duplicates(policy, trainer, admin_user, settings):
    settings.RANKING_MAX_NEW_TOKENS = 8
    two_attacks(trainer, policy)
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )
    job_run_inline(job=run)
    first = AttackResult.objects.filter(run=run).order_by("attack_id").first()
    # As if the worker died after the first attack: one result kept, the run running again.
    AttackResult.objects.filter(run=run).exclude(pk=first.pk).delete()
    AttackRun.objects.filter(pk=run.pk).update(status="failed")
    run = job_run_inline(job=AttackRun.objects.get(pk=run.pk))
    assert run.status == AttackRun.Status.SUCCEEDED
    results = AttackResult.objects.filter(run=run)
    assert results.count() == 2 and results.filter(pk=first.pk).exists()
