import re

from django.contrib.auth import get_user_model
from django.test import Client

from accounts.services import user_create_trainer
from ranking.gold.services import gold_task_create
from ranking.models import Project, RankingTask
from ranking.projects.services import project_create
from ranking.rank import services
from tests.ranking.conftest import (
    finished_conversation,
    model_version_create,
    quick_trainer,
    rank,
    task_from_source,
)


def _rank_card_counts(client) -> tuple[int, int]:
    page = client.get("/").content.decode()
    found = re.search(r"(\d+) tasks? ready for you · (\d+) being prepared", page)
    assert found, "the Rank card's counts are on the home page"
    return int(found.group(1)), int(found.group(2))


def test_the_rank_card_counts_only_tasks_the_trainer_can_be_given(trainer, trainer_client):
    writer = quick_trainer("writer")
    version = model_version_create("v1")
    paused = project_create(name="Paused", slug="paused", status=Project.Status.PAUSED)

    def task(owner=writer, **fields):
        made = task_from_source(finished_conversation(owner).active_leaf, model_version=version)
        RankingTask.objects.filter(pk=made.pk).update(**fields)
        return made

    task()
    original = task()
    ids = list(original.candidates.order_by("position").values_list("id", flat=True))
    gold_task_create(task=original, ordering=[[each] for each in ids])
    task(project=paused)  # a paused project's tasks are given to nobody
    task(project=paused, status=RankingTask.Status.PREPARING)
    task(owner=trainer)  # their own conversation's: never theirs to rank
    task(status=RankingTask.Status.PREPARING)

    ready, preparing = _rank_card_counts(trainer_client)

    # The two regular tasks of the default project: not the gold copy (it stands in for a
    # task, it is not more work), nor a paused project's, nor their own conversation's.
    assert ready == 2
    assert preparing == 1


def test_the_rank_card_leaves_out_a_task_whose_gold_copy_the_trainer_ranked(
    trainer, trainer_client
):
    """A trainer who ranked a gold copy knows its original's expected answer: a claim never
    gives them the original, so it is no task ready for them."""
    writer = quick_trainer("writer")
    original = task_from_source(
        finished_conversation(writer).active_leaf, model_version=model_version_create("v1")
    )
    ids = list(original.candidates.order_by("position").values_list("id", flat=True))
    gold = gold_task_create(task=original, ordering=[[each] for each in ids])
    rank(gold, trainer, [[0], [1], [2], [3]])
    assert services.task_claim_next(trainer=trainer) is None

    assert _rank_card_counts(trainer_client) == (0, 0)


def test_the_trainers_counts_read_as_english_for_one_and_for_several(trainer, trainer_client):
    finished_conversation(trainer)
    html = trainer_client.get("/").content.decode()
    assert "conversation finished (" in html and "conversations finished" not in html
    assert "rankings (0 this week)" in html  # none: plural
    finished_conversation(trainer)
    assert "conversations finished (" in trainer_client.get("/").content.decode()


def test_an_empty_conversation_list_spans_the_columns_a_trainer_sees(trainer_client):
    html = trainer_client.get("/write/").content.decode()
    columns = len(re.findall(r"<th>", html.split("</thead>")[0].rsplit("<thead>", 1)[1]))
    assert columns == 4 and 'colspan="4"' in html


def test_the_top_bar_names_the_role_unless_the_user_name_already_says_it(db):
    users = [
        (get_user_model().objects.create_superuser(username="admin", password="x" * 12), "admin"),
        (
            get_user_model().objects.create_superuser(username="ada", password="x" * 12),
            "ada · admin",
        ),
        (user_create_trainer(username="trainer", password="x" * 12), "trainer"),
        (user_create_trainer(username="tess", password="x" * 12), "tess · trainer"),
    ]
    for user, shown in users:
        client = Client()
        client.force_login(user)
        page = client.get("/accounts/").content.decode()
        assert f'<a class="who" href="/accounts/">{shown}</a>' in page, user.username
