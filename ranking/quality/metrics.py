"""Agreement between trainers' rankings. Pure Python: no Django, no database.

A ranking's ``ordering`` is a list of tie groups of candidate ids, best first:
``[[3], [1, 4], [2]]``. ``cannot_rank`` rankings have ``[]`` and are left out of agreement.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Ordering = Sequence[Sequence[int]]

# InstructGPT (Ouyang et al. 2022): training labelers agreed with each other on 72.6 % ± 1.5 %
# of comparisons. A reference point for the quality page, not a target.
INSTRUCTGPT_AGREEMENT = 0.726
INSTRUCTGPT_AGREEMENT_SPREAD = 0.015


def _ranks(ordering: Ordering) -> dict[int, int]:
    """Candidate id -> index of its tie group (0 is best)."""
    return {candidate: rank for rank, group in enumerate(ordering) for candidate in group}


def implied_pairs(ordering: Ordering) -> set[tuple[int, int]]:
    """(winner, loser) for every two candidates in different groups; ties give no pair."""
    return {
        (winner, loser)
        for index, better in enumerate(ordering)
        for worse in ordering[index + 1 :]
        for winner in better
        for loser in worse
    }


@dataclass(frozen=True)
class _PairCounts:
    """Over the candidate pairs both rankings hold: ordered alike, ordered oppositely, tied."""

    concordant: int
    discordant: int
    tied_a: int
    tied_b: int
    total: int

    @property
    def pairwise(self) -> float | None:
        compared = self.concordant + self.discordant
        return self.concordant / compared if compared else None

    @property
    def tau_b(self) -> float | None:
        denominator = math.sqrt((self.total - self.tied_a) * (self.total - self.tied_b))
        return (self.concordant - self.discordant) / denominator if denominator else None


def _pair_counts(ranks_a: Mapping[int, int], ranks_b: Mapping[int, int]) -> _PairCounts:
    common = sorted(ranks_a.keys() & ranks_b.keys())
    concordant = discordant = tied_a = tied_b = 0
    for first, second in itertools.combinations(common, 2):
        difference_a = ranks_a[first] - ranks_a[second]
        difference_b = ranks_b[first] - ranks_b[second]
        if difference_a == 0:
            tied_a += 1
        if difference_b == 0:
            tied_b += 1
        if difference_a and difference_b:
            if (difference_a > 0) == (difference_b > 0):
                concordant += 1
            else:
                discordant += 1
    total = len(common) * (len(common) - 1) // 2
    return _PairCounts(concordant, discordant, tied_a, tied_b, total)


def pairwise_agreement(a: Ordering, b: Ordering) -> float | None:
    """Share of the candidate pairs that both rankings order strictly on which they agree.

    None when no pair is ordered by both (disjoint candidates, or ties covering every pair).
    The pairs both order strictly are exactly the concordant plus the discordant ones.
    """
    return _pair_counts(_ranks(a), _ranks(b)).pairwise


def kendall_tau_b(a: Ordering, b: Ordering) -> float | None:
    """Kendall's tau-b of the two rank vectors over the candidates both rankings hold.

    tau_b = (concordant - discordant) / sqrt((n0 - ties_a) * (n0 - ties_b)), where n0 counts all
    pairs and ties_x the pairs tied in x. None when undefined (fewer than two common
    candidates, or one side ties them all).
    """
    return _pair_counts(_ranks(a), _ranks(b)).tau_b


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


# ---- aggregates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankingRecord:
    """What the aggregates need of one stored ranking."""

    task_id: int
    ranker_id: int
    ordering: Ordering
    # No ordering: the "all bad" and "cannot rank" verdicts (left out of agreement).
    cannot_rank: bool = False
    flagged: bool = False
    # ranked, all_equal, all_bad or cannot_rank (Ranking.Verdict).
    verdict: str = "ranked"
    duration_ms: int = 0
    # Submitted in the order shown (None: a verdict without an ordering, or an older row).
    order_unchanged: bool | None = None
    # A ranking of a gold copy: scored against the known order (gold accuracy), left out of
    # agreement between trainers (the task was made gold because its rankers agreed, and every
    # trainer is given it, so its pairs of rankings would outnumber those of the real tasks).
    gold: bool = False


@dataclass(frozen=True)
class Agreement:
    """Means over pairs of rankings; ``pairs`` counts the pairs with a defined agreement."""

    pairwise: float | None
    tau_b: float | None
    pairs: int


@dataclass(frozen=True)
class TrainerQuality:
    ranker_id: int
    rankings: int
    agreement: float | None  # with the other trainers' rankings of the same tasks
    tau_b: float | None
    compared_pairs: int
    median_seconds: float | None
    flag_rate: float
    # Shares of the trainer's rankings answered "cannot rank" and "all bad".
    cannot_rank_rate: float
    skips: int
    # Share of the trainer's rankings submitted in the order shown (of those with an ordering).
    unchanged_rate: float | None = None
    # Share of the trainer's rankings submitted faster than ``fast_ms``.
    fast_rate: float = 0.0
    all_bad_rate: float = 0.0
    # Why this trainer stands out (empty when nothing does).
    outlier_reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class QualitySummary:
    overall: Agreement
    tasks: dict[int, Agreement]
    trainers: list[TrainerQuality]


@dataclass
class _Pairs:
    pairwise: list[float]
    tau_b: list[float]

    def add(self, pairwise: float | None, tau_b: float | None) -> None:
        if pairwise is not None:
            self.pairwise.append(pairwise)
        if tau_b is not None:
            self.tau_b.append(tau_b)

    def agreement(self) -> Agreement:
        return Agreement(_mean(self.pairwise), _mean(self.tau_b), len(self.pairwise))


def _pairs() -> _Pairs:
    return _Pairs([], [])


def task_agreement(orderings: Sequence[Ordering]) -> Agreement:
    """Mean pairwise agreement and mean tau-b over all pairs of one task's rankings."""
    pairs = _pairs()
    for a, b in itertools.combinations([o for o in orderings if o], 2):
        pairs.add(pairwise_agreement(a, b), kendall_tau_b(a, b))
    return pairs.agreement()


