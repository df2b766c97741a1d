import pytest
from playwright.sync_api import expect

from sampler.comparisons.models import ModelComparison
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active
from sampler.registry.services import model_version_register
from sampler.runs.models import TrainingRun
from tests.browser.conftest import log_in
from tests.conftest import PASSWORD, wait_until
from tests.ranking.conftest import conversation_in_split, reward_version_untrained

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_promotes_a_ppo_version_from_the_models_page(page, live_server, admin_user, policy):
    run = TrainingRun.objects.create(
        kind=TrainingRun.Kind.PPO,
        status=TrainingRun.Status.SUCCEEDED,
        base_version=policy,
        progress=1.0,
        output_name="micro-ppo-1",
    )
    child = model_version_register(
        name="micro-ppo-1",
        path=policy.path,
        parent=policy,
        training_run_id=run.pk,
        metrics={"eval/scores": 1.25, "eval/kl": 3.5, "data": {"prompts/train": 90}},
    )
    log_in(page, live_server, "ada", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
    expect(page.get_by_role("heading", name="Models", exact=True)).to_be_visible()

    row = page.locator('tr[data-version="micro-ppo-1"]')
    expect(row).to_contain_text("PPO run")
    expect(row).to_contain_text("prompts/train 90")
    expect(row).to_contain_text("held-out score 1.250")
    expect(page.locator('tr[data-version="micro"]')).to_have_attribute("data-active", "true")

    row.get_by_role("button", name="Promote micro-ppo-1").click()

    expect(page.locator("#active-policy")).to_have_text("micro-ppo-1")
    expect(row).to_have_attribute("data-active", "true")
    expect(page.locator('tr[data-version="micro"]')).to_have_attribute("data-active", "false")
    assert model_version_active() == child
    assert ModelVersion.objects.get(pk=policy.pk).is_active is False


def test_a_comparisons_queued_notice_goes_once_it_has_run(
    page, live_server, celery_worker, admin_user, policy, trainer, tmp_path
):
    """The Models page said "Comparison 1 is queued." at its top, as a message outside the
    comparisons table it polls: it still said so once the table showed the comparison
    succeeded."""
    conversation_in_split(trainer)
    model_version_register(name="micro-copy", path=policy.path)
    reward_version_untrained(policy.path, tmp_path / "rm", seed=0)
    log_in(page, live_server, "ada", PASSWORD)
    page.goto(f"{live_server.url}/models/")
    page.get_by_label("Version A").select_option(label="micro-copy")
    page.get_by_label("Version B").select_option(label="micro")
    page.get_by_label("Judged by").select_option(label="rm-0")
    page.get_by_label("Held-out prompts", exact=True).fill("1")
    page.locator("#id_max_new_tokens").fill("8")
    page.get_by_role("button", name="Compare").click()

    comparison = wait_until(ModelComparison.objects.first)
    row = page.locator(f'#comparison-table tr[data-comparison-id="{comparison.pk}"]')
    expect(row).to_have_attribute("data-status", "succeeded")
    expect(page.locator("main")).not_to_contain_text("queued")
