"""An admin creates a project and a gold task in it; a trainer qualifies on the gold task and
then ranks a real task of the project."""

import pytest
from playwright.sync_api import expect

from labeling.guidelines import services as guideline_services
from ranking.gold.models import Qualification
from ranking.models import Assignment, Ranking, RankingTask
from ranking.projects.models import Project
from ranking.projects.selectors import project_default
from sampler.models import ModelVersion
from tests.browser.conftest import log_in, ranking_card_ready
from tests.conftest import PASSWORD
from tests.ranking.conftest import quick_trainer, rank, task_in_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ITEMS = "#ranking-list > li.candidate"


def _lease(task: RankingTask) -> Assignment:
    """tess's assignment of ``task``."""
    return Assignment.objects.get(task=task, trainer__username="tess")


def _arrange(page, task: RankingTask, wanted: list[int]) -> Assignment:
    """Place the replies of ``task`` in ``wanted`` order (candidate ids) with the keyboard: each
    reply's number (the page names replies by those alone), best first; tess's lease."""
    lease = _lease(task)
    numbers = [str(lease.presentation_order.index(candidate) + 1) for candidate in wanted]
    for number in numbers:
        page.keyboard.press(number)
    expect(page.locator("#ranking-order")).to_have_text("  >  ".join(numbers))
    return lease


def _card_gone(page, lease: Assignment) -> None:
    """The next state has replaced the card of ``lease``."""
    expect(page.locator(f"#ranking-card[data-assignment-id='{lease.pk}']")).to_have_count(0)


def test_admin_creates_a_project_and_a_trainer_qualifies_and_ranks_in_it(
    browser, live_server, admin_user, trainer, other_trainer
):
    admin = browser.new_context().new_page()
    log_in(admin, live_server, "ada", PASSWORD)
    admin.goto(f"{live_server.url}/projects/")
    admin.fill("#id_name", "Safety push")
    admin.fill("#id_slug", "safety")
    admin.select_option("#id_status", "active")
    admin.check("#id_qualification_required")
    admin.fill("#id_qualification_tasks", "1")
    admin.get_by_role("button", name="Create project").click()
    expect(admin.get_by_role("heading", name="Safety push")).to_be_visible()
    project = Project.objects.get(slug="safety")
    assert project.qualification_required and project.qualification_tasks == 1

    # The project's own guidelines: version 2 of its sequence (the default project's stays 1).
    admin.get_by_role("link", name="Guidelines").click()
    expect(admin.get_by_role("heading", name="Labeling guidelines: Safety push")).to_be_visible()
    admin.locator("details.guidelines-edit summary").click()
    admin.fill("#id_text", "# Safety push\n\nRefuse dangerous requests in one sentence.")
    admin.fill("#id_change_note", "Safety rules")
    admin.get_by_role("button", name="Save as version 2").click()
    expect(admin.locator("#guidelines-text")).to_contain_text("Refuse dangerous requests")
    admin.goto(f"{live_server.url}/projects/safety/")

    version = ModelVersion.objects.create(name="v", path="v")
    for_gold = task_in_project(other_trainer, project, version, "gold")
    real = task_in_project(other_trainer, project, version, "real")
    rank(for_gold, quick_trainer("expert"), [[2], [0], [3], [1]])
    admin.fill("#id_task_id", str(for_gold.pk))
    admin.get_by_role("button", name="Make gold").click()
    expect(admin.get_by_role("status")).to_contain_text("Gold task")
    gold = RankingTask.objects.get(gold_of=for_gold)

    page = browser.new_context().new_page()
    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/rank/projects/")
    row = page.locator("tr[data-project='safety']")
    expect(row.locator(".qualification")).to_contain_text("Qualification first")
    row.get_by_role("button", name="Rank in Safety push").click()
    page.wait_for_url(f"{live_server.url}/rank/")
    ranking_card_ready(page)
    # The panel carries the project's guidelines and asks to read its version 2.
    expect(page.locator(".guidelines-banner")).to_contain_text("version 2")
    page.locator(".guidelines-banner .guidelines-toggle").click()
    expect(page.locator("#guidelines-panel")).to_contain_text("Safety push: guidelines v2")
    expect(page.locator("#guidelines-panel")).to_contain_text("Refuse dangerous requests")
    page.get_by_role("button", name="I have read version 2").click()
    expect(page.locator(".guidelines-banner")).to_have_count(0)
    # The gold task looks like any other; the trainer ranks it as the expert did.
    expected = [candidate for group in gold.gold_ordering for candidate in group]
    shown = page.eval_on_selector_all(ITEMS, "i => i.map(x => x.dataset.candidateId)")
    assert shown == ["1", "2", "3", "4"]
    assert set(_lease(gold).presentation_order) == set(expected)
    _arrange(page, gold, expected)
    page.get_by_role("button", name="Submit ranking").click()
    expect(page.locator("#toast-region .toast").last).to_contain_text("Ranking saved.")
    qualification = Qualification.objects.get(trainer=trainer, project=project)
    assert qualification.status == Qualification.Status.PASSED

    # Qualified: the next task is a real one of the project.
    real_ids = sorted(real.candidates.values_list("id", flat=True))
    expect(page.locator(f"#ranking-card[data-assignment-id='{_lease(real).pk}']")).to_have_count(1)
    lease = _arrange(page, real, real_ids)
    page.get_by_role("button", name="Submit ranking").click()
    # The next state replaces the card (nothing is left to rank in the project).
    _card_gone(page, lease)
    ranked = Ranking.objects.get(ranker=trainer, task=real)
    assert ranked.project == project
    assert (ranked.guideline_version.project, ranked.guideline_version.number) == (project, 2)

    # Both sides see the result and its reason.
    page.goto(f"{live_server.url}/rank/projects/")
    expect(page.locator("tr[data-project='safety'] .qualification")).to_contain_text(
        "Qualified: Agreement with the expected order 100% on 1 gold tasks"
    )
    admin.goto(f"{live_server.url}/projects/safety/")
    expect(admin.locator("#qualifications")).to_contain_text("tess")
    expect(admin.locator("#qualifications")).to_contain_text("Qualified")


