"""The reward and SFT loss helpers against values computed by hand."""

import math

import pytest
import torch

from sampler.training.config import RewardConfig
from sampler.training.data import RankingCollator, RankingExample
from sampler.training.losses import (
    centering_penalty,
    grouped_ranking_loss,
    implied_pairs,
    kwise_ranking_loss,
    masked_mean,
    pairwise_correct,
    tie_loss,
    tied_pairs,
    token_cross_entropy,
)
from sampler.training.records import DataError


def neg_log_sigmoid(x: float) -> float:
    return math.log(1 + math.exp(-x))


def test_implied_pairs_of_a_total_order_are_all_k_choose_2():
    assert implied_pairs([[0], [1], [2]]) == [(0, 1, 1), (0, 2, 2), (1, 2, 1)]
    assert len(implied_pairs([[i] for i in range(9)])) == 36


def test_ties_give_no_pair():
    assert implied_pairs([[0, 1], [2]]) == [(0, 2, 1), (1, 2, 1)]
    assert implied_pairs([[0, 1, 2]]) == []


def test_kwise_loss_is_the_mean_over_all_implied_pairs():
    scores = torch.tensor([2.0, 1.0, 0.0])
    expected = (neg_log_sigmoid(1) + neg_log_sigmoid(2) + neg_log_sigmoid(1)) / 3
    assert kwise_ranking_loss(scores, [[0], [1], [2]]).item() == pytest.approx(expected, rel=1e-6)


