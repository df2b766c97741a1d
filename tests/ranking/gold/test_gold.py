import random
import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from ranking.exports.filters import ExportFilters
from ranking.exports.pipeline import records
from ranking.gold.models import Qualification
from ranking.gold.selectors import gold_accuracy_by_trainer, gold_score
from ranking.gold.services import gold_task_create
from ranking.models import RankingTask
from ranking.projects.models import Project
from ranking.projects.services import project_create
from ranking.rank import services
from tests.ranking.conftest import (
    candidate_ids,
    model_version_create,
    quick_trainer,
    rank,
    submit_by_positions,
    task_in_project,
)

pytestmark = pytest.mark.django_db


def _qualifying_project(slug, *, tasks, **fields):
    """An active project that requires N = ``tasks`` gold rankings at 80 % to qualify."""
    return project_create(
        name=slug.title(),
        slug=slug,
        status=Project.Status.ACTIVE,
        qualification_required=True,
        qualification_tasks=tasks,
        qualification_threshold=0.8,
        **fields,
    )


@pytest.fixture
def project(db):
    return project_create(name="Gold", slug="gold", status=Project.Status.ACTIVE, gold_rate=1.0)


def test_gold_score_is_the_share_of_expected_pairs_ordered_alike():
    gold = [[1], [2, 3], [4]]  # strict pairs: 1>2, 1>3, 1>4, 2>4, 3>4
    assert gold_score(ordering=[[1], [2], [3], [4]], gold_ordering=gold, cannot_rank=False) == 1.0
    # 4 first: 1>4, 2>4, 3>4 wrong; 1>2, 1>3 right.
    assert gold_score(
        ordering=[[4], [1], [2], [3]], gold_ordering=gold, cannot_rank=False
    ) == pytest.approx(2 / 5)
    # A tie where gold orders counts as wrong.
    assert gold_score(
        ordering=[[1, 2], [3], [4]], gold_ordering=gold, cannot_rank=False
    ) == pytest.approx(4 / 5)
    assert gold_score(ordering=[], gold_ordering=gold, cannot_rank=True) == 0.0


def test_agreed_task_becomes_gold_offered_only_to_who_did_not_rank_it(other_trainer, project):
    original = task_in_project(other_trainer, project, model_version_create("v"), "q")
    RankingTask.objects.filter(pk=original.pk).update(overlap_required=2)
    Project.objects.filter(pk=project.pk).update(gold_rate=1.0)
    first, second, third = (quick_trainer(name) for name in ("a", "b", "c"))
    for ranker in (first, second):
        rank(original, ranker, [[2], [0], [1, 3]])
    gold = gold_task_create(task=original)
    ids = candidate_ids(gold)
    assert gold.gold_of == original
    # The original holds its source; the copy, made of the same source, does not.
    assert RankingTask.objects.get(pk=original.pk).holds_source and not gold.holds_source
    assert gold.gold_ordering == [[ids[2]], [ids[0]], sorted([ids[1], ids[3]])]
    assert services.task_claim_next(trainer=first) is None
    assert services.task_claim_next(trainer=third).task == gold
    with pytest.raises(ValidationError, match="already gold"):
        gold_task_create(task=gold)
    with pytest.raises(ValidationError, match=f"has a gold copy already: task {gold.pk}"):
        gold_task_create(task=original)
    assert RankingTask.objects.filter(gold_of=original).count() == 1
    # Gold rankings are not exported as data, and gold tasks do not fill the pool.
    submit_by_positions(services.task_claim_next(trainer=third), third, [[2], [0], [1], [3]])
    exported = {r["task_id"] for r in records("rankings", ExportFilters())}
    assert exported == {original.pk}


def test_a_gold_copy_is_not_offered_to_who_skipped_its_original(other_trainer, project):
    """A trainer who was shown the original (and skipped it) would know the copy for a check."""
    original = task_in_project(other_trainer, project, model_version_create("v"), "q")
    RankingTask.objects.filter(pk=original.pk).update(overlap_required=3)
    first, second, skipper, fresh = (quick_trainer(name) for name in ("a", "b", "s", "f"))
    services.assignment_skip(
        assignment=services.task_claim_next(trainer=skipper), trainer=skipper, reason="unsure"
    )
    for ranker in (first, second):
        rank(original, ranker, [[2], [0], [1, 3]])
    gold = gold_task_create(task=original)
    assert services.task_claim_next(trainer=skipper) is None
    assert services.task_claim_next(trainer=fresh).task == gold


def test_a_task_agreed_to_be_all_equally_good_cannot_become_gold_without_a_written_order(
    other_trainer, project
):
    """No pair to get right: every answer would score 0 and fail qualification."""
    original = task_in_project(other_trainer, project, model_version_create("v"), "q")
    for name in ("a", "b"):
        rank(original, quick_trainer(name), [], verdict="all_equal", rationale="all fine")
    with pytest.raises(ValidationError, match="every reply is as good as the others"):
        gold_task_create(task=original)
    assert not RankingTask.objects.filter(gold_of=original).exists()


