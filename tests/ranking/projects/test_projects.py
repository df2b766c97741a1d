import json
import random
import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from config.forms import DefaultProjectChoiceField
from config.text import LINE_MESSAGE, NUL_MESSAGE
from labeling.conversations import services as labeling_services
from labeling.models import Conversation
from ranking.exports.filters import ExportFilters
from ranking.exports.pipeline import records
from ranking.gold.services import gold_task_create
from ranking.models import Assignment, Ranking, RankingTask
from ranking.projects.forms import ProjectForm
from ranking.projects.models import DEFAULT_PROJECT_SLUG, Project
from ranking.projects.selectors import (
    CHOSEN_PROJECT_SESSION_KEY,
    project_ids_by_slug,
    project_progress,
)
from ranking.projects.services import project_create
from ranking.rank import services
from sampler.models import GenerationJob, ModelVersion
from sampler.runs.models import TrainingRun
from sampler.runs.sources import reward_records
from tests.ranking.conftest import (
    candidate_ids,
    finished_conversation,
    model_version_create,
    quick_trainer,
    rank,
    ranked_in_halves,
    task_from_source,
)

pytestmark = pytest.mark.django_db


def _source(owner, project=None, text="q"):
    conversation = finished_conversation(owner, turns=(f"{text}?", f"{text}!"))
    if project is not None:
        Conversation.objects.filter(pk=conversation.pk).update(project=project)
    return conversation.messages.get(role="assistant")


def _ready_task(owner, project, version, text="q"):
    task = task_from_source(_source(owner, project, text), model_version=version)
    if project is not None:
        RankingTask.objects.filter(pk=task.pk).update(project=project)
    return RankingTask.objects.get(pk=task.pk)


def _project_with_task(owner, version, slug, **fields):
    """A project named after ``slug`` (active unless ``fields`` say otherwise) with one ready
    task of ``owner``'s."""
    project = project_create(
        name=slug.title(), slug=slug, **{"status": Project.Status.ACTIVE, **fields}
    )
    return project, _ready_task(owner, project, version, slug)


def test_rows_made_without_a_project_belong_to_the_default_project(other_trainer):
    task = _ready_task(other_trainer, None, model_version_create("v"))
    assert task.project.slug == DEFAULT_PROJECT_SLUG
    assert task.source_message.conversation.project_id == task.project_id
    assert task.generation_job.project_id == task.project_id


def test_pool_fills_each_project_from_its_own_conversations_with_its_settings(
    policy, other_trainer, settings
):
    settings.RANKING_MAX_NEW_TOKENS = 8
    safety = project_create(
        name="Safety",
        slug="safety",
        status=Project.Status.ACTIVE,
        alternatives=2,
        overlap=5,
        pool_size=1,
        sampling_params={"temperature": 0.5},
    )
    Project.objects.filter(slug=DEFAULT_PROJECT_SLUG).update(pool_size=0)
    for index in range(3):
        _source(other_trainer, safety, f"safety {index}")
        _source(other_trainer, None, f"default {index}")
    created = services.ranking_pool_fill(rng=random.Random(0))
    assert created == 1  # the default project's pool is 0, the safety project's 1
    task = RankingTask.objects.get()
    assert task.project == safety
    assert task.source_message.conversation.project_id == safety.pk
    assert (task.alternatives_requested, task.overlap_required) == (2, 5)
    assert task.generation_job.project_id == safety.pk
    assert task.generation_job.params["temperature"] == 0.5
    # A paused project's pool is not filled.
    Project.objects.filter(pk=safety.pk).update(status=Project.Status.PAUSED, pool_size=3)
    assert services.ranking_pool_fill(rng=random.Random(1)) == 0


def test_a_project_samples_from_the_policies_it_names_by_weight(policy, other_trainer, settings):
    settings.RANKING_MAX_NEW_TOKENS = 8
    named = ModelVersion.objects.create(name="named", path=policy.path)
    project = project_create(
        name="Helpful", slug="helpful", status=Project.Status.ACTIVE, policies=[(named, 1.0)]
    )
    _source(other_trainer, project)
    task = services.ranking_task_create(project=project, rng=random.Random(0), queue=False)
    assert task.model_version == named != ModelVersion.objects.get(is_active=True)
    assert task.generation_job.model_version == named


def test_one_projects_failing_pool_fill_leaves_the_others_filled(
    policy, other_trainer, settings, monkeypatch, caplog
):
    """What the failing project made before it failed is kept (not rolled back, to be made
    again and fail again at the next fill); the projects after it are filled."""
    settings.RANKING_MAX_NEW_TOKENS = 8
    broken = project_create(name="Broken", slug="broken", status=Project.Status.ACTIVE)
    fine = project_create(name="Fine", slug="fine", status=Project.Status.ACTIVE)
    for project in (broken, fine):
        for text in ("a", "b"):
            _source(other_trainer, project, text)
    create = services.ranking_task_create

    def create_or_fail(**options):
        if options["project"] == broken and RankingTask.objects.filter(project=broken).exists():
            raise ValueError("this project cannot be drawn from")
        return create(**options)

    monkeypatch.setattr(services, "ranking_task_create", create_or_fail)
    assert services.ranking_pool_fill(target=2, rng=random.Random(0)) == 2
    assert RankingTask.objects.filter(project=fine).count() == 2
    assert RankingTask.objects.filter(project=broken).count() == 1
    assert "Filling the pool of project broken failed" in caplog.text


def test_claim_never_crosses_projects_unless_the_trainer_takes_any(other_trainer):
    version = model_version_create("v")
    experts = Group.objects.create(name="experts")
    open_project, in_open = _project_with_task(other_trainer, version, "open")
    closed, in_closed = _project_with_task(
        other_trainer, version, "experts", trainer_groups=[experts]
    )
    _project_with_task(other_trainer, version, "paused", status=Project.Status.PAUSED)
    trainer = quick_trainer("t1")
    # Chosen project: only its tasks.
    assignment = services.task_claim_next(trainer=trainer, project=open_project)
    assert assignment.task == in_open
    services.ranking_submit(
        assignment=assignment,
        trainer=trainer,
        ranking=services.RankingInput([[i] for i in candidate_ids(in_open)]),
    )
    assert services.task_claim_next(trainer=trainer, project=open_project) is None
    # Not in the experts group: never its tasks, even when asking for any project.
    assert services.task_claim_next(trainer=trainer) is None
    assert services.task_claim_next(trainer=trainer, project=closed) is None
    trainer.groups.add(experts)
    assert services.task_claim_next(trainer=trainer).task == in_closed
    assert Ranking.objects.get(ranker=trainer).project == open_project


