import os
import signal
import threading
from collections.abc import Iterator
from functools import partial
from http.server import ThreadingHTTPServer

import pytest
from billiard.common import clear_terminate_handler_fired
from django.core.exceptions import ValidationError
from django.urls import reverse

from labeling.redteam import services as redteam_services
from labeling.redteam.models import AttackResult, AttackRun
from sampler.jobs.services import job_cancel, job_execute, job_run_inline
from tests.labeling.redteam.conftest import stored_attacks, two_attacks

RESULT_NOT_JUDGED = "not judged yet"


def _two_attacks_run(policy, trainer, admin_user) -> AttackRun:
    """A run of two stored attacks, run here to its end (successful)."""
    two_attacks(trainer, policy)
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )
    run = job_run_inline(job=run)
    assert run.status == AttackRun.Status.SUCCEEDED, run.error
    return run


def _assert_flagged_everything(run: AttackRun) -> None:
    """Both of ``run``'s results record the verdict their judged samples got (everything)."""
    results = list(run.results.select_related("sample"))
    assert len(results) == 2
    for result in results:
        assert not result.sample.moderation_pending
        assert result.filter_flagged is True and result.filter_categories == ["everything"]


def test_a_run_the_content_filter_cannot_run_on_keeps_its_replies_with_no_verdict(
    policy, trainer, admin_user, settings
):
    """A content filter that cannot run (here a setting refused) stops no re-run: each reply is
    kept with no verdict, its sample waiting for the sweep, and the reason is recorded. Before,
    the run failed at its start with the filter's error."""
    from sampler.moderation.models import ContentFilterProblem

    settings.RANKING_MAX_NEW_TOKENS = 8
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": [" "]}

    run = _two_attacks_run(policy, trainer, admin_user)

    results = list(run.results.all())
    assert len(results) == 2
    for result in results:
        assert result.sample is not None and result.sample.moderation_pending
        assert result.filter_flagged is None and result.error == ""
    assert "CONTENT_FILTER_WORDS" in ContentFilterProblem.objects.get().reason


def test_the_sweep_gives_its_verdict_to_the_results_made_while_the_filter_could_not_run(
    policy, trainer, admin_user, settings
):
    """A result made while the content filter could not run records no verdict; once the
    filter runs again, the sweep that judges its sample gives the result the verdict too (the
    run's page and its flagged count read it). Before, the result kept showing none."""
    from labeling.conversations.tasks import moderate_pending_message_texts

    settings.RANKING_MAX_NEW_TOKENS = 8
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": [" "]}  # refused: cannot run
    run = _two_attacks_run(policy, trainer, admin_user)
    assert all(result.filter_flagged is None for result in run.results.all())

    settings.CONTENT_FILTER_WORDS = {}
    settings.CONTENT_FILTER_PATTERNS = {"everything": [r"[\s\S]"]}  # runs, flags every reply
    moderate_pending_message_texts()

    _assert_flagged_everything(run)


def test_the_run_page_says_a_reply_waiting_for_the_filter_is_not_judged_yet(
    policy, trainer, admin_user, settings, client
):
    """A result whose sample waits for the content filter says so on the run's page, where its
    verdict is shown once it has one; not once no filter is configured (nothing would judge
    it). Before, it showed a dash, as for a run with no filter at all."""
    settings.RANKING_MAX_NEW_TOKENS = 8
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": [" "]}  # refused: cannot run
    run = _two_attacks_run(policy, trainer, admin_user)
    client.force_login(admin_user)

    page = client.get(reverse("labeling:attack-run", args=[run.pk])).content.decode()
    settings.CONTENT_FILTER = "none"
    page_with_no_filter = client.get(reverse("labeling:attack-run", args=[run.pk])).content

    assert page.count(RESULT_NOT_JUDGED) == 2
    assert RESULT_NOT_JUDGED not in page_with_no_filter.decode()