@pytest.mark.parametrize("verdict", ["all_bad", "cannot_rank"])
def test_a_task_one_ranker_could_not_rank_needs_a_written_order(other_trainer, project, verdict):
    """Two rankers gave the same order and a third said the replies cannot be ordered (all
    bad, or cannot rank): the rankers did not agree on an order, so there is none to copy."""
    original = task_in_project(other_trainer, project, model_version_create("v"), "q")
    for name in ("a", "b"):
        rank(original, quick_trainer(name), [[2], [0], [1, 3]])
    rank(original, quick_trainer("c"), [], verdict=verdict, rationale="none of these")
    with pytest.raises(ValidationError, match="1 of the 3 rankings of this task give no order"):
        gold_task_create(task=original)
    assert not RankingTask.objects.filter(gold_of=original).exists()
    ids = candidate_ids(original)
    # An order the admin writes still makes it gold.
    assert gold_task_create(task=original, ordering=[[ids[2]], [ids[0]], [ids[1], ids[3]]])


def test_disagreeing_task_needs_a_written_order_and_a_bad_one_is_refused(other_trainer, project):
    task = task_in_project(other_trainer, project, model_version_create("v"), "q")
    rank(task, quick_trainer("a"), [[0], [1], [2], [3]])
    rank(task, quick_trainer("b"), [[3], [2], [1], [0]])
    with pytest.raises(ValidationError, match="do not agree"):
        gold_task_create(task=task)
    ids = candidate_ids(task)
    with pytest.raises(ValidationError, match="exactly once"):
        gold_task_create(task=task, ordering=[[ids[0]], [ids[1]]])
    gold = gold_task_create(task=task, ordering=[[ids[1]], [ids[0], ids[2]], [ids[3]]])
    copied = candidate_ids(gold)
    assert gold.gold_ordering == [[copied[1]], [copied[0], copied[2]], [copied[3]]]


def test_gold_is_mixed_into_the_stream_at_the_project_rate(other_trainer, project):
    version = model_version_create("v")
    regular = task_in_project(other_trainer, project, version, "regular")
    expert = task_in_project(other_trainer, project, version, "expert")
    rank(expert, quick_trainer("x"), [[0], [1], [2], [3]])
    gold = gold_task_create(task=expert)
    trainer = quick_trainer("t")
    Project.objects.filter(pk=project.pk).update(gold_rate=0.0)
    assignment = services.task_claim_next(trainer=trainer, rng=random.Random(0))
    assert assignment.task == regular
    services.assignment_skip(assignment=assignment, trainer=trainer)
    other = quick_trainer("u")
    Project.objects.filter(pk=project.pk).update(gold_rate=1.0)
    assert services.task_claim_next(trainer=other, rng=random.Random(0)).task == gold


def test_qualification_gives_real_tasks_only_above_the_threshold(other_trainer, client):
    project = _qualifying_project("qualified", tasks=2)
    version = model_version_create("v")
    golds = []
    for text in ("g1", "g2"):
        original = task_in_project(other_trainer, project, version, text)
        rank(original, quick_trainer(f"expert-{text}"), [[0], [1], [2], [3]])
        golds.append(gold_task_create(task=original))
    real = task_in_project(other_trainer, project, version, "real")
    good, bad = quick_trainer("good"), quick_trainer("bad")
    for trainer, positions in ((good, [[0], [1], [2], [3]]), (bad, [[3], [2], [1], [0]])):
        for _ in golds:
            assignment = services.task_claim_next(trainer=trainer)
            assert assignment.task in golds  # never the real task before qualifying
            submit_by_positions(assignment, trainer, positions)
    passed = Qualification.objects.get(trainer=good)
    failed = Qualification.objects.get(trainer=bad)
    assert (passed.status, passed.accuracy, passed.gold_ranked) == ("passed", 1.0, 2)
    assert "100% on 2 gold tasks is at or above the threshold of 80%" in passed.reason
    assert (failed.status, failed.accuracy) == ("failed", 0.0)
    assert "below the threshold" in failed.reason
    assert services.task_claim_next(trainer=good).task == real
    assert services.task_claim_next(trainer=bad) is None
    # Both sides see the result and the reason.
    client.force_login(bad)
    assert failed.reason.encode() in client.get(reverse("ranking:project-picker")).content
    assert gold_accuracy_by_trainer(project_ids=[project.pk])[bad.pk] == (0.0, 2)


