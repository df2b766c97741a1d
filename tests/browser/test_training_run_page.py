"""The training run page's curves, drawn by Chart.js in the browser."""

import re

import pytest
from playwright.sync_api import expect

from sampler.runs.models import TrainingRun
from tests.browser.conftest import log_in
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _tick_labels(page, title: str, axis: str) -> list[str]:
    canvas = page.locator(f'canvas[aria-label^="{title}:"]')
    expect(canvas).to_have_attribute("data-drawn", "true")
    return canvas.evaluate(
        "(canvas, axis) => window.Chart.getChart(canvas).scales[axis].ticks.map((t) => t.label)",
        axis,
    )


def test_a_short_runs_axes_read_whole_steps_and_short_learning_rates(page, live_server, admin_user):
    """A 6-step run's curves span steps 5 to 6: the step axis read 5.0, 5.1, ... 6.0, and the
    learning rate axis 3.500000E-5."""
    run = TrainingRun.objects.create(
        kind=TrainingRun.Kind.SFT,
        status=TrainingRun.Status.SUCCEEDED,
        progress=1.0,
        output_name="short",
        metrics={
            "loss/train": [[5, 5.2], [6, 5.07]],
            "learning_rate": [[5, 3.25e-5], [6, 1.6e-5]],
        },
    )
    log_in(page, live_server, "ada", PASSWORD)
    page.goto(f"{live_server.url}/training/runs/{run.pk}/")

    steps = _tick_labels(page, "Loss", "x")
    assert steps and all(re.fullmatch(r"\d+", label) for label in steps), steps
    rates = _tick_labels(page, "Learning rate", "y")
    assert rates and all(re.fullmatch(r"\d(\.\d{1,2})?e-\d", label) for label in rates), rates