def test_a_lease_in_a_project_paused_or_closed_since_is_given_back_and_takes_no_ranking(
    other_trainer, client
):
    version = model_version_create("v")
    experts = Group.objects.create(name="experts")
    first, in_first = _project_with_task(other_trainer, version, "first")
    second, in_second = _project_with_task(
        other_trainer, version, "second", trainer_groups=[experts]
    )
    _, in_third = _project_with_task(other_trainer, version, "third")
    trainer = quick_trainer("t1")
    trainer.groups.add(experts)
    held = services.task_claim_next(trainer=trainer)
    assert held.task == in_first
    Project.objects.filter(pk=first.pk).update(status=Project.Status.PAUSED)

    # The Rank page (all projects) no longer shows it; submitting on it is refused.
    client.force_login(trainer)
    assert "data-assignment-id" not in client.get(reverse("ranking:rank")).content.decode()
    ordering = services.RankingInput([[i] for i in candidate_ids(in_first)])
    with pytest.raises(services.RankingConflict, match="paused or no longer open to you"):
        services.ranking_submit(assignment=held, trainer=trainer, ranking=ordering)
    refused = client.post(
        f"/api/ranking/assignments/{held.pk}/submit/",
        {"ordering": ordering.ordering},
        content_type="application/json",
    )
    assert refused.status_code == 409 and "paused" in refused.json()["detail"]

    # The next claim gives the paused project's lease back: one live lease, not two.
    moved = services.task_claim_next(trainer=trainer)
    assert moved.task == in_second
    held.refresh_from_db()
    in_first.refresh_from_db()
    assert (held.status, in_first.leased_count) == ("expired", 0)
    assert list(trainer.ranking_assignments.filter(status="leased")) == [moved]

    # The same when the trainer's groups no longer include the project's; a ranking made
    # there cannot be taken back either.
    ranking = services.ranking_submit(
        assignment=moved,
        trainer=trainer,
        ranking=services.RankingInput([[i] for i in candidate_ids(in_second)]),
    )
    trainer.groups.remove(experts)
    with pytest.raises(services.RankingConflict, match="kept as submitted"):
        services.ranking_undo(ranking_id=ranking.pk, trainer=trainer)
    assert Ranking.objects.filter(pk=ranking.pk).exists()
    assert services.task_claim_next(trainer=trainer).task == in_third
    assert Ranking.objects.get(ranker=trainer).project == second


def test_exports_and_training_data_read_only_the_projects_asked_for(other_trainer):
    version = model_version_create("v")
    first = project_create(name="First", slug="first", status=Project.Status.ACTIVE)
    second = project_create(name="Second", slug="second", status=Project.Status.ACTIVE)
    tasks = {
        first: _ready_task(other_trainer, first, version, "first"),
        second: _ready_task(other_trainer, second, version, "second"),
    }
    ranker = quick_trainer("r1")
    for task in tasks.values():
        rank(task, ranker, [[0], [1], [2], [3]])
    only_first = ExportFilters(project_ids=(first.pk,))
    assert {r["task_id"] for r in records("rankings", only_first)} == {tasks[first].pk}
    assert {r["task_id"] for r in records("pairs", only_first)} == {tasks[first].pk}
    demonstrations = list(records("demonstrations", only_first))
    assert {d["conversation_id"] for d in demonstrations} == {
        tasks[first].source_message.conversation_id
    }
    assert {r["task_id"] for r in reward_records(only_first, sources=("rankings",))} == {
        tasks[first].pk
    }
    # Naming no project is asking for all of them.
    assert {r["task_id"] for r in records("rankings", ExportFilters())} == {
        t.pk for t in tasks.values()
    }


def test_export_command_takes_projects_by_slug_and_refuses_unknown_ones(other_trainer, tmp_path):
    version = model_version_create("v")
    first = project_create(name="First", slug="first", status=Project.Status.ACTIVE)
    second = project_create(name="Second", slug="second", status=Project.Status.ACTIVE)
    kept = _ready_task(other_trainer, first, version, "first")
    rank(kept, quick_trainer("r1"), [[0], [1], [2], [3]])
    rank(
        _ready_task(other_trainer, second, version, "second"),
        quick_trainer("r2"),
        [[1], [0], [2], [3]],
    )
    out = tmp_path / "rankings.jsonl"
    call_command(
        "export_comparisons",
        "--format",
        "rankings",
        "--out",
        str(out),
        "--project",
        "first",
        verbosity=0,
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["task_id"] for row in rows] == [kept.pk]
    with pytest.raises(CommandError, match="Unknown project: nope"):
        call_command(
            "export_comparisons", "--format", "rankings", "--out", str(out), "--project", "nope"
        )


def test_training_command_stores_the_project_filter_of_its_run(policy, other_trainer, settings):
    project = project_create(name="First", slug="first", status=Project.Status.ACTIVE)
    for command in ("train_reward", "train_ppo"):  # the same sentence from both
        with pytest.raises(CommandError) as refused:
            call_command(command, "--project", "nope", "--queue", verbosity=0)
        assert str(refused.value) == "Unknown project: nope."
    ranked_in_halves(other_trainer, settings, "first")  # in the default project
    arguments = ("--project", "first", "--test-fraction", "0", "--queue")
    with pytest.raises(CommandError) as refused:
        call_command("train_reward", *arguments, verbosity=0)
    assert "there is no ranking yet in project “First”" in str(refused.value)
    RankingTask.objects.update(project=project)
    Ranking.objects.update(project=project)
    call_command("train_reward", *arguments, verbosity=0)
    run = TrainingRun.objects.get()
    assert run.dataset["filters"]["project_ids"] == [project.pk]


def test_progress_gives_the_rate_of_the_last_week_and_an_eta(other_trainer):
    version = model_version_create("v")
    project = project_create(
        name="First", slug="first", status=Project.Status.ACTIVE, target_rankings=6
    )
    task = _ready_task(other_trainer, project, version)
    for index in range(2):
        rank(task, quick_trainer(f"r{index}"), [[0], [1], [2], [3]])
    now = timezone.now()
    Ranking.objects.update(submitted_at=now - timedelta(days=2))
    # Two days old: its rate is since it was made.
    Project.objects.filter(pk=project.pk).update(created_at=now - timedelta(days=2))
    project.refresh_from_db()
    progress = project_progress(project=project, now=now)
    assert progress.rankings == 2
    assert progress.rate_per_day == pytest.approx(1.0)
    # 4 rankings to go at one a day.
    assert progress.eta == now + timedelta(days=4)
    assert progress.percent == pytest.approx(100 * 2 / 6)
    # Sixty days old, the same two rankings: two in the last week, not two in two days.
    Project.objects.filter(pk=project.pk).update(created_at=now - timedelta(days=60))
    project.refresh_from_db()
    assert project_progress(project=project, now=now).rate_per_day == pytest.approx(2 / 7)