def test_admin_makes_gold_on_the_project_page_and_sees_accuracy_on_quality(
    client, admin_user, other_trainer, project
):
    task = task_in_project(other_trainer, project, model_version_create("v"), "q")
    ranker = quick_trainer("r")
    rank(task, ranker, [[1], [0], [2], [3]])
    client.force_login(admin_user)
    made = client.post(reverse("ranking:project-gold", args=["gold"]), {"task_id": task.pk})
    assert made.status_code == 302
    gold = RankingTask.objects.get(gold_of=task)
    refused = client.post(
        reverse("ranking:project-gold", args=["gold"]), {"task_id": task.pk, "ordering": "[[1]]"}
    )
    assert refused.status_code == 302 and RankingTask.objects.filter(gold_of=task).count() == 1
    trainer = quick_trainer("t")
    submit_by_positions(services.task_claim_next(trainer=trainer), trainer, [[0], [1], [2], [3]])
    detail = client.get(reverse("ranking:project-detail", args=["gold"]))
    assert f"Task {gold.pk}".encode() in detail.content
    page = client.get(reverse("ranking:quality"), {"project": project.pk})
    # Gold order 1 > 0 > 2 > 3; t ranked 0 > 1 > 2 > 3: 5 of 6 pairs.
    assert b'<td class="gold-accuracy">83 % (1)</td>' in page.content


def test_the_gold_form_redirects_to_the_project_page_by_its_stored_slug(
    client, admin_user, other_trainer, project
):
    """Slugs name a project in any letter case; the gold form posted at ``/projects/GOLD/``
    redirected back to ``/projects/GOLD/``, the slug as typed: every answer now leads to the
    project's own address."""
    task = task_in_project(other_trainer, project, model_version_create("v"), "q")
    rank(task, quick_trainer("r"), [[1], [0], [2], [3]])
    client.force_login(admin_user)
    url = reverse("ranking:project-gold", args=["GOLD"])
    own = reverse("ranking:project-detail", args=["gold"])
    made = client.post(url, {"task_id": task.pk})
    gold = RankingTask.objects.get(gold_of=task)
    answers = [
        made,  # made
        client.post(url, {"task_id": task.pk, "ordering": "[[1]]"}),  # refused by the service
        client.post(url, {"task_id": "many"}),  # the form's error
        client.post(url, {"task_id": 424242}),  # no such task
        client.post(url, {"task_id": gold.pk}),  # a gold task
    ]
    assert [(answer.status_code, answer["Location"]) for answer in answers] == 5 * [(302, own)]


def test_the_gold_forms_ordering_box_starts_empty(client, admin_user, project):
    """Empty means the order the rankers agreed on, as the box's help says; it showed ``null``."""
    client.force_login(admin_user)
    page = client.get(reverse("ranking:project-detail", args=["gold"])).content.decode()
    box = re.search(r"<textarea[^>]*name=\"ordering\"[^>]*>(.*?)</textarea>", page, re.S)
    assert box is not None and box.group(1).strip() == ""


def test_a_task_id_that_is_no_task_of_the_project_is_said_on_its_page_not_a_404(
    client, admin_user, other_trainer, project
):
    task = task_in_project(other_trainer, project, model_version_create("v"), "q")
    rank(task, quick_trainer("r"), [[1], [0], [2], [3]])
    elsewhere = project_create(name="Elsewhere", slug="elsewhere", status=Project.Status.ACTIVE)
    other = task_in_project(other_trainer, elsewhere, model_version_create("w"), "p")
    client.force_login(admin_user)
    url = reverse("ranking:project-gold", args=["gold"])
    assert client.post(url, {"task_id": task.pk}).status_code == 302
    gold = RankingTask.objects.get(gold_of=task)
    for task_id, said in [
        (424242, "No task 424242 in this project."),
        (other.pk, f"No task {other.pk} in this project."),
        (gold.pk, f"Task {gold.pk} is a gold task (a copy of task {task.pk}): make gold of a real"),
    ]:
        answer = client.post(url, {"task_id": task_id}, follow=True)
        assert answer.redirect_chain == [(reverse("ranking:project-detail", args=["gold"]), 302)]
        assert said in answer.content.decode()
    assert RankingTask.objects.filter(gold_of__isnull=False).count() == 1