def test_a_run_started_while_the_filter_could_not_run_keeps_the_verdict_its_replies_got(
    policy, trainer, admin_user, settings, monkeypatch
):
    """A run that found the content filter unable to run at its start, whose replies were
    then judged as they were stored (the filter ran again meanwhile), records their verdicts:
    no sample of its is left waiting for the sweep to give one."""
    from sampler.moderation.services import ContentFilterUnavailable

    def cannot_run():
        raise ContentFilterUnavailable("down at the run's start")

    settings.RANKING_MAX_NEW_TOKENS = 8
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_PATTERNS = {"everything": [r"[\s\S]"]}
    monkeypatch.setattr(redteam_services, "content_filter_ready", cannot_run)

    run = _two_attacks_run(policy, trainer, admin_user)

    _assert_flagged_everything(run)


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


def test_a_run_asks_for_no_more_tokens_than_the_version_s_context_and_the_cap_leave(
    policy, trainer, admin_user, settings
):
    """The runs' limit (``RANKING_MAX_NEW_TOKENS``) is lowered to what the version takes, or
    every attack would be refused for it; a context that holds no reply refuses the run."""
    from sampler.generation.params import MIN_PROMPT_TOKENS
    from sampler.registry.models import ModelVersion

    settings.RANKING_MAX_NEW_TOKENS = 96
    two_attacks(trainer, policy)
    ModelVersion.objects.filter(pk=policy.pk).update(context_length=MIN_PROMPT_TOKENS + 40)
    policy.refresh_from_db()
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )
    assert run.params == {"max_new_tokens": 40}
    run = job_run_inline(job=run)
    assert run.status == AttackRun.Status.SUCCEEDED
    assert all(result.error == "" for result in run.results.all())

    settings.GENERATION_MAX_NEW_TOKENS = 30
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )
    assert run.params == {"max_new_tokens": 30}

    ModelVersion.objects.filter(pk=policy.pk).update(context_length=MIN_PROMPT_TOKENS)
    policy.refresh_from_db()
    with pytest.raises(ValidationError) as error:
        redteam_services.attack_run_create(
            requested_by=admin_user, model_version=policy, queue=False
        )
    assert "too short for any reply" in error.value.message_dict["model_version"][0]
    assert AttackRun.objects.count() == 2


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