def test_progress_counts_neither_gold_copies_nor_their_rankings(other_trainer):
    version = model_version_create("v")
    project = project_create(
        name="Gold", slug="gold", status=Project.Status.ACTIVE, target_rankings=3
    )
    task = _ready_task(other_trainer, project, version)
    rank(task, quick_trainer("r0"), [[0], [1], [2], [3]])
    gold = gold_task_create(task=task)
    for index in (1, 2):
        rank(gold, quick_trainer(f"g{index}"), [[0], [1], [2], [3]])
    progress = project_progress(project=project)
    assert (progress.rankings, progress.percent) == (1, pytest.approx(100 / 3))
    assert progress.tasks_ready == 1  # the original, not its gold copy


def test_progress_counts_no_task_or_ranking_of_a_conversation_reopened_or_discarded(
    other_trainer, admin_client
):
    version = model_version_create("v")
    project = project_create(
        name="Sources", slug="sources", status=Project.Status.ACTIVE, target_rankings=4
    )
    kept, reopened, discarded = (
        _ready_task(other_trainer, project, version, text=text) for text in ("k", "r", "d")
    )
    for task in (kept, reopened, discarded):
        rank(task, quick_trainer(f"r-{task.pk}"), [[0], [1], [2], [3]])
    writer = other_trainer
    conversation = labeling_services.conversation_reopen(
        conversation=reopened.source_message.conversation, user=writer
    )
    labeling_services.conversation_discard(
        conversation=labeling_services.conversation_reopen(
            conversation=discarded.source_message.conversation, user=writer
        ),
        user=writer,
    )

    progress = project_progress(project=project)
    assert (progress.rankings, progress.tasks_ready) == (1, 1)
    assert progress.percent == pytest.approx(100 / 4)
    api = admin_client.get(f"/api/projects/{project.pk}/progress/").json()
    assert (api["rankings"], api["tasks_ready"]) == (1, 1)
    # Finished again (its turns unchanged), its task and ranking count again.
    labeling_services.conversation_finish(conversation=conversation, user=writer)
    progress = project_progress(project=project)
    assert (progress.rankings, progress.tasks_ready) == (2, 2)


def test_a_slug_in_another_letter_case_names_its_project(
    other_trainer, trainer, trainer_client, admin_client
):
    project = project_create(name="Uni", slug="uni", status=Project.Status.ACTIVE)
    task = _ready_task(other_trainer, project, model_version_create("v"))

    # The claim API's filter, the chosen project of the Rank page, the guidelines page.
    claim = trainer_client.post("/api/ranking/claim/?project=UNI")
    assert claim.status_code == 200 and claim.json()["task_id"] == task.pk
    chosen = trainer_client.post(reverse("ranking:project-choose"), {"project": "Uni"})
    assert chosen.status_code == 302
    assert trainer_client.session[CHOSEN_PROJECT_SESSION_KEY] == "uni"
    guidelines = trainer_client.get(reverse("labeling:guidelines"), {"project": "UNI"})
    assert guidelines.status_code == 200
    # A new conversation in it, through the API and a page's project choice.
    made = trainer_client.post(
        "/api/conversations/", json.dumps({"project": "UNI"}), content_type="application/json"
    )
    assert made.status_code == 201
    assert Conversation.objects.get(pk=made.json()["id"]).project_id == project.pk
    field = DefaultProjectChoiceField(queryset=Project.objects.all())
    assert field.clean("UNI") == project and field.clean("DEFAULT") is None
    # The commands' --project (exports, training, imports), and the project's page.
    assert project_ids_by_slug(slugs=["UNI", "uni"]) == (project.pk,)
    with pytest.raises(ValidationError) as unknown:
        project_ids_by_slug(slugs=["Uni", "NOPE"])
    assert unknown.value.message_dict == {"project": ["Unknown project: NOPE."]}
    assert admin_client.get("/projects/UNI/").status_code == 200


def test_the_projects_page_says_its_ready_tasks_are_the_pools(other_trainer, trainer_client):
    """The Projects page counts every task ready in a project's pool, the home page those a
    claim could give the trainer: each says whose count it is."""
    project = project_create(name="Pooled", slug="pooled", status=Project.Status.ACTIVE)
    _ready_task(other_trainer, project, model_version_create("v"))

    page = trainer_client.get(reverse("ranking:project-picker")).content.decode()

    assert "1 ready in the pool, 0 preparing" in page


def test_a_target_past_the_calendar_has_no_eta_and_is_late_for_any_deadline(other_trainer):
    now = timezone.now()
    project = project_create(
        name="Huge",
        slug="huge",
        status=Project.Status.ACTIVE,
        target_rankings=10**9,
        deadline=now + timedelta(days=30),
    )
    task = _ready_task(other_trainer, project, model_version_create("v"))
    rank(task, quick_trainer("r0"), [[0], [1], [2], [3]])
    Ranking.objects.update(submitted_at=now - timedelta(days=6))
    Project.objects.filter(pk=project.pk).update(created_at=now - timedelta(days=6))
    project.refresh_from_db()
    # A ranking every six days: a billion of them end after the year 9999.
    progress = project_progress(project=project, now=now)
    assert progress.eta is None and progress.late
    project.deadline = None
    project.save()
    assert not project_progress(project=project, now=now).late


