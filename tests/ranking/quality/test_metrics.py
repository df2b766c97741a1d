import itertools
import math
import random

import pytest
import scipy.stats

from ranking.quality.metrics import (
    RankingRecord,
    implied_pairs,
    kendall_tau_b,
    pairwise_agreement,
    quality_summary,
    task_agreement,
)

STRICT = [[1], [2], [3], [4]]
REVERSED = [[4], [3], [2], [1]]


def test_implied_pairs_put_each_reply_above_every_later_group_and_skip_ties():
    assert implied_pairs([[3], [1, 4], [2]]) == {(3, 1), (3, 4), (3, 2), (1, 2), (4, 2)}
    assert implied_pairs([[1, 2, 3]]) == set()
    assert implied_pairs([]) == set()


def test_identical_rankings_agree_fully_with_tau_one():
    assert pairwise_agreement(STRICT, STRICT) == 1.0
    assert kendall_tau_b(STRICT, STRICT) == pytest.approx(1.0)


def test_reversed_rankings_agree_on_nothing_with_tau_minus_one():
    assert pairwise_agreement(STRICT, REVERSED) == 0.0
    assert kendall_tau_b(STRICT, REVERSED) == pytest.approx(-1.0)


def test_a_tie_on_one_side_leaves_that_pair_out_of_agreement_and_corrects_tau():
    tied = [[1], [2, 3], [4]]
    # Both order 5 pairs the same way; {2, 3} is tied on one side only.
    assert pairwise_agreement(tied, STRICT) == 1.0
    # tau-b = (5 - 0) / sqrt((6 - 1) * (6 - 0))
    assert kendall_tau_b(tied, STRICT) == pytest.approx(5 / math.sqrt(30))


def test_ties_on_both_sides_with_one_disagreement():
    a = [[1], [2, 3], [4]]
    b = [[2], [1], [3, 4]]
    # Ordered by both: {1,2} disagree, {1,3} {1,4} {2,4} agree; {2,3} and {3,4} are tied.
    assert pairwise_agreement(a, b) == 0.75
    # tau-b = (3 concordant - 1 discordant) / sqrt((6 - 1) * (6 - 1))
    assert kendall_tau_b(a, b) == pytest.approx(0.4)


def test_only_the_replies_both_rankings_hold_are_compared():
    a = [[1], [2], [3]]
    b = [[3], [2], [5]]
    assert pairwise_agreement(a, b) == 0.0  # the only common pair, {2, 3}, is reversed
    assert kendall_tau_b(a, b) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([[1], [2]], [[3], [4]]),  # disjoint replies
        ([[1], [2], [3]], [[1, 2, 3]]),  # one side ties everything
        ([[1], [2]], []),  # cannot rank
        ([[1], [2]], [[2], [7]]),  # a single common reply
    ],
)
def test_agreement_is_undefined_without_a_pair_both_order(a, b):
    assert pairwise_agreement(a, b) is None
    assert kendall_tau_b(a, b) is None


def test_tau_b_matches_scipy_on_random_rankings_with_ties():
    rng = random.Random(0)
    for _ in range(200):
        ids = list(range(1, rng.randint(3, 8)))
        a, b = _random_ordering(rng, ids), _random_ordering(rng, ids)
        expected = scipy.stats.kendalltau(_rank_vector(a, ids), _rank_vector(b, ids)).statistic
        tau = kendall_tau_b(a, b)
        if math.isnan(expected):
            assert tau is None
        else:
            assert tau == pytest.approx(expected)


def test_pairwise_agreement_is_the_share_of_shared_implied_pairs_on_random_rankings():
    rng = random.Random(1)
    for _ in range(300):
        a = _random_ordering(rng, rng.sample(range(1, 9), rng.randint(1, 8)))
        b = _random_ordering(rng, rng.sample(range(1, 9), rng.randint(1, 8)))
        pairs_a, pairs_b = implied_pairs(a), implied_pairs(b)
        agree = len(pairs_a & pairs_b)
        compared = agree + len({(loser, winner) for winner, loser in pairs_a} & pairs_b)
        expected = agree / compared if compared else None
        assert pairwise_agreement(a, b) == expected


def _random_ordering(rng: random.Random, ids: list[int]) -> list[list[int]]:
    shuffled = rng.sample(ids, len(ids))
    cuts = sorted(rng.sample(range(1, len(ids)), rng.randint(0, len(ids) - 1)))
    return [shuffled[i:j] for i, j in itertools.pairwise([0, *cuts, len(ids)])]


def _rank_vector(ordering: list[list[int]], ids: list[int]) -> list[int]:
    ranks = {candidate: rank for rank, group in enumerate(ordering) for candidate in group}
    return [ranks[candidate] for candidate in ids]


def test_task_agreement_averages_over_all_pairs_of_rankings():
    agreement = task_agreement([STRICT, STRICT, REVERSED, []])
    # Pairs: (S, S) = 1, (S, R) = 0, (S, R) = 0; the cannot-rank one is left out.
    assert agreement.pairs == 3
    assert agreement.pairwise == pytest.approx(1 / 3)
    assert agreement.tau_b == pytest.approx((1 - 1 - 1) / 3)


