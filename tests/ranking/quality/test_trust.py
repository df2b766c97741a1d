"""Trust (one-coin Dawid-Skene), the consensus ranking, Krippendorff's alpha, their place in
exports and on the pages, and trust-weighted training losses."""

import json

import pytest
import torch
from django.core.management import call_command
from django.urls import reverse

from ranking.exports.filters import ExportFilters
from ranking.exports.pipeline import records
from ranking.gold.services import gold_task_create
from ranking.projects.models import Project
from ranking.projects.services import project_create
from ranking.quality.models import TrustEstimate
from ranking.quality.selectors import (
    krippendorff_alpha_by_project,
    trainer_trust,
    trust_estimate_is_current,
    trust_estimate_latest,
    trust_exact,
    trust_stored,
)
from ranking.quality.services import trust_refresh_all, trust_refresh_if_stale
from ranking.quality.trust import (
    PRIOR_RIGHT,
    PRIOR_WRONG,
    Judgement,
    Trust,
    Votes,
    consensus_ranking,
    krippendorff_alpha_pairwise,
    trust_estimate,
)
from ranking.rank import services
from sampler.training.config import DPOConfig
from sampler.training.data import DataError, build_ranking_data
from sampler.training.dpo import ranking_losses
from sampler.training.losses import grouped_ranking_loss
from sampler.training.preference import PromptCompletions
from tests.ranking.conftest import (
    candidate_ids,
    finished_conversation,
    model_version_create,
    quick_trainer,
    rank,
    submit_by_positions,
    task_from_source,
    task_in_project,
)

A, B, C = 1, 2, 3


def test_one_em_step_matches_the_hand_computed_case():
    # Pair x (task 1, replies 10 and 11): A and B put 10 first, C puts 11 first.
    # Gold pair g (task 2, replies 20 and 21, 20 is truly first): A right, C wrong.
    judgements = [
        Judgement(1, A, 10, 11),
        Judgement(1, B, 10, 11),
        Judgement(1, C, 11, 10),
        Judgement(2, A, 20, 21),
        Judgement(2, C, 21, 20),
    ]
    trust = trust_estimate(judgements, gold={(2, 20, 21): True}, iterations=1, initial=0.7)
    # E: P(10 first) = .7*.7*.3 / (.7*.7*.3 + .3*.3*.7) = .147 / .21 = .7; the gold pair is 1.
    # M with a Beta(1, 1) prior: A (.7 + 1 + 1) / (2 + 2), B (.7 + 1) / (1 + 2),
    # C (.3 + 0 + 1) / (2 + 2).
    assert trust[A].trust == pytest.approx(2.7 / 4)
    assert trust[B].trust == pytest.approx(1.7 / 3)
    assert trust[C].trust == pytest.approx(1.3 / 4)
    assert (trust[A].judgements, trust[A].gold_judgements) == (2, 1)


def test_on_gold_alone_trust_is_the_smoothed_share_right():
    gold = {(task, 0, 1): True for task in range(5)}
    judgements = [Judgement(task, A, 0, 1) for task in range(4)] + [Judgement(4, A, 1, 0)]
    assert trust_estimate(judgements, gold=gold)[A].trust == pytest.approx((4 + 1) / (5 + 2))


def test_a_contrarian_ends_below_chance_and_the_agreeing_majority_above():
    judgements = []
    for task in range(20):
        judgements += [Judgement(task, A, 0, 1), Judgement(task, B, 0, 1)]
        judgements.append(Judgement(task, C, 1, 0))
    trust = trust_estimate(judgements)
    assert trust[A].trust > 0.85 and trust[B].trust > 0.85
    assert trust[C].trust < 0.15


def test_consensus_is_a_trust_weighted_borda_count():
    # Log-odds weights: trust .9 -> ln 9, .6 -> ln 1.5, .5 -> 0.
    consensus = consensus_ranking(
        [([[1], [2], [3]], 0.9), ([[3], [2], [1]], 0.6), ([[2], [1, 3]], 0.5)]
    )
    # Scores: 1: 2 ln 9; 2: ln 9 + ln 1.5; 3: 2 ln 1.5.
    assert consensus == [[1], [2], [3]]
    assert consensus_ranking([([[1], [2]], 0.8), ([[2], [1]], 0.8)]) == [[1, 2]]


def test_krippendorff_alpha_of_hand_computed_cases():
    # Unit (1,2): both say 1 first; unit (3,4): split. Coincidences o00 = 2, o01 = o10 = 1:
    # D_o = 2/4, D_e = (3*1 + 1*3) / (4*3) = 1/2, alpha = 0.
    assert krippendorff_alpha_pairwise([[[[1], [2]], [[1], [2]]], [[[3], [4]], [[4], [3]]]]) == 0
    # Both units agreed, one each way: D_o = 0, alpha = 1.
    assert krippendorff_alpha_pairwise([[[[1], [2]], [[1], [2]]], [[[4], [3]], [[4], [3]]]]) == 1
    assert krippendorff_alpha_pairwise([[[[1], [2]]]]) is None