def test_the_guidelines_panel_follows_the_project_of_each_task(
    page, live_server, admin_user, trainer, other_trainer
):
    """Ranking across all of a trainer's projects: each task's card brings its own project's
    guidelines into the panel."""
    helpful = Project.objects.create(name="Helpfulness round", slug="helpful", status="active")
    guideline_services.guideline_version_create(
        author=admin_user, text="# Helpfulness\n\nAnswer the question first.", project_id=helpful.pk
    )
    version = ModelVersion.objects.create(name="v", path="v")
    default_task = task_in_project(other_trainer, project_default(), version, "one")
    helpful_task = task_in_project(other_trainer, helpful, version, "two")
    tasks = {default_task.project.slug: default_task, helpful.slug: helpful_task}
    expected = {
        "default": "Default project: guidelines v1",
        "helpful": "Helpfulness round: guidelines v2",
    }

    log_in(page, live_server, "tess", PASSWORD)
    page.goto(f"{live_server.url}/rank/")
    seen = []
    for _ in range(2):
        ranking_card_ready(page)
        slug = page.locator("#ranking-card").get_attribute("data-guideline-project")
        expect(page.locator("#guidelines-slot")).to_have_attribute("data-project", slug)
        expect(page.locator("#guidelines-panel")).to_contain_text(expected[slug])
        seen.append(slug)
        ids = sorted(tasks[slug].candidates.values_list("id", flat=True))
        lease = _arrange(page, tasks[slug], ids)
        page.get_by_role("button", name="Submit ranking").click()
        _card_gone(page, lease)
    assert sorted(seen) == ["default", "helpful"]