def test_project_api_is_strict_and_for_admins_and_lists_only_open_projects(
    client, admin_user, trainer
):
    experts = Group.objects.create(name="experts")
    project_create(name="Closed", slug="closed", status="active", trainer_groups=[experts])
    client.force_login(trainer)
    created = client.post(
        "/api/projects/", {"name": "X", "slug": "x"}, content_type="application/json"
    )
    assert created.status_code == 403
    assert "closed" not in {p["slug"] for p in client.get("/api/projects/").json()}
    client.force_login(admin_user)
    bad = client.post(
        "/api/projects/",
        {"name": "X", "slug": "x", "overlap": "3"},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "overlap" in bad.json()
    unknown_version = client.post(
        "/api/projects/",
        {"name": "X", "slug": "x", "policies": [{"model_version_id": 999999}]},
        content_type="application/json",
    )
    assert unknown_version.status_code == 400
    extra_key = client.post(
        "/api/projects/",
        {"name": "X", "slug": "x", "policies": [{"model_version_id": 1, "wieght": 2}]},
        content_type="application/json",
    )
    assert extra_key.status_code == 400
    assert "Unknown fields: 'wieght'." in json.dumps(extra_key.json()["policies"])
    # Weights whose sum would not be finite: no draw could be made from them.
    version = model_version_create("huge")
    huge = client.post(
        "/api/projects/",
        {"name": "X", "slug": "x", "policies": [{"model_version_id": version.pk, "weight": 1e308}]},
        content_type="application/json",
    )
    assert huge.status_code == 400 and "policies" in huge.json()
    with pytest.raises(ValidationError, match="at most 1e"):
        project_create(name="X", slug="x", policies=[(version, 1e308), (version, 1e308)])
    # NUL anywhere is refused with the one message the whole API uses, once per field.
    for body, field in [
        ({"name": "X\u0000", "slug": "x"}, "name"),
        ({"name": "X", "slug": "x\u0000"}, "slug"),
        ({"name": "X", "slug": "x", "deadline": "2030-01-01T00:00:00\u0000"}, "deadline"),
        ({"name": "X", "slug": "x", "sampling_params": {"stop": "\u0000"}}, "sampling_params"),
    ]:
        nul = client.post("/api/projects/", body, content_type="application/json")
        assert nul.status_code == 400, body
        (message,) = nul.json()[field]
        assert set(nul.json()) == {field} and message.endswith(NUL_MESSAGE), nul.json()
    ok = client.post(
        "/api/projects/",
        {"name": "Helpful", "slug": "helpful", "status": "active", "alternatives": 6, "overlap": 2},
        content_type="application/json",
    )
    assert ok.status_code == 201, ok.content
    project_id = ok.json()["id"]
    patched = client.patch(
        f"/api/projects/{project_id}/", {"status": "paused"}, content_type="application/json"
    )
    assert patched.json()["status"] == "paused"
    assert client.get(f"/api/projects/{project_id}/progress/").json()["rankings"] == 0
    assert client.get("/api/projects/424242/").status_code == 404


def test_trainers_see_what_a_project_is_and_admins_also_its_configuration(
    client, admin_user, trainer
):
    experts = Group.objects.create(name="experts")
    version = model_version_create("v")
    project_create(
        name="Open",
        slug="open",
        status=Project.Status.ACTIVE,
        gold_rate=0.2,
        policies=[(version, 1.0)],
        trainer_groups=[experts],
    )
    trainer.groups.add(experts)
    client.force_login(trainer)
    (seen,) = [p for p in client.get("/api/projects/").json() if p["slug"] == "open"]
    assert set(seen) == {"id", "name", "slug", "description", "guideline_url", "status", "deadline"}
    client.force_login(admin_user)
    (full,) = [p for p in client.get("/api/projects/").json() if p["slug"] == "open"]
    assert full["gold_rate"] == 0.2 and full["trainer_group_ids"] == [experts.pk]
    assert full["policies"] == [{"model_version_id": version.pk, "weight": 1.0}]
    assert set(seen) < set(full)


def test_trainer_chooses_a_project_on_the_picker_and_ranks_there(client, other_trainer, trainer):
    version = model_version_create("v")
    first = project_create(name="First", slug="first", status=Project.Status.ACTIVE)
    second = project_create(name="Second", slug="second", status=Project.Status.ACTIVE)
    _ready_task(other_trainer, first, version, "first")
    in_second = _ready_task(other_trainer, second, version, "second")
    client.force_login(trainer)
    page = client.get(reverse("ranking:project-picker"))
    assert b"Rank in Second" in page.content
    chosen = client.post(reverse("ranking:project-choose"), {"project": "second"})
    assert chosen.status_code == 302
    client.post(reverse("ranking:claim"))
    assert trainer.ranking_assignments.get().task == in_second
    assert client.post(reverse("ranking:project-choose"), {"project": "nope"}).status_code == 404


def test_a_chosen_project_shows_its_own_task_or_why_it_has_none(client, other_trainer, trainer):
    version = model_version_create("v")
    first = project_create(name="First", slug="first", status=Project.Status.ACTIVE)
    empty = project_create(name="Empty", slug="empty", status=Project.Status.ACTIVE)
    _ready_task(other_trainer, first, version, "first")
    client.force_login(trainer)
    client.post(reverse("ranking:project-choose"), {"project": "first"})
    client.post(reverse("ranking:claim"))
    held = trainer.ranking_assignments.get()
    page = client.get(reverse("ranking:rank")).content.decode()
    assert f'data-assignment-id="{held.pk}"' in page and "Project: First" in page

    # Another project chosen: not the task held in First, and the reason is the chosen
    # project's own (it has no conversation), not First's open tasks.
    client.post(reverse("ranking:project-choose"), {"project": empty.slug})
    page = client.get(reverse("ranking:rank")).content.decode()
    assert "data-assignment-id" not in page
    claimed = client.post(reverse("ranking:claim"), HTTP_HX_REQUEST="true").content.decode()
    assert 'data-reason="no_conversations"' in claimed
    assert "A task of First is still reserved for you" in claimed
    assert trainer.ranking_assignments.count() == 1
    response = client.post("/api/ranking/claim/?project=empty")
    assert response.status_code == 204
    assert response.headers["Tandem-Waiting-Reason"] == "no_conversations"


@pytest.mark.parametrize("htmx", [True, False])
def test_a_chosen_project_paused_since_is_named_closed_not_replaced_by_all(
    client, other_trainer, trainer, htmx
):
    """The trainer chose Second; it was paused. Their claims must not quietly take tasks of
    their other projects as if they had chosen "all my projects": the page says Second is
    closed and lets them choose."""
    version = model_version_create("v")
    first = project_create(name="First", slug="first", status=Project.Status.ACTIVE)
    second = project_create(name="Second", slug="second", status=Project.Status.ACTIVE)
    _ready_task(other_trainer, first, version, "first")
    _ready_task(other_trainer, second, version, "second")
    client.force_login(trainer)
    client.post(reverse("ranking:project-choose"), {"project": "second"})
    Project.objects.filter(pk=second.pk).update(status=Project.Status.PAUSED)

    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    claimed = client.post(reverse("ranking:claim"), follow=not htmx, **headers)
    page = claimed.content.decode()
    assert not trainer.ranking_assignments.exists()
    assert "data-assignment-id" not in page
    closed = "The project you chose, Second, is paused or no longer open to you"
    assert closed in page
    assert reverse("ranking:project-picker") in page
    assert closed in client.get(reverse("ranking:rank")).content.decode()

    # Choosing "all my projects" (the picker's first button) ranks across them again.
    client.post(reverse("ranking:project-choose"), {"project": ""})
    client.post(reverse("ranking:claim"))
    assert trainer.ranking_assignments.get().task.project == first


def test_admin_creates_a_project_on_the_projects_page(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        reverse("ranking:project-manage"),
        {
            "name": "Safety",
            "slug": "safety",
            "status": "active",
            "alternatives": 3,
            "overlap": 2,
            "target_rankings": 100,
            "gold_rate": 0.1,
            "qualification_tasks": 5,
            "qualification_threshold": 0.8,
            "selection": "random",
            "exploration_share": 0.25,
            "candidate_factor": 3,
            **_policy_rows([]),
        },
    )
    assert response.status_code == 302, response.content
    project = Project.objects.get(slug="safety")
    assert (project.alternatives, project.overlap, project.target_rankings) == (3, 2, 100)
    assert b"Safety" in client.get(reverse("ranking:project-manage")).content
    invalid = client.post(reverse("ranking:project-manage"), {"name": "", "slug": "x"})
    assert invalid.status_code == 422


def _policy_rows(rows: list[tuple[object, object]], extra: int = 1) -> dict:
    """The policy formset of the project page as a browser posts it."""
    data = {"policies-TOTAL_FORMS": len(rows) + extra, "policies-INITIAL_FORMS": len(rows)}
    data |= {"policies-MIN_NUM_FORMS": 0, "policies-MAX_NUM_FORMS": 16}
    for index, (version, weight) in enumerate(rows):
        data[f"policies-{index}-model_version"] = version
        data[f"policies-{index}-weight"] = weight
    return data


def _page_fields(page) -> dict:
    """What a browser would post back from the project page's settings form, unchanged."""
    import re

    html = page.content.decode().split('id="project-form"')[1].split("</form>")[0]
    data = {}
    for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', html):
        data[name] = value
    for name, body in re.findall(r'<select name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        data[name] = re.findall(r'<option value="([^"]*)"[^>]*selected', body)
    for name in re.findall(r'<input type="checkbox" name="([^"]+)"[^>]*checked', html):
        data[name] = "on"
    for name, body in re.findall(r'<textarea name="([^"]+)"[^>]*>(.*?)</textarea>', html, re.S):
        data[name] = body.strip()
    return {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in data.items()}