def test_gold_ranked_before_qualification_was_required_counts_and_a_stuck_trainer_is_told(
    other_trainer, trainer_client, trainer
):
    project = project_create(name="Later", slug="later", status=Project.Status.ACTIVE, gold_rate=1)
    version = model_version_create("v")
    golds = []
    for text in ("g1", "g2"):
        original = task_in_project(other_trainer, project, version, text)
        rank(original, trainer, [[0], [1], [2], [3]])  # the trainer ranks the originals
        golds.append(gold_task_create(task=original))
    real = task_in_project(other_trainer, project, version, "real")
    veteran = quick_trainer("veteran")
    for _ in golds:
        submit_by_positions(
            services.task_claim_next(trainer=veteran), veteran, [[0], [1], [2], [3]]
        )
    Project.objects.filter(pk=project.pk).update(
        gold_rate=0, qualification_required=True, qualification_tasks=2
    )
    # The veteran's two gold rankings decide at the next claim, and real work follows.
    assert services.task_claim_next(trainer=veteran).task == real
    decided = Qualification.objects.get(trainer=veteran, project=project)
    assert (decided.status, decided.gold_ranked) == ("passed", 2)
    fresh = quick_trainer("fresh")
    assert services.task_claim_next(trainer=fresh).task in golds
    # A claim writes nothing for a trainer short of the gold it takes to decide.
    assert not Qualification.objects.filter(trainer=fresh).exists()
    # The trainer ranked both originals: no gold task is left for them, and the page says why.
    assert services.task_claim_next(trainer=trainer) is None
    card = trainer_client.post(reverse("ranking:claim"), headers={"HX-Request": "true"})
    text = card.content.decode()  # across all projects: the default one is open, but empty
    assert 'data-reason="qualification"' not in text and "not qualified there yet" in text
    assert "No such task is left that you may" in text and "(0 done)" in text
    trainer_client.post(reverse("ranking:project-choose"), {"project": "later"})
    card = trainer_client.post(reverse("ranking:claim"), headers={"HX-Request": "true"})
    text = card.content.decode()
    assert 'data-reason="qualification"' in text and "No such task is left that you may" in text


def test_undoing_a_gold_ranking_that_decided_qualification_lets_the_corrected_one_decide(
    other_trainer,
):
    project = _qualifying_project("undo", tasks=1, gold_rate=1.0)
    version = model_version_create("v")
    golds = []
    for text in ("g1", "g2"):
        original = task_in_project(other_trainer, project, version, text)
        RankingTask.objects.filter(pk=original.pk).update(overlap_required=1)
        rank(original, quick_trainer(f"expert-{text}"), [[0], [1], [2], [3]])
        golds.append(gold_task_create(task=original))
    real = task_in_project(other_trainer, project, version, "real")
    trainer = quick_trainer("t")
    assignment = services.task_claim_next(trainer=trainer)
    assert assignment.task == golds[0]
    mistaken = submit_by_positions(assignment, trainer, [[3], [2], [1], [0]])
    assert Qualification.objects.get(trainer=trainer).status == "failed"

    restored = services.ranking_undo(ranking_id=mistaken.pk, trainer=trainer)

    pending = Qualification.objects.get(trainer=trainer)
    assert (pending.status, pending.gold_ranked, pending.accuracy) == ("pending", 0, None)
    assert (pending.reason, pending.decided_at) == ("", None)
    submit_by_positions(restored, trainer, [[0], [1], [2], [3]])
    passed = Qualification.objects.get(trainer=trainer)
    assert (passed.status, passed.gold_ranked, passed.accuracy) == ("passed", 1, 1.0)
    # A gold ranking the decision did not count (mixed in afterwards) changes nothing when
    # it is taken back.
    mixed_in = services.task_claim_next(trainer=trainer, rng=random.Random(0))
    assert mixed_in.task == golds[1]
    later = submit_by_positions(mixed_in, trainer, [[3], [2], [1], [0]])
    services.ranking_undo(ranking_id=later.pk, trainer=trainer)
    kept = Qualification.objects.get(trainer=trainer)
    assert (kept.status, kept.gold_ranked, kept.decided_at) == ("passed", 1, passed.decided_at)
    services.assignment_skip(assignment=mixed_in, trainer=trainer)
    assert services.task_claim_next(trainer=trainer).task == real


def test_a_qualification_no_longer_required_keeps_its_decision_when_its_gold_ranking_is_undone(
    other_trainer,
):
    """Nothing would decide it again: pending would stay pending, and if qualification came
    back on, the trainer would get only gold tasks."""
    project = _qualifying_project("off", tasks=1, gold_rate=1.0)
    original = task_in_project(other_trainer, project, model_version_create("v"), "g")
    RankingTask.objects.filter(pk=original.pk).update(overlap_required=1)
    rank(original, quick_trainer("expert"), [[0], [1], [2], [3]])
    gold = gold_task_create(task=original)
    trainer = quick_trainer("t")
    assignment = services.task_claim_next(trainer=trainer)
    assert assignment.task == gold
    deciding = submit_by_positions(assignment, trainer, [[0], [1], [2], [3]])
    assert Qualification.objects.get(trainer=trainer).status == "passed"
    Project.objects.filter(pk=project.pk).update(qualification_required=False)
    services.ranking_undo(ranking_id=deciding.pk, trainer=trainer)
    assert Qualification.objects.get(trainer=trainer).status == "passed"
