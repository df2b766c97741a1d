"""The Models page (sampler/registry/views.py)."""

from django.urls import reverse

from sampler.comparisons.models import ModelComparison
from tests.conftest import polls_only_while_work_can_move, served_version


def test_the_comparisons_table_stops_polling_while_its_comparisons_wait_for_no_worker(
    admin_client_, admin_user, policy
):
    """A comparison queued where no live worker serves the generation queue cannot move: the
    table stops asking every 2 seconds, names the queue and offers "Check again". Before, it
    asked for as long as the page was open."""
    judge = served_version("judge", 64)
    comparison = ModelComparison.objects.create(
        version_a=policy, version_b=judge, reward_version=judge, requested_by=admin_user
    )
    polls_only_while_work_can_move(
        admin_client_,
        reverse("sampler:comparisons"),
        job=comparison,
        element="comparison-table",
        trigger='hx-trigger="every 2s"',
    )
