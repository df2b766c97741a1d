from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from labeling.models import Message
from ranking.gold.services import gold_task_create
from ranking.models import Ranking
from ranking.quality.selectors import (
    human_preference_between_versions,
    ranking_quality,
    rankings_per_day,
    rankings_per_trainer,
    trainer_dashboard,
)
from tests.ranking.conftest import (
    candidate_ids,
    finished_conversation,
    model_version_create,
    quick_trainer,
    rank,
    task_from_source,
)


@pytest.fixture
def tasks(other_trainer):
    version = model_version_create("p")
    return [
        task_from_source(finished_conversation(other_trainer).active_leaf, model_version=version)
        for _ in range(5)
    ]


def test_the_quality_page_flags_a_trainer_who_keeps_the_order_shown(tasks, admin_client_, settings):
    settings.RANKING_OUTLIER_MIN_RANKINGS = 5
    settings.RANKING_FAST_SUBMIT_SECONDS = 0  # these rankings take no time: none counts as fast
    lazy, careful = quick_trainer("lazy"), quick_trainer("careful")
    for task in tasks:
        # ``rank`` shows the replies in reverse position order: [[3], [2], [1], [0]] keeps it.
        rank(task, lazy, [[3], [2], [1], [0]])
        rank(task, careful, [[0], [1], [2], [3]])

    html = admin_client_.get(reverse("ranking:quality")).content.decode()

    lazy_row = html[html.index('data-trainer="lazy"') :].split("</tr>", 1)[0]
    careful_row = html[html.index('data-trainer="careful"') :].split("</tr>", 1)[0]
    assert 'class="outlier"' in html[html.index('data-trainer="lazy"') - 40 :][:60]
    assert "submits the order shown 100% of the time" in lazy_row
    assert "Check:" not in careful_row and '<td class="unchanged-rate">0 %</td>' in careful_row


