import pytest
from playwright.sync_api import expect

from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active
from sampler.registry.services import model_version_register
from sampler.runs.models import TrainingRun
from tests.browser.conftest import log_in
from tests.conftest import PASSWORD

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