@pytest.mark.django_db
def test_exports_carry_trust_and_consensus_and_pages_show_them_to_the_right_people(
    other_trainer, client, admin_user
):
    project = project_create(name="T", slug="t", status=Project.Status.ACTIVE, gold_rate=1.0)
    version = model_version_create("v")
    tasks = [task_in_project(other_trainer, project, version, f"q{index}") for index in range(3)]
    good, also_good, contrarian = quick_trainer("g1"), quick_trainer("g2"), quick_trainer("c")
    for task in tasks[:2]:
        rank(task, good, [[0], [1], [2], [3]])
        rank(task, also_good, [[0], [1], [2], [3]])
        rank(task, contrarian, [[3], [2], [1], [0]])
    rank(tasks[2], good, [[0], [1], [2], [3]])
    gold = gold_task_create(task=tasks[2])
    submit_by_positions(
        services.task_claim_next(trainer=contrarian), contrarian, [[3], [2], [1], [0]]
    )
    trust = trainer_trust(project_ids=[project.pk])
    assert trust[good.pk].trust > 0.8 > 0.2 > trust[contrarian.pk].trust
    assert trust[contrarian.pk].gold_judgements == 6
    rows = list(records("rankings", ExportFilters(project_ids=(project.pk,), pseudonymize=False)))
    assert {row["schema_version"] for row in rows} == {2}
    first = next(r for r in rows if r["task_id"] == tasks[0].pk and r["ranker"] == good.pk)
    ids = candidate_ids(tasks[0])
    assert first["trust_weight"] == pytest.approx(trust[good.pk].trust)
    assert first["consensus"] == [[ids[0]], [ids[1]], [ids[2]], [ids[3]]]
    assert first["project"] == "t"
    assert gold.pk not in {row["task_id"] for row in rows}
    pairs = list(records("pairs", ExportFilters(project_ids=(project.pk,), pseudonymize=False)))
    contrarian_pair = next(p for p in pairs if p["ranker"] == contrarian.pk)
    assert contrarian_pair["trust_weight"] == pytest.approx(trust[contrarian.pk].trust)
    alpha = krippendorff_alpha_by_project()[project.pk]
    assert alpha is not None and alpha < 0.5
    # Pages show the stored estimate (a periodic task makes it); a GET never estimates.
    client.force_login(admin_user)
    before = client.get(reverse("ranking:quality")).content.decode()
    assert "not estimated yet" in before and f"{trust[good.pk].trust:.2f}" not in before
    assert not TrustEstimate.objects.exists()
    assert trust_refresh_all() == 3  # each project (the default has no rankings) and all
    page = client.get(reverse("ranking:quality")).content.decode()
    assert f"{trust[good.pk].trust:.2f}" in page and f"{alpha:.3f}" in page
    client.force_login(contrarian)
    mine = client.get(reverse("ranking:project-picker")).content.decode()
    assert f"{trust[contrarian.pk].trust:.2f}" in mine
    assert f"{trust[good.pk].trust:.2f}" not in mine
    assert client.get(reverse("ranking:quality")).status_code == 403


def test_trust_weights_scale_each_rankings_share_of_the_reward_loss():
    scores = torch.tensor([2.0, 0.0, 0.0, 1.0], requires_grad=True)
    winners, losers, elements = torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([0, 1])
    # Per ranking: -log sigmoid(2) and -log sigmoid(-1); weights .9 and .1.
    loss = grouped_ranking_loss(
        scores, winners, losers, elements, 2, element_weights=torch.tensor([0.9, 0.1])
    )
    first = -torch.nn.functional.logsigmoid(torch.tensor(2.0))
    second = -torch.nn.functional.logsigmoid(torch.tensor(-1.0))
    assert loss.item() == pytest.approx((0.9 * first + 0.1 * second).item(), rel=1e-6)
    plain = grouped_ranking_loss(scores, winners, losers, elements, 2)
    assert plain.item() == pytest.approx(((first + second) / 2).item(), rel=1e-6)


def test_trust_weights_scale_each_rankings_share_of_the_dpo_loss():
    examples = [
        PromptCompletions(prompt=[1], completions=[[2], [3]], groups=[[0], [1]], weight=w)
        for w in (0.75, 0.25)
    ]
    logratios = torch.tensor([1.0, 0.0, 0.0, 1.0])
    weighted, _ = ranking_losses(logratios, examples, DPOConfig(weight_by_trust=True))
    plain, _ = ranking_losses(logratios, examples, DPOConfig())
    first = -torch.nn.functional.logsigmoid(torch.tensor(0.1))
    second = -torch.nn.functional.logsigmoid(torch.tensor(-0.1))
    assert weighted.item() == pytest.approx((0.75 * first + 0.25 * second).item(), rel=1e-5)
    assert plain.item() == pytest.approx(((first + second) / 2).item(), rel=1e-5)


