from labeling.redteam import services as redteam_services
from labeling.redteam.models import AttackResult, AttackRun
from labeling.tasks import run_attack_run
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
    run_attack_run(run.pk)
    run.refresh_from_db()
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
    # A redelivered task finds the run finished and stores nothing twice.
    run_attack_run(run.pk)
    assert AttackResult.objects.filter(run=run).count() == 2
