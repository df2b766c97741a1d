"""Dates and times on pages: one style, 2026-12-07 12:55; a time alone says its zone."""

import re

from django.test import Client

from ranking.models import Assignment
from sampler.runs.models import TrainingRun
from tests.ranking import conftest as ranking_fixtures

ready_task = ranking_fixtures.ready_task


def test_a_date_and_time_reads_the_same_on_every_page(admin_client_, admin_user):
    """The training pages wrote "Dec. 7, 2026, 12:55 p.m." where the account page wrote
    2026-12-07 12:55."""
    run = TrainingRun.objects.create(kind="sft", output_name="dated", config={})
    stamp = run.created_at.strftime("%Y-%m-%d %H:%M")
    page = admin_client_.get(f"/training/runs/{run.pk}/").content.decode()
    assert f"Created {stamp} ·" in page
    assert "a.m." not in page and "p.m." not in page


def test_a_time_alone_says_its_time_zone(ready_task, trainer):
    client = Client()
    client.force_login(trainer)
    page = client.post("/rank/claim/", follow=True).content.decode()
    lease = Assignment.objects.get(trainer=trainer, status=Assignment.Status.LEASED)
    assert re.search(rf"Reserved for you until {lease.expires_at:%H:%M} UTC\.", page), (
        "the lease's end names its zone"
    )