def test_quality_summary_per_trainer_compares_only_with_other_trainers():
    records = [
        RankingRecord(task_id=1, ranker_id=10, ordering=STRICT, duration_ms=10_000),
        RankingRecord(task_id=1, ranker_id=20, ordering=STRICT, duration_ms=20_000),
        RankingRecord(task_id=1, ranker_id=30, ordering=REVERSED, flagged=True, duration_ms=30_000),
        RankingRecord(
            task_id=2,
            ranker_id=30,
            ordering=[],
            cannot_rank=True,
            verdict="cannot_rank",
            duration_ms=5_000,
        ),
        RankingRecord(task_id=2, ranker_id=10, ordering=STRICT, duration_ms=30_000),
        # "All bad" has no order either, but it is not "cannot rank".
        RankingRecord(
            task_id=3, ranker_id=20, ordering=[], cannot_rank=True, verdict="all_bad", duration_ms=1
        ),
    ]
    summary = quality_summary(records, skips={40: 2, 10: 1})

    assert summary.overall.pairs == 3
    assert summary.overall.pairwise == pytest.approx(1 / 3)
    assert summary.tasks[1].pairwise == pytest.approx(1 / 3)
    assert summary.tasks[2].pairwise is None and summary.tasks[2].pairs == 0

    trainers = {row.ranker_id: row for row in summary.trainers}
    assert set(trainers) == {10, 20, 30, 40}
    assert trainers[10].agreement == pytest.approx(0.5)  # 1 with trainer 20, 0 with trainer 30
    assert trainers[10].compared_pairs == 2
    assert trainers[10].median_seconds == 20.0
    assert trainers[10].skips == 1
    assert trainers[30].agreement == 0.0
    assert trainers[30].flag_rate == 0.5
    assert trainers[30].cannot_rank_rate == 0.5 and trainers[30].all_bad_rate == 0.0
    assert trainers[20].all_bad_rate == 0.5 and trainers[20].cannot_rank_rate == 0.0
    assert trainers[30].median_seconds == 17.5
    assert trainers[40].rankings == 0 and trainers[40].agreement is None
    assert trainers[40].skips == 2


def test_trainers_who_keep_the_order_shown_or_submit_very_fast_are_flagged():
    def record(task_id, ranker_id, *, unchanged, duration_ms):
        return RankingRecord(
            task_id=task_id,
            ranker_id=ranker_id,
            ordering=[[1], [2], [3], [4]],
            duration_ms=duration_ms,
            order_unchanged=unchanged,
        )

    records = [
        # 40: keeps the shown order 3 times in 5 (chance: 1 in 24 for four replies).
        *(record(t, 40, unchanged=t < 3, duration_ms=30_000) for t in range(5)),
        # 41: careful, but 2 of 5 submitted within the fast threshold.
        *(record(t, 41, unchanged=False, duration_ms=2_000 if t < 2 else 40_000) for t in range(5)),
        # 42: both habits, but too few rankings to judge.
        record(0, 42, unchanged=True, duration_ms=1_000),
        # 43: careful (one "all bad" verdict has no order).
        *(record(t, 43, unchanged=False, duration_ms=40_000) for t in range(4)),
        RankingRecord(task_id=9, ranker_id=43, ordering=[], cannot_rank=True, duration_ms=9_000),
    ]

    trainers = {
        row.ranker_id: row
        for row in quality_summary(
            records, fast_ms=8_000, outlier_share=0.3, outlier_min_rankings=5
        ).trainers
    }

    assert trainers[40].unchanged_rate == 0.6 and trainers[40].fast_rate == 0.0
    assert trainers[40].outlier_reasons == ("submits the order shown 60% of the time",)
    assert trainers[41].fast_rate == 0.4
    assert trainers[41].outlier_reasons == ("40% of rankings very fast",)
    assert trainers[42].unchanged_rate == 1.0 and trainers[42].outlier_reasons == ()
    assert trainers[43].unchanged_rate == 0.0 and trainers[43].outlier_reasons == ()


def test_keeping_the_order_shown_is_judged_against_what_chance_keeps_for_that_many_replies():
    """Two replies are in the order shown half the time by chance: an honest trainer of pairs
    keeps it about half the time, and is no outlier for that; one who always keeps it is."""

    def records(ranker_id, kept, of, replies):
        ordering = [[index] for index in range(replies)]
        return [
            RankingRecord(
                task_id=t, ranker_id=ranker_id, ordering=ordering, order_unchanged=t < kept
            )
            for t in range(of)
        ]

    trainers = {
        row.ranker_id: row
        for row in quality_summary(
            [
                *records(1, 6, 10, replies=2),  # 60 %: chance is 50 %, the bar 65 %
                *records(2, 7, 10, replies=2),  # 70 %
                *records(3, 4, 10, replies=4),  # 40 %: chance is 1/24, the bar 33 %
                *records(4, 3, 10, replies=4),  # 30 %
            ],
            fast_ms=0,
            outlier_share=0.3,
            outlier_min_rankings=5,
        ).trainers
    }

    assert trainers[1].outlier_reasons == ()
    assert trainers[2].outlier_reasons == ("submits the order shown 70% of the time",)
    assert trainers[3].outlier_reasons == ("submits the order shown 40% of the time",)
    assert trainers[4].outlier_reasons == ()