def test_a_run_against_a_server_that_is_down_goes_back_to_its_queue(
    policy, trainer, admin_user, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from config.celery import app
    from sampler.generation.backends import backends_clear
    from sampler.registry.services import model_version_register
    from tests.conftest import free_port

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args=(), **options: sent.append(args))
    settings.RANKING_MAX_NEW_TOKENS = 8
    two_attacks(trainer, policy)
    port = free_port()  # nothing listens there
    served = model_version_register(
        name="served-elsewhere",
        path="",
        backend="openai",
        backend_options={"base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "max_retries": 0},
        context_length=256,
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = redteam_services.attack_run_create(requested_by=admin_user, model_version=served)
    with django_capture_on_commit_callbacks(execute=True):
        job_execute(kind_name="attack_run", job_id=run.pk, token=sent[-1][2])
    backends_clear()
    run.refresh_from_db()
    # Queued again (published anew), the server named; no attack recorded as failed.
    assert run.status == AttackRun.Status.QUEUED and run.attempts == 1
    assert f"127.0.0.1:{port}" in run.error
    assert len(sent) == 2 and sent[-1][2] == run.publish_token
    assert not AttackResult.objects.filter(run=run).exists()


@pytest.fixture
def published_run_whose_first_reply_meets(
    policy, trainer, admin_user, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """``(first)``: a run of two stored attacks, published, whose first call to the model runs
    ``first`` before it is made (the others are made as usual); and the calls, as made."""
    from sampler.generation import services as generation_services

    def published(first) -> tuple[AttackRun, list]:
        generate = generation_services._generate
        calls = []

        def generated(jobs):
            calls.append(jobs)
            if len(calls) == 1:
                first()
            return generate(jobs)

        monkeypatch.setattr(generation_services, "_generate", generated)
        settings.RANKING_MAX_NEW_TOKENS = 8
        two_attacks(trainer, policy)
        with django_capture_on_commit_callbacks(execute=True):
            run = redteam_services.attack_run_create(requested_by=admin_user, model_version=policy)
        run.refresh_from_db()
        return run, calls

    return published


def test_a_time_limit_met_generating_an_attacks_reply_stops_the_run_with_it(
    broker, published_run_whose_first_reply_meets
):
    """A worker's time limit (Celery's soft limit) is the run's, the job its message runs,
    wherever it is met: in the generation job the run runs inside its own, it stops the run,
    failed with the time limit as a run meeting it anywhere else is, and that job fails saying
    why; no attack's result records it. Before, the generation job took it as its own failure,
    the attack's result recorded "ran past its time limit", and the run went on to the next
    attack and succeeded."""
    from celery.exceptions import SoftTimeLimitExceeded

    from sampler.generation.models import GenerationJob

    def out_of_time():
        raise SoftTimeLimitExceeded()

    run, calls = published_run_whose_first_reply_meets(out_of_time)
    job_execute(kind_name="attack_run", job_id=run.pk, token=run.publish_token)

    run.refresh_from_db()
    assert run.status == AttackRun.Status.FAILED
    assert run.error == "It ran past its time limit and was stopped."
    assert len(calls) == 1 and not AttackResult.objects.filter(run=run).exists()
    [job] = GenerationJob.objects.all()
    assert job.status == GenerationJob.Status.FAILED
    assert job.error == "Stopped: the job it ran inside ran past its time limit."


def test_a_run_stopped_with_its_worker_sends_the_reply_it_was_generating_when_it_resumes(
    broker,
    django_capture_on_commit_callbacks,
    pool_process_signals,
    published_run_whose_first_reply_meets,
):
    """The worker's cold shutdown (a TERM to its pool process) landing while a run generates an
    attack's reply hands the run back to its queue, and the generation job it runs inside its
    own goes back with it: queued again, its attempt not counted, with no message of its own
    (no worker runs it apart from its run), and the resumed run sends that job rather than a
    new one: one job per attack, none failed. Before, that job was failed "Interrupted; retry it
    to resume." and the resumed run made another in its place, leaving a failed job in the job
    lists and counts for each stop, whose retry would generate a reply no run reads."""
    from sampler.generation.models import GenerationJob

    run, _ = published_run_whose_first_reply_meets(partial(os.kill, os.getpid(), signal.SIGTERM))
    sent_before = len(broker.sent)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(SystemExit):
        job_execute(kind_name="attack_run", job_id=run.pk, token=run.publish_token)

    run.refresh_from_db()
    assert (run.status, run.attempts) == (AttackRun.Status.QUEUED, 0)
    [stopped] = GenerationJob.objects.all()
    assert (stopped.status, stopped.attempts, stopped.error) == (GenerationJob.Status.QUEUED, 0, "")
    assert stopped.queue == "" and not stopped.samples.exists()
    assert [message["args"] for message in broker.sent[sent_before:]] == [
        ("attack_run", run.pk, run.publish_token)
    ]

    clear_terminate_handler_fired()  # the next worker's pool process
    run = job_execute(kind_name="attack_run", job_id=run.pk, token=run.publish_token)
    assert run.status == AttackRun.Status.SUCCEEDED, run.error
    jobs = GenerationJob.objects.all()
    assert [job.status for job in jobs] == [GenerationJob.Status.SUCCEEDED] * 2
    assert {result.sample.job_id for result in run.results.all()} == {job.pk for job in jobs}
    assert stopped.pk in {job.pk for job in jobs}


def test_a_run_stopped_with_its_worker_then_cancelled_cancels_the_job_it_left_queued(
    broker,
    django_capture_on_commit_callbacks,
    pool_process_signals,
    published_run_whose_first_reply_meets,
):
    """The generation job a stopped run left queued (no queue, no message: only its run would
    send it) goes with the run when that is cancelled, rather than staying queued for good in
    the job lists and counts; a retry of the run makes a new one."""
    from sampler.generation.models import GenerationJob

    run, _ = published_run_whose_first_reply_meets(partial(os.kill, os.getpid(), signal.SIGTERM))
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(SystemExit):
        job_execute(kind_name="attack_run", job_id=run.pk, token=run.publish_token)
    clear_terminate_handler_fired()
    [stopped] = GenerationJob.objects.all()
    assert stopped.status == GenerationJob.Status.QUEUED

    job_cancel(job=run)
    stopped.refresh_from_db()
    assert stopped.status == GenerationJob.Status.CANCELLED


def test_a_projects_attack_run_reruns_only_that_projects_attacks(
    policy, trainer, admin_user, settings
):
    from labeling.redteam.models import Attack
    from ranking.projects.services import project_create

    settings.RANKING_MAX_NEW_TOKENS = 8
    first, second = two_attacks(trainer, policy)
    safety = project_create(name="Safety", slug="safety", status="active")
    Attack.objects.filter(pk=second.pk).update(project=safety)
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, project=safety, queue=False
    )
    assert run.project == safety and run.attack_count == 1
    run = job_run_inline(job=run)
    assert list(run.results.values_list("attack_id", flat=True)) == [second.pk]
    # Its replies' generation jobs are the project's work too, not the default project's.
    assert run.results.get().sample.job.project == safety
    default_run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )
    assert default_run.attack_count == 1
    default_run = job_run_inline(job=default_run)
    assert list(default_run.results.values_list("attack_id", flat=True)) == [first.pk]


def test_an_attack_the_policy_cannot_take_fails_alone_not_the_whole_run(
    policy, trainer, admin_user, settings
):
    from labeling.conversations import services
    from labeling.conversations.models import Message
    from tests.labeling.conftest import model_reply

    settings.RANKING_MAX_NEW_TOKENS = 8
    attacks = two_attacks(trainer, policy)
    # A many-turn attack: more turns before the reply than a generation prefix may hold.
    conversation = services.conversation_create(owner=trainer, mode="red_team")
    turn = None
    for index in range(201):
        role = "user" if index % 2 == 0 else "assistant"
        turn = Message.objects.create(
            conversation=conversation, parent=turn, role=role, content=f"turn {index}"
        )
    reply = model_reply(conversation, turn, policy, text="bad reply")
    long_attack = redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )

    run = job_run_inline(job=run)

    assert run.status == AttackRun.Status.SUCCEEDED
    results = {result.attack_id: result for result in run.results.all()}
    assert results.keys() == {attacks[0].pk, attacks[1].pk, long_attack.pk}
    assert "At most 200 messages." in results[long_attack.pk].error
    # Sent again as it is, it is refused again: a retry of the run's failures leaves it out.
    assert results[long_attack.pk].error_permanent
    assert results[long_attack.pk].sample is None
    assert all(results[attack.pk].sample is not None for attack in attacks)