def test_weighting_by_trust_needs_records_that_carry_it(micro_model_dir):
    from sampler.training.model import load_tokenizer

    tokenizer = load_tokenizer(micro_model_dir)
    record = {
        "prompt": [{"role": "user", "content": "hi"}],
        "candidates": [{"candidate_id": 1, "text": "a"}, {"candidate_id": 2, "text": "b"}],
        "ordering": [[1], [2]],
        "conversation_id": 1,
        "split": "train",
    }
    with pytest.raises(DataError, match="trust_weight"):
        build_ranking_data(
            tokenizer, [record], max_length=32, test_fraction=0, seed=0, weight_by_trust=True
        )
    data = build_ranking_data(
        tokenizer,
        [{**record, "trust_weight": 0.3}],
        max_length=32,
        test_fraction=0,
        seed=0,
        weight_by_trust=True,
    )
    assert data.train[0].weight == 0.3


def test_a_stored_estimate_is_used_while_current_and_made_again_after_new_rankings(
    other_trainer,
):
    project = project_create(name="S", slug="s", status=Project.Status.ACTIVE)
    version = model_version_create("v")
    tasks = [task_in_project(other_trainer, project, version, f"q{index}") for index in range(2)]
    first, second = quick_trainer("f"), quick_trainer("s")
    rank(tasks[0], first, [[0], [1], [2], [3]])
    rank(tasks[0], second, [[0], [1], [3], [2]])
    assert trust_refresh_if_stale(project_ids=[project.pk]) is True
    stored = trust_estimate_latest(project_id=project.pk)
    assert stored.rankings == 2 and trust_estimate_is_current(stored)
    assert trust_stored(stored) == trainer_trust(project_ids=[project.pk])
    assert trust_refresh_if_stale(project_ids=[project.pk]) is False  # nothing new
    # Several projects together are estimated as the export reads, never stored.
    assert trust_refresh_if_stale(project_ids=[project.pk, project.pk + 1]) is False

    rank(tasks[1], second, [[3], [2], [1], [0]])
    assert not trust_estimate_is_current(stored)
    # Until it is made again, exports estimate exactly (nothing written), pages show the old one.
    assert trust_exact(project_ids=[project.pk]) == trainer_trust(project_ids=[project.pk])
    assert TrustEstimate.objects.get(project=project).pk == stored.pk
    assert trust_refresh_if_stale(project_ids=[project.pk]) is True
    again = TrustEstimate.objects.get(project=project)  # the older one is replaced
    assert again.rankings == 3 and trust_stored(again) == trainer_trust(project_ids=[project.pk])


def test_exporting_rankings_brings_the_stored_estimate_up_to_date(other_trainer, tmp_path):
    conversation = finished_conversation(other_trainer)
    task = task_from_source(
        conversation.messages.get(role="assistant"), model_version=model_version_create("v")
    )
    rank(task, quick_trainer("r1"), [[0], [1], [2], [3]])
    rank(task, quick_trainer("r2"), [[1], [0], [2], [3]])
    out = tmp_path / "rankings.jsonl"
    call_command("export_comparisons", "--format", "pairs", "--out", str(out), verbosity=0)
    estimate = trust_estimate_latest(project_id=None)
    assert estimate is not None and trust_estimate_is_current(estimate)
    weights = {json.loads(line)["trust_weight"] for line in out.read_text().splitlines()}
    assert weights == {value.trust for value in trust_stored(estimate).values()}


def test_rankings_that_order_nothing_give_the_prior_and_never_stop_another_projects_estimate(
    other_trainer,
):
    """A project whose only ranking is "all equally good" has trainers and no judgement: each
    gets the prior's trust; the periodic refresh still estimates every project."""
    version = model_version_create("v")
    projects = []
    for slug in ("tied", "ordered"):
        project = project_create(name=slug, slug=slug, status=Project.Status.ACTIVE)
        conversation = finished_conversation(other_trainer, turns=(f"{slug}?", f"{slug}!"))
        task = task_from_source(conversation.messages.get(role="assistant"), model_version=version)
        task.__class__.objects.filter(pk=task.pk).update(project=project)
        projects.append((project, task))
    trainer = quick_trainer("equal")
    rank(projects[0][1], trainer, [], verdict="all_equal", rationale="all fine")
    rank(projects[1][1], trainer, [[0], [1], [2], [3]])

    prior = trust_estimate(Votes())  # no trainer: nothing
    assert prior == {}
    tied = trainer_trust(project_ids=[projects[0][0].pk])
    assert tied == {trainer.pk: Trust(PRIOR_RIGHT / (PRIOR_RIGHT + PRIOR_WRONG), 0, 0)}
    trust_refresh_all()
    for project, _ in projects:
        assert trust_estimate_latest(project_id=project.pk) is not None, project.slug
