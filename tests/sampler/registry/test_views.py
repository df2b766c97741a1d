"""The Models page (sampler/registry/views.py)."""

from django.urls import reverse
from django.utils import timezone

from sampler.comparisons.models import ModelComparison
from tests.conftest import polls_only_while_work_can_move, served_version, worker_seen


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


def test_the_comparisons_table_says_a_comparison_is_queued_until_it_runs(
    admin_client_, admin_user, policy
):
    """Starting a comparison said "Comparison 1 is queued." as a message at the top of the page,
    where it stayed once the table it polls showed the comparison succeeded. The table says
    it, while the comparison waits for a worker (queued and published)."""
    judge = served_version("judge", 64)
    comparison = ModelComparison.objects.create(
        version_a=policy, version_b=judge, reward_version=judge, requested_by=admin_user
    )
    worker_seen()
    url = reverse("sampler:comparisons")
    said = "The comparison of micro with judge is queued for a worker."
    rows = ModelComparison.objects.filter(pk=comparison.pk)
    assert said not in admin_client_.get(url, HTTP_HX_REQUEST="true").content.decode()
    rows.update(published_at=timezone.now())
    assert said in admin_client_.get(url, HTTP_HX_REQUEST="true").content.decode()
    rows.update(status=ModelComparison.Status.SUCCEEDED)
    page = admin_client_.get(reverse("sampler:models"))
    for answer in (admin_client_.get(url, HTTP_HX_REQUEST="true"), page):
        assert "queued" not in answer.content.decode()