def test_an_attack_withdrawn_before_its_run_starts_is_not_counted_as_missing(
    policy, trainer, admin_user, settings
):
    settings.RANKING_MAX_NEW_TOKENS = 8
    first, second = two_attacks(trainer, policy)
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )
    assert run.attack_count == 2
    redteam_services.attack_withdraw(attack=second, user=trainer)  # not corrected: withdrawable

    run = job_run_inline(job=run)

    assert run.status == AttackRun.Status.SUCCEEDED
    assert list(run.results.values_list("attack_id", flat=True)) == [first.pk]
    assert run.attack_count == 1  # the overview reads "1 / 1", not "1 / 2"


def test_a_capped_run_resumed_after_a_withdrawal_takes_in_no_attack_it_did_not_have(
    policy, trainer, admin_user, settings, monkeypatch
):
    settings.RANKING_MAX_NEW_TOKENS = 8
    monkeypatch.setattr(redteam_services, "MAX_ATTACKS_PER_RUN", 2)
    oldest, middle, newest = stored_attacks(trainer, policy, 3)
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )
    assert run.attack_count == 2  # the two newest
    run = job_run_inline(job=run)
    assert set(run.results.values_list("attack_id", flat=True)) == {middle.pk, newest.pk}
    # As if the worker died before the newest attack's result; that attack is withdrawn, and
    # the run resumed.
    AttackResult.objects.filter(run=run, attack=newest).delete()
    AttackRun.objects.filter(pk=run.pk).update(status="failed")
    redteam_services.attack_withdraw(attack=newest, user=trainer)

    run = job_run_inline(job=AttackRun.objects.get(pk=run.pk))

    assert run.status == AttackRun.Status.SUCCEEDED
    assert list(run.results.values_list("attack_id", flat=True)) == [middle.pk]
    assert run.attack_count == 1
    assert not AttackResult.objects.filter(attack=oldest).exists()