def _outlier_reasons(
    *,
    count: int,
    unchanged_rate: float | None,
    unchanged_chance: float,
    fast_rate: float,
    share: float,
    minimum: int,
) -> tuple[str, ...]:
    if count < minimum:
        return ()
    reasons = []
    # ``share`` of what chance leaves: of the rankings a random order would not have kept as
    # shown (1 - 1/K!), at least that share kept it.
    if unchanged_rate is not None and unchanged_rate >= unchanged_chance + share * (
        1 - unchanged_chance
    ):
        reasons.append(f"submits the order shown {unchanged_rate:.0%} of the time")
    if fast_rate >= share:
        reasons.append(f"{fast_rate:.0%} of rankings very fast")
    return tuple(reasons)


def _share(records: list[RankingRecord], verdict: str) -> float:
    return sum(r.verdict == verdict for r in records) / len(records) if records else 0.0


def quality_summary(
    records: Iterable[RankingRecord],
    *,
    skips: Mapping[int, int] | None = None,
    fast_ms: int = 8_000,
    outlier_share: float = 0.3,
    outlier_min_rankings: int = 5,
) -> QualitySummary:
    """Agreement overall, per task and per trainer, plus each trainer's habits.

    Each pair of rankings of the same task (by different trainers, neither ``cannot_rank``) is
    compared once; the pair counts for the task, for the overall mean and for both trainers.
    Gold copies' rankings are no task's here (``tasks`` leaves them out) and compared with
    none; they count in their trainers' habits (times, flags, verdicts, the order kept).
    A trainer with at least ``outlier_min_rankings`` rankings is an outlier when at least
    ``outlier_share`` of them were submitted within ``fast_ms``, or when the order shown was
    kept in that share of the rankings chance would not have kept it in (chance keeps it in
    1/K! of them for K replies: 4 % for four, so the bar is 33 % at a share of 30 %; half for
    two, so the bar is 65 %).
    """
    skips = skips or {}
    by_task: dict[int, list[RankingRecord]] = defaultdict(list)
    by_ranker: dict[int, list[RankingRecord]] = defaultdict(list)
    for record in records:
        if not record.gold:
            by_task[record.task_id].append(record)
        by_ranker[record.ranker_id].append(record)

    overall, per_task = _pairs(), {}
    per_ranker: dict[int, _Pairs] = defaultdict(_pairs)
    for task_id, task_records in by_task.items():
        ranked = [(r, _ranks(r.ordering)) for r in task_records if not r.cannot_rank]
        task_pairs = _pairs()
        for (a, ranks_a), (b, ranks_b) in itertools.combinations(ranked, 2):
            if a.ranker_id == b.ranker_id:
                continue
            counts = _pair_counts(ranks_a, ranks_b)
            pairwise, tau_b = counts.pairwise, counts.tau_b
            for pairs in (task_pairs, overall, per_ranker[a.ranker_id], per_ranker[b.ranker_id]):
                pairs.add(pairwise, tau_b)
        per_task[task_id] = task_pairs.agreement()

    trainers = []
    for ranker_id in sorted(by_ranker.keys() | skips.keys()):
        own = by_ranker.get(ranker_id, [])
        agreement = per_ranker[ranker_id].agreement()
        count = len(own)
        ordered = [r for r in own if r.order_unchanged is not None]
        unchanged_rate = sum(r.order_unchanged for r in ordered) / len(ordered) if ordered else None
        # How often a random strict order of each one's K replies is the order shown: 1/K!.
        chance = (
            statistics.fmean(
                1 / math.factorial(sum(len(group) for group in r.ordering)) for r in ordered
            )
            if ordered
            else 0.0
        )
        fast_rate = sum(r.duration_ms < fast_ms for r in own) / count if count else 0.0
        trainers.append(
            TrainerQuality(
                ranker_id=ranker_id,
                rankings=count,
                agreement=agreement.pairwise,
                tau_b=agreement.tau_b,
                compared_pairs=agreement.pairs,
                median_seconds=(
                    statistics.median(r.duration_ms for r in own) / 1000 if own else None
                ),
                flag_rate=sum(r.flagged for r in own) / count if count else 0.0,
                cannot_rank_rate=_share(own, "cannot_rank"),
                all_bad_rate=_share(own, "all_bad"),
                skips=skips.get(ranker_id, 0),
                unchanged_rate=unchanged_rate,
                fast_rate=fast_rate,
                outlier_reasons=_outlier_reasons(
                    count=count,
                    unchanged_rate=unchanged_rate,
                    unchanged_chance=chance,
                    fast_rate=fast_rate,
                    share=outlier_share,
                    minimum=outlier_min_rankings,
                ),
            )
        )
    return QualitySummary(overall=overall.agreement(), tasks=per_task, trainers=trainers)