def test_the_quality_page_shows_no_figures_for_filters_it_refuses(tasks, admin_client_):
    """A start after the end (or a date that is none) is said, and the page shows no figures
    rather than those of every ranking, which the refused filters would pass for."""
    rank(tasks[0], quick_trainer("someone"), [[0], [1], [2], [3]])
    url = reverse("ranking:quality")
    response = admin_client_.get(
        url, {"submitted_from": "2030-01-01", "submitted_to": "2020-01-01"}
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert "The start date is after the end date." in html
    assert "No figures are shown until the filters are right." in html
    assert 'id="overall-agreement"' not in html and 'data-trainer="someone"' not in html
    assert admin_client_.get(url, {"submitted_from": "yesterday"}).status_code == 422

    unfiltered = admin_client_.get(url)
    assert unfiltered.status_code == 200
    assert 'data-trainer="someone"' in unfiltered.content.decode()


def test_gold_accuracy_on_the_quality_page_counts_only_the_rankings_the_filter_selects(
    tasks, admin_client_
):
    gil = quick_trainer("gil")
    for task, ordering in ((tasks[0], [[0], [1], [2], [3]]), (tasks[1], [[3], [2], [1], [0]])):
        ids = candidate_ids(task)
        gold = gold_task_create(task=task, ordering=[[ids[0]], [ids[1]], [ids[2]], [ids[3]]])
        rank(gold, gil, ordering)
    # The gold task gil got wrong was ranked ten days ago, before the dates chosen.
    Ranking.objects.filter(task__gold_of=tasks[1]).update(
        submitted_at=timezone.now() - timedelta(days=10)
    )
    since = (timezone.localdate() - timedelta(days=1)).isoformat()

    everything = admin_client_.get(reverse("ranking:quality")).content.decode()
    recent = admin_client_.get(reverse("ranking:quality"), {"submitted_from": since})

    def gold_cell(html: str) -> str:
        row = html[html.index('data-trainer="gil"') :].split("</tr>", 1)[0]
        return row.split('<td class="gold-accuracy">', 1)[1].split("</td>", 1)[0]

    assert gold_cell(everything) == "50 % (2)"
    assert gold_cell(recent.content.decode()) == "100 % (1)"


def test_krippendorffs_alpha_on_the_quality_page_counts_only_the_rankings_the_filter_selects(
    tasks, admin_client_
):
    ann, bob = quick_trainer("ann"), quick_trainer("bob")
    # Lately they agree (each way round once, so that chance agreement is not all there is)...
    for task, ordering in ((tasks[0], [[0], [1], [2], [3]]), (tasks[1], [[3], [2], [1], [0]])):
        rank(task, ann, ordering)
        rank(task, bob, ordering)
    # ...ten days ago, they did not.
    rank(tasks[2], ann, [[0], [1], [2], [3]])
    rank(tasks[2], bob, [[3], [2], [1], [0]])
    Ranking.objects.filter(task=tasks[2]).update(submitted_at=timezone.now() - timedelta(days=10))
    since = (timezone.localdate() - timedelta(days=1)).isoformat()

    everything = admin_client_.get(reverse("ranking:quality")).content.decode()
    recent = admin_client_.get(reverse("ranking:quality"), {"submitted_from": since})

    def alpha_cell(html: str) -> str:
        table = html[html.index('id="alphas"') :].split("</table>", 1)[0]
        return table.split('data-project="default">', 1)[1].split("</tr>", 1)[0]

    assert "<td>1.000</td>" not in alpha_cell(everything)
    assert "<td>1.000</td>" in alpha_cell(recent.content.decode())


def test_the_task_page_is_read_only_and_for_admins(tasks, admin_client_, trainer_client):
    task = tasks[0]
    rank(task, quick_trainer("rita"), [[0], [1, 2], [3]], rationale="clear first")
    url = reverse("ranking:quality-task", args=[task.pk])

    html = admin_client_.get(url).content.decode()

    ids = candidate_ids(task)
    assert f"{ids[0]} &gt; {ids[1]} = {ids[2]} &gt; {ids[3]}" in html
    assert "clear first" in html and "<form" not in html.split("</header>", 1)[1]
    assert trainer_client.get(url).status_code == 403
    quality = admin_client_.get(reverse("ranking:quality")).content.decode()
    assert "/admin/" not in quality.split("</header>", 1)[1]


def test_dashboard_selectors_count_per_day_per_trainer_and_the_trainers_own(tasks):
    rita, sam = quick_trainer("rita"), quick_trainer("sam")
    for task in tasks[:3]:
        rank(task, rita, [[0], [1], [2], [3]])
    rank(tasks[3], sam, [[1], [0], [2], [3]])
    Ranking.objects.filter(ranker=sam).update(submitted_at=timezone.now() - timedelta(days=2))

    days = rankings_per_day(days=3)
    assert [count for _, count in days] == [1, 0, 3]
    assert rankings_per_trainer(since=timezone.now() - timedelta(days=1)) == [("rita", 3)]
    mine = trainer_dashboard(trainer=rita)
    assert (mine.rankings, mine.rankings_this_week, len(mine.recent)) == (3, 3, 3)


def test_the_home_page_shows_each_role_its_dashboard(tasks, trainer, trainer_client, admin_client_):
    rank(tasks[0], trainer, [[0], [1], [2], [3]])

    trainer_home = trainer_client.get("/").content.decode()
    admin_home = admin_client_.get("/").content.decode()

    assert 'id="stat-rankings">1<' in trainer_home and "Recent rankings" in trainer_home
    assert "Operations" not in trainer_home
    assert 'id="chart-per-day"' in admin_home and 'id="per-day-data"' in admin_home
    assert 'id="queues"' in admin_home and "<script>" not in admin_home


def test_agreement_between_trainers_leaves_gold_copies_out(tasks):
    """A gold copy is a task its rankers agreed on, offered to every trainer: its rankings are
    scored against the known order (gold accuracy), not paired with each other, where each
    pair of its many rankers would weigh as much as a pair of rankers of a real task."""
    first, second = quick_trainer("first"), quick_trainer("second")
    rank(tasks[0], first, [[0], [1], [2], [3]])
    rank(tasks[0], second, [[1], [0], [3], [2]])  # 4 of the 6 pairs agree
    gold = gold_task_create(task=tasks[0], ordering=[[c] for c in candidate_ids(tasks[0])])
    for index in range(5):
        rank(gold, quick_trainer(f"gold{index}"), [[0], [1], [2], [3]])

    report = ranking_quality()

    assert report.overall.pairs == 1
    assert report.overall.pairwise == pytest.approx(4 / 6)
    assert [row.task.pk for row in report.lowest_tasks] == [tasks[0].pk]
    assert report.task_count == 1 and report.ranking_count == 2
    by_name = {row.username: row for row in report.trainers}
    # The gold rankers are still listed with their habits and gold accuracy, with no agreement.
    assert by_name["gold0"].quality.rankings == 1 and by_name["gold0"].gold_count == 1
    assert by_name["gold0"].quality.agreement is None
    assert by_name["first"].quality.agreement == pytest.approx(4 / 6)


def test_human_preference_between_versions_leaves_gold_copies_out(tasks):
    """A gold copy holds the same replies as its original: its rankings (by every trainer)
    would count the one task again and again."""
    newer = tasks[0].model_version
    older = model_version_create("older")
    Message.objects.filter(pk=tasks[0].source_message_id).update(model_version=older)
    for name in ("first", "second"):
        rank(tasks[0], quick_trainer(name), [[0], [1], [2], [3]])  # older's reply best
    gold = gold_task_create(task=tasks[0], ordering=[[c] for c in candidate_ids(tasks[0])[::-1]])
    for index in range(5):
        rank(gold, quick_trainer(f"gold{index}"), [[3], [2], [1], [0]])  # older's reply last

    preference = human_preference_between_versions(version_a_id=newer.pk, version_b_id=older.pk)

    assert (preference.rankings, preference.wins_a, preference.wins_b) == (2, 0, 6)