def _run_to_the_end(admin_user, policy) -> AttackRun:
    """A re-run of the stored attacks against ``policy``, run here to its end; tests then set
    its rows back to a state it passed through."""
    return job_run_inline(
        job=redteam_services.attack_run_create(
            requested_by=admin_user, model_version=policy, queue=False
        )
    )


def test_a_resumed_run_reuses_or_cancels_the_generation_jobs_it_left_unfinished(
    policy, trainer, admin_user, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from sampler.generation.models import GenerationJob

    settings.RANKING_MAX_NEW_TOKENS = 8
    left_queued, left_running = stored_attacks(trainer, policy, 2)
    run = _run_to_the_end(admin_user, policy)
    queued_job = run.results.get(attack=left_queued).sample.job
    running_job = run.results.get(attack=left_running).sample.job
    # As if the worker died with one attack's job not started yet and the other's mid-way.
    AttackResult.objects.filter(run=run).delete()
    for job, status in ((queued_job, "queued"), (running_job, "running")):
        job.samples.all().delete()
        GenerationJob.objects.filter(pk=job.pk).update(
            status=status,
            finished_at=None,
            heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER + 60),
        )
    AttackRun.objects.filter(pk=run.pk).update(status="failed")

    run = job_run_inline(job=AttackRun.objects.get(pk=run.pk))

    assert run.status == AttackRun.Status.SUCCEEDED
    # The job left queued is the one that ran; the one left running was cancelled, and a new
    # one made in its place: each attack was generated once, and no job is left unfinished.
    assert run.results.get(attack=left_queued).sample.job == queued_job
    running_job.refresh_from_db()
    assert running_job.status == GenerationJob.Status.CANCELLED
    assert run.results.get(attack=left_running).sample.job != running_job
    assert GenerationJob.objects.count() == 3
    assert not GenerationJob.objects.filter(status__in=["queued", "running"]).exists()


def test_an_attack_withdrawn_while_its_run_runs_leaves_its_count_and_stops_its_job(
    policy, trainer, admin_user, settings
):
    """The run's "n / m" drops the attack at once, and its reply is not generated for nothing."""
    from sampler.generation.models import GenerationJob

    settings.RANKING_MAX_NEW_TOKENS = 8
    kept, withdrawn = stored_attacks(trainer, policy, 2)
    run = _run_to_the_end(admin_user, policy)
    job = run.results.get(attack=withdrawn).sample.job
    # As if the run were mid-way: its result for the attack not written, its job still running.
    AttackResult.objects.filter(run=run, attack=withdrawn).delete()
    GenerationJob.objects.filter(pk=job.pk).update(status="running", finished_at=None)
    AttackRun.objects.filter(pk=run.pk).update(status="running")

    redteam_services.attack_withdraw(attack=withdrawn, user=trainer)

    run.refresh_from_db()
    job.refresh_from_db()
    assert run.attack_count == 1
    assert job.status == GenerationJob.Status.CANCELLED
    assert list(run.results.values_list("attack_id", flat=True)) == [kept.pk]


def test_a_retried_run_tries_again_the_attacks_it_could_not_generate_and_keeps_the_rest(
    policy, trainer, admin_user, settings
):
    from sampler.generation.models import GenerationJob
    from sampler.jobs.services import job_retry

    settings.RANKING_MAX_NEW_TOKENS = 8
    kept, failed = stored_attacks(trainer, policy, 2)
    run = _run_to_the_end(admin_user, policy)
    kept_result = run.results.get(attack=kept)
    # As if the reply to one attack could not be generated, and the run then failed.
    failed_job = run.results.get(attack=failed).sample.job
    GenerationJob.objects.filter(pk=failed_job.pk).update(status="failed", error="out of memory")
    AttackResult.objects.filter(run=run, attack=failed).update(
        sample=None, text="", filter_flagged=None, error="out of memory"
    )
    AttackRun.objects.filter(pk=run.pk).update(status="failed", error="scoring failed")

    job_retry(job=AttackRun.objects.get(pk=run.pk))
    run = job_run_inline(job=AttackRun.objects.get(pk=run.pk))

    assert run.status == AttackRun.Status.SUCCEEDED
    assert run.results.count() == 2
    retried = run.results.get(attack=failed)
    assert retried.error == "" and retried.sample is not None
    assert retried.sample.job != failed_job  # generated again, by a new job
    # The reply the run had is kept as it was, not generated again.
    assert run.results.get(attack=kept) == kept_result
    assert run.results.get(attack=kept).sample == kept_result.sample