def test_saving_the_project_page_keeps_every_policy_and_edits_their_weights(
    client, admin_user, policy
):
    second = model_version_create("second")
    project = project_create(
        name="Mixed", slug="mixed", status="active", policies=[(policy, 3.0), (second, 1.0)]
    )
    client.force_login(admin_user)
    url = reverse("ranking:project-detail", args=["mixed"])
    fields = _page_fields(client.get(url))
    fields["description"] = "Only the text changed."
    assert client.post(url, fields).status_code == 302
    kept = [(p.model_version, p.weight) for p in project.policies.order_by("pk")]
    assert kept == [(policy, 3.0), (second, 1.0)]
    fields |= {"policies-0-weight": "2", "policies-1-model_version": ""}
    fields |= {"policies-2-model_version": str(policy.pk)}  # named twice: refused, nothing lost
    refused = client.post(url, fields)
    assert refused.status_code == 422 and b"named twice" in refused.content
    assert project.policies.count() == 2
    fields["policies-2-model_version"] = ""
    zero = client.post(url, {**fields, "policies-0-weight": "0"})
    assert (
        zero.status_code == 422
        and "A weight is a number above 0, at most 1e+06." in zero.content.decode()
    )
    assert client.post(url, fields).status_code == 302
    assert [(p.model_version, p.weight) for p in project.policies.all()] == [(policy, 2.0)]
    # A post without the policy rows (not from the page) is refused, not read as "none".
    del fields["policies-TOTAL_FORMS"]
    assert client.post(url, fields).status_code == 422
    assert project.policies.count() == 1


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("gold_rate", "1.5", "gold_rate is a share between 0 and 1."),
        ("alternatives", "0", "K must be between 1 and 16."),
        ("overlap", "51", "The overlap must be between 1 and 50."),
        # The API's bounds: a project saved on the page is one the API takes back.
        ("qualification_tasks", "0", "Qualification takes 1 to 100 gold tasks."),
        ("qualification_tasks", "500", "Qualification takes 1 to 100 gold tasks."),
        ("candidate_factor", "50", "candidate_factor is between 1 and 20."),
        ("target_rankings", "2000000000", "The target is 0 (none) to 1,000,000,000 rankings."),
    ],
)
def test_the_project_form_says_what_range_a_setting_has(client, admin_user, field, value, message):
    client.force_login(admin_user)
    fields = _page_fields(client.get(reverse("ranking:project-manage")))
    fields |= {"name": "P", "slug": "p", field: value}
    page = client.post(reverse("ranking:project-manage"), fields)
    assert page.status_code == 422
    assert message in page.content.decode() and "Constraint" not in page.content.decode()
    assert not Project.objects.filter(slug="p").exists()


def test_the_project_forms_number_boxes_offer_the_range_the_service_takes(client, admin_user):
    client.force_login(admin_user)
    page = client.get(reverse("ranking:project-manage")).content.decode()
    for name, least, most in [
        ("alternatives", 1, 16),
        ("overlap", 1, 50),
        ("qualification_tasks", 1, 100),
        ("candidate_factor", 1, 20),
        ("target_rankings", 0, 1_000_000_000),
    ]:
        box = re.search(rf'<input type="number" name="{name}"[^>]*>', page).group(0)
        assert f'min="{least}"' in box and f'max="{most}"' in box, box


def test_late_means_short_of_the_target_after_the_deadline_or_on_course_to_be(other_trainer):
    now = timezone.now()
    project = project_create(name="Late", slug="late", status="active", target_rankings=2)
    task = _ready_task(other_trainer, project, model_version_create("v"))
    Project.objects.filter(pk=project.pk).update(deadline=now - timedelta(days=1))
    project.refresh_from_db()
    progress = project_progress(project=project, now=now)
    assert (progress.eta, progress.late) == (None, True)  # nothing ranked, deadline passed
    rank(task, quick_trainer("a"), [[0], [1], [2], [3]])
    Project.objects.filter(pk=project.pk).update(deadline=now + timedelta(minutes=30))
    project.refresh_from_db()
    progress = project_progress(project=project, now=now)
    # One ranking within the hour: the next due in about an hour, after the deadline.
    assert progress.eta > project.deadline and progress.late
    rank(task, quick_trainer("b"), [[0], [1], [2], [3]])
    Project.objects.filter(pk=project.pk).update(deadline=now - timedelta(days=1))
    project.refresh_from_db()
    progress = project_progress(project=project, now=now)
    assert (progress.percent, progress.eta, progress.late) == (100.0, None, False)


def test_trainers_cannot_open_the_admin_project_pages(client, trainer):
    client.force_login(trainer)
    assert client.get(reverse("ranking:project-manage")).status_code == 403


def test_promotion_says_which_projects_it_moves(policy):
    named = ModelVersion.objects.create(name="named", path=policy.path)
    project_create(name="Own", slug="own", status="active", policies=[(named, 1.0)])
    project_create(name="Follows", slug="follows", status="active")
    out = StringIO()
    call_command("promote", policy.name, stdout=out)
    line = out.getvalue().splitlines()[-1]
    assert "follows" in line and DEFAULT_PROJECT_SLUG in line and "own" not in line


@pytest.mark.django_db(transaction=True)
def test_the_data_migration_moves_existing_rows_into_the_default_project():
    executor = MigrationExecutor(connection)
    before = [
        ("ranking", "0004_ranking_verdict_order_unchanged_first_placement"),
        ("labeling", "0007_message_is_candidate"),
        ("sampler", "0007_side_by_side_votes_and_dpo_kto_runs"),
    ]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    owner = old.get_model("auth", "User").objects.create(username="old-writer")
    conversation = old.get_model("labeling", "Conversation").objects.create(owner_id=owner.pk)
    version = old.get_model("sampler", "ModelVersion").objects.create(name="old", path="old")
    job = old.get_model("sampler", "GenerationJob").objects.create(
        model_version_id=version.pk, n=1, seed=1, prompt_messages=[]
    )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    default = Project.objects.get(slug=DEFAULT_PROJECT_SLUG)
    assert Conversation.objects.get(pk=conversation.pk).project_id == default.pk
    assert GenerationJob.objects.get(pk=job.pk).project_id == default.pk