def test_kwise_loss_with_tie_weight_zero_skips_the_tied_pair():
    scores = torch.tensor([2.0, 1.0, 0.0])
    # 0 and 1 tied above 2: pairs (0,2) and (1,2) only.
    expected = (neg_log_sigmoid(2) + neg_log_sigmoid(1)) / 2
    loss = kwise_ranking_loss(scores, [[0, 1], [2]], tie_weight=0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert kwise_ranking_loss(scores, [[0, 1, 2]], tie_weight=0.0).item() == 0.0


def test_a_tie_is_a_half_win_each_way_that_pulls_the_two_scores_together():
    scores = torch.tensor([2.0, 1.0, 0.0])
    # Pairs (0,2), (1,2) and the tie (0,1) with label 1/2: (-log s(1) - log s(-1)) / 2.
    tie = (neg_log_sigmoid(1) + neg_log_sigmoid(-1)) / 2
    expected = (neg_log_sigmoid(2) + neg_log_sigmoid(1) + tie) / 3
    assert kwise_ranking_loss(scores, [[0, 1], [2]]).item() == pytest.approx(expected, rel=1e-6)
    # Weight 2 on the tie: (a + b + 2 tie) / 4.
    weighted = (neg_log_sigmoid(2) + neg_log_sigmoid(1) + 2 * tie) / 4
    loss = kwise_ranking_loss(scores, [[0, 1], [2]], tie_weight=2.0)
    assert loss.item() == pytest.approx(weighted, rel=1e-6)
    # Least when the tied scores are equal, whatever their level.
    assert tie_loss(torch.tensor(3.0), torch.tensor(3.0)).item() == pytest.approx(math.log(2))
    assert tie_loss(torch.tensor(3.0), torch.tensor(2.0)) > tie_loss(torch.tensor(0.0), 0.0)
    assert tied_pairs([[0, 1, 2], [3]]) == [(0, 1), (0, 2), (1, 2)]


def test_batched_loss_with_ties_matches_the_per_ranking_loss():
    from sampler.training.reward import RewardTask

    examples = [
        RankingExample(candidates=[[6], [4], [0]], pairs=[(0, 2, 1), (1, 2, 1)], ties=[(0, 1)]),
        RankingExample(candidates=[[4], [1]], pairs=[(0, 1, 1)]),
    ]
    batch = RankingCollator(pad_id=9)(examples)
    scores = torch.tensor([2.0, 1.0, -1.0, 1.0, -0.5])
    expected = (
        kwise_ranking_loss(scores[:3], [[0, 1], [2]]) + kwise_ranking_loss(scores[3:], [[0], [1]])
    ) / 2
    loss, _ = RewardTask(RewardConfig()).train_loss(_FixedScores(), batch)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_margin_grows_with_rank_distance():
    scores = torch.tensor([2.0, 1.0, 0.0])
    # margin 0.5 per rank: pairs need gaps of 0.5, 1.0 and 0.5.
    expected = (neg_log_sigmoid(1 - 0.5) + neg_log_sigmoid(2 - 1.0) + neg_log_sigmoid(1 - 0.5)) / 3
    loss = kwise_ranking_loss(scores, [[0], [1], [2]], margin_per_rank=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_a_wrong_order_costs_more_than_a_right_one():
    scores = torch.tensor([0.0, 3.0])
    assert kwise_ranking_loss(scores, [[0], [1]]) > kwise_ranking_loss(scores, [[1], [0]])


def test_batched_loss_weighs_each_ranking_once_whatever_its_k():
    first, second = torch.tensor([1.0, 0.5, -1.0, 0.0]), torch.tensor([0.3, -0.2])
    first_groups, second_groups = [[0], [1], [2], [3]], [[1], [0]]
    expected = (
        kwise_ranking_loss(first, first_groups) + kwise_ranking_loss(second, second_groups)
    ) / 2
    pairs = [(winner, loser, 0) for winner, loser, _ in implied_pairs(first_groups)]
    pairs += [(4 + winner, 4 + loser, 1) for winner, loser, _ in implied_pairs(second_groups)]
    winners, losers, elements = (torch.tensor(column) for column in zip(*pairs, strict=True))
    loss = grouped_ranking_loss(torch.cat([first, second]), winners, losers, elements, 2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_pairwise_correct_counts_an_exact_tie_as_half():
    scores = torch.tensor([1.0, 0.0, 1.0])
    correct = pairwise_correct(scores, torch.tensor([0, 1, 0]), torch.tensor([1, 0, 2]))
    assert correct.tolist() == [1.0, 0.0, 0.5]


def test_masked_mean_ignores_masked_values_and_survives_an_empty_mask():
    values = torch.tensor([[1.0, 2.0, 100.0], [4.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(values, mask).item() == pytest.approx(7 / 3)
    assert masked_mean(values, mask, dim=1).tolist() == [1.5, 4.0]
    assert masked_mean(values, torch.zeros_like(mask)).item() == 0.0


def test_token_cross_entropy_only_counts_labelled_tokens():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 10.0  # position 0 predicts token 2 with near certainty
    labels = torch.tensor([[-100, 2, -100]])  # only position 1's token is labelled
    assert token_cross_entropy(logits, labels).item() == pytest.approx(
        -torch.log_softmax(logits[0, 0], -1)[2].item()
    )


# ---- optional reward centring -----------------------------------------------------------------


def test_centering_penalty_of_pairs_is_trls_mean_of_squared_pair_sums():
    # Two pairs (TRL's data): chosen 2.0 / rejected -1.0 and chosen 0.5 / rejected 1.5.
    scores = torch.tensor([2.0, -1.0, 0.5, 1.5])
    winners, losers, elements = torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([0, 1])
    trl = torch.mean((scores[winners] + scores[losers]) ** 2)  # (1**2 + 2**2) / 2
    penalty = centering_penalty(scores, winners, losers, elements, 2)
    assert penalty.item() == pytest.approx(trl.item()) == pytest.approx(2.5)
    # A pair centred on zero costs nothing however wide its gap: the ranking is left alone.
    centred = torch.tensor([5.0, -5.0])
    zero = centering_penalty(centred, torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), 1)
    assert zero.item() == 0.0


def test_centering_penalty_weighs_each_ranking_once_like_the_ranking_loss():
    # Ranking 0: K=3 with scores 1, 0, -3 (pair sums 1, -2, -3); ranking 1: one pair summing 4.
    scores = torch.tensor([1.0, 0.0, -3.0, 3.0, 1.0])
    pairs = [(0, 1, 0), (0, 2, 0), (1, 2, 0), (3, 4, 1)]
    winners, losers, elements = (torch.tensor(column) for column in zip(*pairs, strict=True))
    expected = ((1 + 4 + 9) / 3 + 16) / 2
    assert centering_penalty(scores, winners, losers, elements, 2).item() == pytest.approx(expected)


class _FixedScores(torch.nn.Module):
    """Scores the batch's candidates by their first token id: the loss is then known exactly."""

    def forward(self, input_ids, attention_mask):
        return input_ids[:, 0].float() / 2 - 1


def _ranking_batch(weights=(1.0, 1.0)):
    # Token 6 -> score 2, 0 -> -1, 4 -> 1, 1 -> -0.5: rankings [6 > 0] and [4 > 1 > 0].
    examples = [
        RankingExample(candidates=[[6, 9], [0]], pairs=[(0, 1, 1)], weight=weights[0]),
        RankingExample(
            candidates=[[4], [1, 9, 9], [0]],
            pairs=[(0, 1, 1), (0, 2, 2), (1, 2, 1)],
            weight=weights[1],
        ),
    ]
    return RankingCollator(pad_id=9)(examples)


def test_reward_loss_adds_exactly_coefficient_times_the_centering_penalty_and_nothing_at_zero():
    from sampler.training.reward import RewardTask

    batch, module = _ranking_batch(), _FixedScores()
    scores = torch.tensor([2.0, -1.0, 1.0, -0.5, -1.0])
    assert module(batch["input_ids"], batch["attention_mask"]).tolist() == scores.tolist()
    ranking = (
        kwise_ranking_loss(scores[:2], [[0], [1]]) + kwise_ranking_loss(scores[2:], [[0], [1], [2]])
    ) / 2
    # Pair sums: 1 | 0.5, 0, -1.5  ->  (1 + (0.25 + 0 + 2.25) / 3) / 2.
    centring = (1 + (0.25 + 0 + 2.25) / 3) / 2

    plain, _ = RewardTask(RewardConfig(center_rewards_coefficient=0.0)).train_loss(module, batch)
    assert plain.item() == pytest.approx(ranking.item(), rel=1e-6)
    centred, _ = RewardTask(RewardConfig(center_rewards_coefficient=0.01)).train_loss(module, batch)
    assert centred.item() == pytest.approx(ranking.item() + 0.01 * centring, rel=1e-6)


def test_weighted_by_trust_the_centering_penalty_weighs_each_ranking_by_its_trust_too():
    """The step's loss is the trust-weighted mean of each ranking's loss, centring included:
    a ranking from a ranker trusted 0.25 pulls scores toward zero a quarter as much as one
    trusted 1, as it counts a quarter as much in the ranking loss (and the step's share of
    the accumulated gradient is its summed trust)."""
    from sampler.training.reward import RewardTask

    batch, module = _ranking_batch(weights=(1.0, 0.25)), _FixedScores()
    scores = torch.tensor([2.0, -1.0, 1.0, -0.5, -1.0])
    losses = [
        kwise_ranking_loss(scores[:2], [[0], [1]]),
        kwise_ranking_loss(scores[2:], [[0], [1], [2]]),
    ]
    centrings = [1.0, (0.25 + 0 + 2.25) / 3]
    expected = (
        sum(
            weight * (loss.item() + 0.01 * centring)
            for weight, loss, centring in zip((1.0, 0.25), losses, centrings, strict=True)
        )
        / 1.25
    )
    config = RewardConfig(center_rewards_coefficient=0.01, weight_by_trust=True)
    loss, _ = RewardTask(config).train_loss(module, batch)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_a_trl_pairs_files_margin_is_a_loss_margin_and_schema_1s_a_rank_distance(micro_model_dir):
    """TRL's RewardTrainer subtracts a pair's ``margin`` from its score gap; a pairs export of
    schema 1 used the name for the rank distance. Read as a rank distance, a TRL file's margin
    was multiplied by --margin-per-rank (0 by default) and lost."""
    from sampler.training.data import ranking_example
    from sampler.training.model import load_tokenizer
    from sampler.training.reward import RewardTask

    tokenizer = load_tokenizer(micro_model_dir)
    trl = {"prompt": "hi", "chosen": "hello there", "rejected": "go away", "margin": 2.0}
    exported = {**trl, "schema_version": 1}
    trl_example = ranking_example(tokenizer, trl, max_length=32)
    exported_example = ranking_example(tokenizer, exported, max_length=32)
    assert (trl_example.margin, trl_example.pairs) == (2.0, [(0, 1, 1)])
    assert (exported_example.margin, exported_example.pairs) == (0.0, [(0, 1, 2.0)])

    # The loss: -log sigmoid(r_w - r_l - margin), as TRL computes it, with --margin-per-rank on
    # top per rank of distance.
    batch = RankingCollator(pad_id=9)(
        [RankingExample(candidates=[[6], [0]], pairs=[(0, 1, 1)], margin=2.0)]
    )
    module = _FixedScores()  # scores 2 and -1: a gap of 3
    for per_rank, expected_margin in ((0.0, 2.0), (0.5, 2.5)):
        config = RewardConfig(margin_per_rank=per_rank, center_rewards_coefficient=0.0)
        loss, _ = RewardTask(config).train_loss(module, batch)
        expected = torch.nn.functional.softplus(torch.tensor(-(3.0 - expected_margin)))
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)

    with pytest.raises(DataError, match="finite"):
        ranking_example(tokenizer, {**trl, "margin": float("inf")}, max_length=32)