def test_a_retried_run_keeps_the_failures_the_model_refused_for_what_they_ask(
    policy, trainer, admin_user, settings
):
    """A failed run retried itself re-sends the attacks whose failure could pass on another
    try; one the model refused for what it asks stays as it was recorded."""
    from sampler.jobs.services import job_retry

    settings.RANKING_MAX_NEW_TOKENS = 8
    crashed, refused = stored_attacks(trainer, policy, 2)
    run = _run_to_the_end(admin_user, policy)
    AttackResult.objects.filter(run=run, attack=crashed).update(
        sample=None, text="", filter_flagged=None, error="RuntimeError: CUDA error"
    )
    AttackResult.objects.filter(run=run, attack=refused).update(
        sample=None, text="", filter_flagged=None, error="too long", error_permanent=True
    )
    refused_result = run.results.get(attack=refused)
    AttackRun.objects.filter(pk=run.pk).update(status="failed", error="scoring failed")

    job_retry(job=AttackRun.objects.get(pk=run.pk))
    run = job_run_inline(job=AttackRun.objects.get(pk=run.pk))

    assert run.status == AttackRun.Status.SUCCEEDED
    assert run.results.get(attack=crashed).sample is not None
    kept = run.results.get(attack=refused)
    assert kept == refused_result and kept.error == "too long" and kept.error_permanent


def test_a_succeeded_runs_failed_attacks_are_retried_as_a_new_run_by_the_executor(
    policy, trainer, admin_user, settings
):
    import pytest
    from django.core.exceptions import ValidationError

    from sampler.jobs.services import job_retry

    settings.RANKING_MAX_NEW_TOKENS = 8
    kept, failed = stored_attacks(trainer, policy, 2)
    run = _run_to_the_end(admin_user, policy)
    # As if the model call for one attack had failed: the run succeeded with an error result.
    AttackResult.objects.filter(run=run, attack=failed).update(
        sample=None, text="", filter_flagged=None, error="The model server answered 500."
    )
    # A succeeded run is not retried itself (that would resume nothing).
    with pytest.raises(ValidationError, match="Only failed or cancelled jobs"):
        job_retry(job=run)

    retry = redteam_services.attack_run_retry_failed(run=run, requested_by=admin_user, queue=False)

    assert retry.retry_of == run and retry.attack_count == 1
    assert list(retry.entries.values_list("attack_id", flat=True)) == [failed.pk]
    assert (retry.model_version, retry.seed, retry.params, retry.project_id) == (
        run.model_version,
        run.seed,
        run.params,
        run.project_id,
    )
    retry = job_run_inline(job=retry)
    assert retry.status == AttackRun.Status.SUCCEEDED
    result = retry.results.get()
    assert result.attack == failed and result.error == "" and result.sample is not None
    # The first run's results stay as its record.
    assert run.results.get(attack=failed).error == "The model server answered 500."
    assert run.results.get(attack=kept).sample is not None
    # Once per run; a retry whose attacks all got their reply has nothing to retry.
    with pytest.raises(ValidationError, match=f"retried by run {retry.pk}"):
        redteam_services.attack_run_retry_failed(run=run, requested_by=admin_user, queue=False)
    with pytest.raises(ValidationError, match="nothing to retry"):
        redteam_services.attack_run_retry_failed(run=retry, requested_by=admin_user, queue=False)
    assert AttackRun.objects.count() == 2


@pytest.fixture
def served_policy(db) -> Iterator:
    """A policy served by a chat-completions server this test runs, which refuses a prompt
    past its context (``TOO_LONG``) as vLLM does and answers any other."""
    from sampler.generation.backends import backends_clear
    from sampler.registry.services import model_version_register
    from tests.sampler.generation.test_backends import ChatServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield model_version_register(
            name="served",
            path="",
            backend="openai",
            context_length=4096,
            backend_options={
                "base_url": f"http://127.0.0.1:{server.server_port}/v1",
                "model": "policy",
                "max_retries": 0,
            },
        )
    finally:
        backends_clear()
        server.shutdown()
        server.server_close()