def test_claim_api_takes_a_project_and_refuses_one_not_open_to_the_trainer(
    client, other_trainer, trainer
):
    version = model_version_create("v")
    experts = Group.objects.create(name="experts")
    first = project_create(name="First", slug="first", status=Project.Status.ACTIVE)
    project_create(name="Closed", slug="closed", status="active", trainer_groups=[experts])
    in_first = _ready_task(other_trainer, first, version, "first")
    client.force_login(trainer)
    refused = client.post("/api/ranking/claim/?project=closed")
    assert refused.status_code == 404 and "detail" in refused.json()
    for unstorable in ("%00", "fir%00st"):  # NUL
        response = client.post(f"/api/ranking/claim/?project={unstorable}")
        assert response.status_code == 404 and "No active project" in response.json()["detail"]
    # An unpaired surrogate's bytes are no UTF-8: refused before any project is looked up.
    response = client.post("/api/ranking/claim/?project=%ED%A0%80")
    assert response.status_code == 400 and "not UTF-8" in response.json()["detail"]
    claimed = client.post("/api/ranking/claim/?project=first")
    assert claimed.status_code == 200 and claimed.json()["task_id"] == in_first.pk


@pytest.mark.parametrize("query", ["?project=", "?project"])
def test_claim_api_refuses_an_empty_project_by_name_and_claims_nothing(
    client, other_trainer, trainer, query
):
    version = model_version_create("v")
    first = project_create(name="First", slug="first", status=Project.Status.ACTIVE)
    _ready_task(other_trainer, first, version, "first")
    client.force_login(trainer)
    response = client.post(f"/api/ranking/claim/{query}")
    assert response.status_code == 400
    assert set(response.json()) == {"project"}
    assert "leave the parameter out" in response.json()["project"][0]
    assert not Assignment.objects.filter(trainer=trainer).exists()


@pytest.mark.parametrize("field", ["name", "slug"])
def test_a_name_or_slug_taken_between_the_check_and_the_save_is_a_400(
    admin_client_, monkeypatch, field
):
    # Two admins saving at once: both pass full_clean, the table's unique column stops one.
    project_create(name="First", slug="first")
    second = project_create(name="Second", slug="second")
    monkeypatch.setattr(Project, "full_clean", lambda self, **kwargs: None)
    from ranking.projects import services as project_services

    real_clash_errors, calls = project_services.project_clash_errors, []

    def free_when_checked(**kwargs):
        # The check before the save (each request's first call) sees the name or slug free.
        calls.append(kwargs)
        return {} if len(calls) % 2 else real_clash_errors(**kwargs)

    monkeypatch.setattr(project_services, "project_clash_errors", free_when_checked)
    taken = {"name": "First", "slug": "first"}[field]
    created = admin_client_.post(
        "/api/projects/",
        {"name": "Third", "slug": "third", field: taken},
        content_type="application/json",
    )
    assert created.status_code == 400 and "already exists" in json.dumps(created.json()[field])
    changed = admin_client_.patch(
        f"/api/projects/{second.pk}/", {field: taken}, content_type="application/json"
    )
    assert changed.status_code == 400 and "already exists" in json.dumps(changed.json()[field])
    assert Project.objects.filter(**{field: taken}).count() == 1
    second.refresh_from_db()
    assert (second.name, second.slug) == ("Second", "second")


def test_a_group_named_twice_is_refused_as_a_policy_named_twice_is(admin_client_):
    experts = Group.objects.create(name="experts")
    body = {"name": "Twice", "slug": "twice", "trainer_group_ids": [experts.pk, experts.pk]}
    response = admin_client_.post("/api/projects/", body, content_type="application/json")
    assert response.status_code == 400
    assert "named twice" in response.json()["trainer_group_ids"][0]
    assert not Project.objects.filter(slug="twice").exists()


@pytest.mark.parametrize("name", ["Spring\ncampaign", "Spring\tcampaign", "Spring\u2028campaign"])
def test_a_project_name_is_one_line_in_the_api_the_page_and_the_service(client, admin_user, name):
    # A name is read in lists, menus and the Projects table, as a model version's name and a
    # conversation's title are: a line break or other control character in it is refused.
    client.force_login(admin_user)
    answer = client.post(
        "/api/projects/", {"name": name, "slug": "spring"}, content_type="application/json"
    )
    assert answer.status_code == 400, answer.content
    assert answer.json() == {"name": [LINE_MESSAGE]}
    with pytest.raises(ValidationError, match="one line"):
        project_create(name=name, slug="spring")
    form = ProjectForm(data={"name": name, "slug": "spring", "status": "draft"})
    assert not form.is_valid() and form.errors["name"] == [LINE_MESSAGE]
    project = project_create(name="Spring", slug="spring")
    patched = client.patch(
        f"/api/projects/{project.pk}/", {"name": name}, content_type="application/json"
    )
    assert patched.status_code == 400 and patched.json() == {"name": [LINE_MESSAGE]}
    project.refresh_from_db()
    assert project.name == "Spring"


