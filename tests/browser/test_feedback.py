import pytest
from playwright.sync_api import expect

from labeling.feedback.models import Feedback
from sampler.models import ModerationResult, Sample
from tests.browser.conftest import try_the_model_filled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_trainer_gives_a_sample_thumbs_down_and_reports_it(
    page, live_server, celery_worker, policy, trainer
):
    try_the_model_filled(page, live_server, "tell me something about the weather", n=1, seed=5)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("section.job")).to_have_attribute("data-status", "succeeded")
    sample = Sample.objects.get()
    # The worker filtered the sample before it was shown.
    assert ModerationResult.objects.filter(sample=sample).count() == 1

    card = page.locator(f'article.sample[data-sample-id="{sample.pk}"]')
    widget = card.locator(".feedback")
    thumbs_down = widget.get_by_role("button", name="Thumbs down")
    # From the keyboard: the widget is swapped, and focus stays on the same button.
    thumbs_down.focus()
    page.keyboard.press("Enter")
    expect(thumbs_down).to_have_attribute("aria-pressed", "true")
    expect(widget).to_have_attribute("data-rating", "down")
    expect(thumbs_down).to_be_focused()

    widget.locator("summary").click()
    widget.get_by_label("Untruthful").check()
    widget.get_by_label("Other").check()
    widget.get_by_label("Comment").fill("It says nothing about the weather.")
    widget.get_by_role("button", name="Send report").click()
    expect(widget.locator("summary")).to_contain_text("Reported: Untruthful, Other")
    # Still thumbs down: the report did not touch the rating.
    expect(widget.get_by_role("button", name="Thumbs down")).to_have_attribute(
        "aria-pressed", "true"
    )

    feedback = Feedback.objects.get()
    assert feedback.user == trainer and feedback.sample == sample
    assert feedback.rating == Feedback.Rating.DOWN
    assert feedback.categories == ["untruthful", "other"]
    assert feedback.comment == "It says nothing about the weather."
    assert feedback.model_version == policy

    # A reload shows what the trainer said: the widget loads their feedback.
    page.goto(f"{live_server.url}/generation/jobs/{sample.job_id}/")
    widget = page.locator(f'article.sample[data-sample-id="{sample.pk}"] .feedback')
    expect(widget).to_have_attribute("data-rating", "down")
    expect(widget.locator("summary")).to_contain_text("Reported")