def test_retrying_failed_attacks_leaves_out_those_the_model_refused_for_what_they_ask(
    served_policy, trainer, admin_user, settings
):
    """An attack whose prompt the model's server refused as longer than its context would be
    refused again: the retry sends only the failures that could pass on another try, and says
    how many it left out; a run whose failures are all such refusals has nothing to retry."""
    from django.core.exceptions import ValidationError

    from labeling.conversations import services
    from tests.labeling.conftest import model_reply
    from tests.sampler.generation.test_backends import TOO_LONG

    settings.RANKING_MAX_NEW_TOKENS = 8
    answered, crashed = stored_attacks(trainer, served_policy, 2)
    conversation = services.conversation_create(owner=trainer, mode="red_team")
    prompt = services.message_append(conversation=conversation, author=trainer, content=TOO_LONG)
    too_long = redteam_services.attack_record(
        message=model_reply(conversation, prompt, served_policy, text="bad reply"),
        user=trainer,
        category="jailbreak",
    )
    run = _run_to_the_end(admin_user, served_policy)
    assert run.status == AttackRun.Status.SUCCEEDED
    assert "maximum context length" in run.results.get(attack=too_long).error
    assert run.results.get(attack=answered).error == ""
    # As if the engine had crashed on another attack: a failure another try may not meet.
    AttackResult.objects.filter(run=run, attack=crashed).update(
        sample=None, text="", filter_flagged=None, error="RuntimeError: CUDA error"
    )

    retry = redteam_services.attack_run_retry_failed(run=run, requested_by=admin_user, queue=False)

    assert list(retry.entries.values_list("attack_id", flat=True)) == [crashed.pk]
    assert retry.attack_count == 1 and retry.refusals_left_out == 1
    retry = job_run_inline(job=retry)
    assert retry.results.get().attack == crashed and retry.results.get().error == ""
    # Each failure says which it was; the first run's stay as its record.
    assert run.results.get(attack=too_long).error_permanent
    assert not run.results.get(attack=crashed).error_permanent
    assert not run.results.get(attack=answered).error_permanent

    # A run whose only failure is a refusal: nothing to retry, and the reason why.
    again = _run_to_the_end(admin_user, served_policy)
    assert list(again.results.exclude(error="").values_list("attack_id", flat=True)) == [
        too_long.pk
    ]
    with pytest.raises(ValidationError) as refused:
        redteam_services.attack_run_retry_failed(run=again, requested_by=admin_user, queue=False)
    assert refused.value.messages == [
        f"Run {again.pk}'s 1 failed attack was refused by the model for what it asks (a prompt "
        "longer than its context, a turn it cannot write): sent again, it would be refused "
        "again. Nothing to retry."
    ]
    assert not AttackRun.objects.filter(retry_of=again).exists()


def test_retrying_failed_attacks_is_for_admins_and_succeeded_runs_and_keeps_the_reward_model(
    policy, trainer, admin_user
):
    import pytest
    from django.core.exceptions import PermissionDenied, ValidationError

    from sampler.models import ModelVersion

    (attack,) = stored_attacks(trainer, policy, 1)
    run = redteam_services.attack_run_create(
        requested_by=admin_user, model_version=policy, queue=False
    )
    reward = ModelVersion.objects.create(name="rm-v1", path="/nowhere", kind="reward")
    AttackResult.objects.create(run=run, attack=attack, error="Generation failed.")
    AttackRun.objects.filter(pk=run.pk).update(status="failed", reward_model_version=reward)
    with pytest.raises(ValidationError, match="a failed or cancelled run is retried itself"):
        redteam_services.attack_run_retry_failed(run=run, requested_by=admin_user, queue=False)
    AttackRun.objects.filter(pk=run.pk).update(status="succeeded")
    with pytest.raises(PermissionDenied):
        redteam_services.attack_run_retry_failed(run=run, requested_by=trainer, queue=False)
    retry = redteam_services.attack_run_retry_failed(run=run, requested_by=admin_user, queue=False)
    assert retry.reward_model_version == reward and retry.requested_by == admin_user