def test_a_deadline_without_a_time_zone_offset_is_refused_naming_the_field(client, admin_user):
    """A time without an offset would be read in the server's zone, hours off for a caller
    elsewhere: it is a 400 on the field, and a time with one is kept as that instant."""
    client.force_login(admin_user)
    for naive in ("2030-01-01T17:00:00", "2030-01-01 17:00", "2030-01-01T17:00:00.5"):
        refused = client.post(
            "/api/projects/",
            {"name": "X", "slug": "x", "deadline": naive},
            content_type="application/json",
        )
        assert refused.status_code == 400, naive
        (message,) = refused.json()["deadline"]
        assert set(refused.json()) == {"deadline"}
        assert "time zone offset" in message and "Z" in message and "+02:00" in message
    assert not Project.objects.filter(slug="x").exists()
    created = client.post(
        "/api/projects/",
        {"name": "X", "slug": "x", "deadline": "2030-01-01T17:00:00+02:00"},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    project = Project.objects.get(slug="x")
    assert project.deadline == datetime(2030, 1, 1, 15, 0, tzinfo=UTC)
    patch_url = f"/api/projects/{project.pk}/"
    naive_patch = client.patch(
        patch_url, {"deadline": "2031-01-01T00:00:00"}, content_type="application/json"
    )
    assert naive_patch.status_code == 400 and "deadline" in naive_patch.json()
    utc_patch = client.patch(
        patch_url, {"deadline": "2031-01-01T00:00:00Z"}, content_type="application/json"
    )
    assert utc_patch.status_code == 200, utc_patch.content
    project.refresh_from_db()
    assert project.deadline == datetime(2031, 1, 1, tzinfo=UTC)


def test_the_project_form_says_in_which_time_zone_it_reads_the_deadline(
    client, admin_user, settings
):
    """A browser's date-and-time box carries no offset: the page names the zone it is read in."""
    settings.TIME_ZONE = "Europe/Berlin"
    client.force_login(admin_user)
    page = client.get(reverse("ranking:project-manage")).content.decode()
    assert "Europe/Berlin" in page
    fields = _page_fields(client.get(reverse("ranking:project-manage")))
    fields |= {"name": "P", "slug": "p", "deadline": "2030-07-01T12:00"}
    assert client.post(reverse("ranking:project-manage"), fields).status_code == 302
    assert Project.objects.get(slug="p").deadline == datetime(2030, 7, 1, 10, 0, tzinfo=UTC)


def test_the_waiting_reason_counts_only_tasks_of_projects_open_to_the_trainer(
    client, other_trainer, trainer
):
    """A paused project's task being prepared, or its conversations, are no work on the way
    for the trainer: with nothing else, their claim finds no conversation to make tasks from,
    not a pool being refilled."""
    version = model_version_create("v")
    paused = project_create(name="Paused", slug="paused", status=Project.Status.ACTIVE)
    preparing = _ready_task(other_trainer, paused, version, "paused")
    RankingTask.objects.filter(pk=preparing.pk).update(status=RankingTask.Status.PREPARING)
    _source(other_trainer, paused, "a reply no task holds yet")
    Project.objects.filter(pk=paused.pk).update(status=Project.Status.PAUSED)
    client.force_login(trainer)
    response = client.post("/api/ranking/claim/")
    assert response.status_code == 204
    assert response.headers["Tandem-Waiting-Reason"] == "no_conversations"
    page = client.post(reverse("ranking:claim"), HTTP_HX_REQUEST="true").content.decode()
    assert 'data-reason="no_conversations"' in page
    assert "being prepared" not in page


def test_a_version_made_a_reward_model_after_it_was_read_is_refused_as_a_policy():
    """The policies are checked as they are in the database (and locked), not as the caller
    read them: a kind change made meanwhile is seen."""
    from sampler.registry.models import ModelVersion

    version = model_version_create("turned")
    ModelVersion.objects.filter(pk=version.pk).update(kind=ModelVersion.Kind.REWARD)
    with pytest.raises(ValidationError, match="turned is not a policy"):
        project_create(name="X", slug="x", policies=[(version, 1.0)])
    assert not Project.objects.filter(slug="x").exists()
    gone = model_version_create("gone")
    ModelVersion.objects.filter(pk=gone.pk).delete()
    with pytest.raises(ValidationError, match="gone was deleted"):
        project_create(name="X", slug="x", policies=[(gone, 1.0)])


def _short_context_policy(name: str = "short", *, active: bool = True) -> ModelVersion:
    """A policy with a 256-token context: a reply of at most 240 tokens leaves room for the
    prompt (the generation service refuses more)."""
    return ModelVersion.objects.create(name=name, path=name, context_length=256, is_active=active)


def test_a_max_new_tokens_the_policys_context_cannot_take_is_refused_when_saved(admin_client_):
    """Its pool's every preparation would be refused so: the API says why when it is set."""
    _short_context_policy()
    body = {"name": "Long", "slug": "long", "status": "active", "pool_size": 1}
    refused = admin_client_.post(
        "/api/projects/",
        body | {"sampling_params": {"max_new_tokens": 256}},
        content_type="application/json",
    )
    assert refused.status_code == 400
    assert refused.json()["sampling_params"] == [
        "short: max_new_tokens=256 leaves less than 16 tokens for the prompt in this model's "
        "256-token context; ask for at most 240."
    ]
    assert not Project.objects.filter(slug="long").exists()
    fits = admin_client_.post(
        "/api/projects/",
        body | {"sampling_params": {"max_new_tokens": 240}},
        content_type="application/json",
    )
    assert fits.status_code == 201, fits.content
    # A project with a policy of its own is checked against that one, not the active one.
    wide = ModelVersion.objects.create(name="wide", path="wide", context_length=4096)
    own = admin_client_.post(
        "/api/projects/",
        {
            "name": "Own",
            "slug": "own",
            "sampling_params": {"max_new_tokens": 256},
            "policies": [{"model_version_id": wide.pk, "weight": 1}],
        },
        content_type="application/json",
    )
    assert own.status_code == 201, own.content
    raised = admin_client_.patch(
        f"/api/projects/{fits.json()['id']}/",
        {"sampling_params": {"max_new_tokens": 250}},
        content_type="application/json",
    )
    assert (
        raised.status_code == 400 and "ask for at most 240" in raised.json()["sampling_params"][0]
    )
    # Naming the short policy for a project whose limit it cannot take is refused too.
    short = ModelVersion.objects.get(name="short")
    moved = admin_client_.patch(
        f"/api/projects/{own.json()['id']}/",
        {"policies": [{"model_version_id": short.pk, "weight": 1}]},
        content_type="application/json",
    )
    assert moved.status_code == 400 and "ask for at most 240" in moved.json()["sampling_params"][0]
    assert [p.model_version for p in Project.objects.get(slug="own").policies.all()] == [wide]


def test_a_project_whose_limit_no_longer_fits_can_still_be_paused_and_described(
    client, admin_user, admin_client_
):
    """The limit fitted when it was saved; the policy's context was corrected since. A save
    that changes neither the sampling parameters nor the versions sampled from is not refused
    for them (the project must be paused, described); one that changes them is checked."""
    version = _short_context_policy()
    project = project_create(
        name="Long", slug="long", status="active", sampling_params={"max_new_tokens": 240}
    )
    ModelVersion.objects.filter(pk=version.pk).update(context_length=128)

    paused = admin_client_.patch(
        f"/api/projects/{project.pk}/", {"status": "paused"}, content_type="application/json"
    )
    assert paused.status_code == 200, paused.content
    described = admin_client_.patch(
        f"/api/projects/{project.pk}/",
        {"description": "Waits for a longer context.", "sampling_params": {"max_new_tokens": 240}},
        content_type="application/json",
    )
    assert described.status_code == 200, described.content
    project.refresh_from_db()
    assert project.status == "paused" and project.description == "Waits for a longer context."

    client.force_login(admin_user)
    url = reverse("ranking:project-detail", args=["long"])
    saved = client.post(url, _page_fields(client.get(url)) | {"status": "active"})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    project.refresh_from_db()
    assert project.status == "active"

    lowered = admin_client_.patch(
        f"/api/projects/{project.pk}/",
        {"sampling_params": {"max_new_tokens": 200}},
        content_type="application/json",
    )
    assert lowered.status_code == 400
    assert "ask for at most 112" in lowered.json()["sampling_params"][0]
    wide = ModelVersion.objects.create(name="wide", path="wide", context_length=4096)
    moved = admin_client_.patch(
        f"/api/projects/{project.pk}/",
        {"policies": [{"model_version_id": wide.pk, "weight": 1}]},
        content_type="application/json",
    )
    assert moved.status_code == 200, moved.content
    back = admin_client_.patch(
        f"/api/projects/{project.pk}/",
        {"policies": [{"model_version_id": version.pk, "weight": 1}]},
        content_type="application/json",
    )
    assert back.status_code == 400 and "ask for at most 112" in back.json()["sampling_params"][0]
    project.refresh_from_db()
    assert project.sampling_params == {"max_new_tokens": 240}
    assert [p.model_version for p in project.policies.all()] == [wide]


def test_the_project_page_refuses_a_policy_whose_context_the_projects_limit_overflows(
    client, admin_user
):
    _short_context_policy("short", active=False)
    wide = ModelVersion.objects.create(name="wide", path="wide", context_length=4096)
    project = project_create(
        name="Own", slug="own", sampling_params={"max_new_tokens": 256}, policies=[(wide, 1.0)]
    )
    client.force_login(admin_user)
    url = reverse("ranking:project-detail", args=["own"])
    fields = _page_fields(client.get(url))
    fields["policies-0-model_version"] = str(ModelVersion.objects.get(name="short").pk)
    refused = client.post(url, fields)
    assert refused.status_code == 422
    assert "short: max_new_tokens=256 leaves less than 16 tokens" in refused.content.decode()
    assert [p.model_version for p in project.policies.all()] == [wide]


def test_a_name_or_slug_another_project_has_in_another_case_is_refused_naming_it(
    client, admin_user
):
    project_create(name="Keyboard", slug="uni")
    client.force_login(admin_user)
    for body, field, message in [
        (
            {"name": "Other", "slug": "UNI"},
            "slug",
            "A project with the slug 'uni' already exists; slugs that differ only in letter "
            "case are one.",
        ),
        (
            {"name": "keyboard", "slug": "keys"},
            "name",
            "A project with the name 'Keyboard' already exists; names that differ only in "
            "letter case are one.",
        ),
    ]:
        refused = client.post("/api/projects/", body, content_type="application/json")
        assert refused.status_code == 400
        assert refused.json() == {field: [message]}
        page = client.post(reverse("ranking:project-manage"), body)
        assert page.status_code == 422
        assert page.context["form"].errors[field] == [message]
    assert Project.objects.filter(name__iexact="keyboard").count() == 1
    assert Project.objects.filter(slug__iexact="uni").count() == 1
    # A project's own name in another case is its to take.
    own = Project.objects.get(slug="uni")
    renamed = client.patch(
        f"/api/projects/{own.pk}/", {"name": "KEYBOARD"}, content_type="application/json"
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "KEYBOARD"


def test_a_pool_fill_that_fails_says_why_on_the_project_page_until_one_succeeds(
    client, admin_user, other_trainer, caplog
):
    """The limit fitted the policy when it was saved; the policy's context was corrected
    since (it may also be another version promoted since): every fill is refused, and the
    project's page says why rather than only "0 ready, 0 preparing"."""
    version = _short_context_policy()
    project = project_create(
        name="Long", slug="long", status="active", sampling_params={"max_new_tokens": 240}
    )
    _source(other_trainer, project)
    ModelVersion.objects.filter(pk=version.pk).update(context_length=128)

    assert services.ranking_pool_fill(rng=random.Random(0)) == 0
    assert services.ranking_pool_fill(rng=random.Random(0)) == 0  # still failing, said once

    assert "Filling the pool of project long failed" in caplog.text
    project.refresh_from_db()
    reason = (
        "max_new_tokens=240 leaves less than 16 tokens for the prompt in this model's "
        "128-token context; ask for at most 112."
    )
    assert project.pool_error == reason
    client.force_login(admin_user)
    page = client.get(reverse("ranking:project-detail", args=["long"])).content.decode()
    assert "The pool could not be filled at its last try:" in page and escape(reason) in page
    ModelVersion.objects.filter(pk=version.pk).update(context_length=4096)
    assert services.ranking_pool_fill(rng=random.Random(0)) == 1
    project.refresh_from_db()
    assert project.pool_error == ""
    page = client.get(reverse("ranking:project-detail", args=["long"])).content.decode()
    assert "could not be filled" not in page


def test_a_preparation_that_fails_says_why_on_the_project_until_one_succeeds(
    client,
    admin_user,
    trainer,
    other_trainer,
    micro_model_dir,
    untemplated_model_dir,
    fresh_backends,
):
    """The fill itself succeeds (it queues a task), but each task's preparation fails: the
    project's page and its API say why to staff rather than only "0 ready, 0 preparing", and a
    fill that queues the next task leaves the reason shown until a preparation succeeds."""
    # Registered before registration checked for a chat template, or its template lost since.
    version = ModelVersion.objects.create(name="broken", path=str(untemplated_model_dir))
    project = project_create(
        name="Broken",
        slug="broken",
        status="active",
        pool_size=1,
        alternatives=1,
        policies=[(version, 1.0)],
    )
    _source(other_trainer, project)

    assert services.ranking_pool_fill(rng=random.Random(0)) == 1
    task = RankingTask.objects.get(project=project)
    assert services.ranking_task_prepare(task_id=task.pk).status == RankingTask.Status.FAILED
    reason = f"The tokenizer at {untemplated_model_dir} has no chat template."
    project.refresh_from_db()
    assert project.pool_error == reason
    assert services.ranking_pool_fill(rng=random.Random(0)) == 1  # the next task, queued
    project.refresh_from_db()
    assert project.pool_error == reason

    client.force_login(admin_user)
    page = client.get(reverse("ranking:project-detail", args=["broken"])).content.decode()
    assert "The pool could not be filled at its last try:" in page and escape(reason) in page
    assert client.get(f"/api/projects/{project.pk}/").json()["pool_error"] == reason
    listed = client.get("/api/projects/").json()
    assert [row["pool_error"] for row in listed if row["slug"] == "broken"] == [reason]
    client.force_login(trainer)
    seen = {row["slug"]: row for row in client.get("/api/projects/").json()}
    assert "broken" in seen and "pool_error" not in seen["broken"]

    ModelVersion.objects.filter(pk=version.pk).update(path=str(micro_model_dir))
    task = RankingTask.objects.get(project=project, status=RankingTask.Status.PREPARING)
    assert services.ranking_task_prepare(task_id=task.pk).status == RankingTask.Status.READY
    project.refresh_from_db()
    assert project.pool_error == ""
    client.force_login(admin_user)
    page = client.get(reverse("ranking:project-detail", args=["broken"])).content.decode()
    assert "could not be filled" not in page
