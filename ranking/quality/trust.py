"""Per-trainer trust: a one-coin Dawid-Skene model over the pairwise judgements rankings imply.

Each judgement is a trainer's order of two replies of one task. The model says: every pair has
one true order, and trainer t gets any pair right with probability ``p_t`` (their trust). EM
alternates (E) the posterior that a pair's true order is "a before b", from every trainer who
ordered it, weighted by their current ``p``, and (M) each ``p_t`` as the expected share of
their judgements that are right, smoothed by a Beta(prior_right, prior_wrong) prior. A gold
pair's true order is known: its posterior is fixed at 1, so gold accuracy enters the estimate
directly, and agreement with others enters through the posteriors of the other pairs.

The consensus ranking of a task is a trust-weighted Borda count: each ranking gives every reply
the number of replies it put below it, times the ranker's log-odds of trust (zero at or below
0.5, so a trainer no better than chance has no say); replies with equal totals are tied.

Pure Python: no Django, no numpy.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Ordering = Sequence[Sequence[int]]

# Where EM starts: better than chance, as a trainer who passed the guidelines should be.
INITIAL_TRUST = 0.7
# Beta prior on each trainer's trust (one right and one wrong pseudo-judgement: Laplace).
PRIOR_RIGHT = 1.0
PRIOR_WRONG = 1.0
# Keeps the log-odds finite.
TRUST_BOUNDS = (1e-3, 1 - 1e-3)


@dataclass(frozen=True)
class Judgement:
    """Trainer ``trainer`` put ``first`` before ``second`` in task ``task``."""

    task: int
    trainer: int
    first: int
    second: int


@dataclass(frozen=True)
class Trust:
    trust: float
    judgements: int
    gold_judgements: int


def judgements_of(task: int, trainer: int, ordering: Ordering) -> list[Judgement]:
    """The strict pairs one ranking implies (ties give none)."""
    return [
        Judgement(task, trainer, winner, loser)
        for index, better in enumerate(ordering)
        for worse in ordering[index + 1 :]
        for winner in better
        for loser in worse
    ]


def _key(judgement: Judgement) -> tuple[tuple[int, int, int], bool]:
    """(task, low id, high id) and whether the judgement says low before high."""
    low, high = sorted((judgement.first, judgement.second))
    return (judgement.task, low, high), judgement.first == low


def trust_estimate(
    judgements: Iterable[Judgement],
    *,
    gold: dict[tuple[int, int, int], bool] | None = None,
    iterations: int = 50,
    initial: float = INITIAL_TRUST,
    prior_right: float = PRIOR_RIGHT,
    prior_wrong: float = PRIOR_WRONG,
) -> dict[int, Trust]:
    """Trainer -> trust after ``iterations`` EM steps (it stops early once nothing moves).

    ``gold``: (task, low id, high id) -> True when low is truly before high, for the pairs
    whose order is known.
    """
    gold = gold or {}
    by_pair: dict[tuple[int, int, int], list[tuple[int, bool]]] = defaultdict(list)
    for judgement in judgements:
        key, says_low_first = _key(judgement)
        by_pair[key].append((judgement.trainer, says_low_first))
    trainers = {trainer for votes in by_pair.values() for trainer, _ in votes}
    trust = dict.fromkeys(trainers, initial)
    for _ in range(max(1, iterations)):
        # E: the posterior that low is before high, per pair.
        posterior = {}
        for key, votes in by_pair.items():
            if key in gold:
                posterior[key] = 1.0 if gold[key] else 0.0
                continue
            log_low = log_high = math.log(0.5)
            for trainer, says_low_first in votes:
                p = min(max(trust[trainer], TRUST_BOUNDS[0]), TRUST_BOUNDS[1])
                log_low += math.log(p if says_low_first else 1 - p)
                log_high += math.log(1 - p if says_low_first else p)
            top = max(log_low, log_high)
            low, high = math.exp(log_low - top), math.exp(log_high - top)
            posterior[key] = low / (low + high)
        # M: the expected share of each trainer's judgements that are right.
        right: dict[int, float] = defaultdict(float)
        count: dict[int, int] = defaultdict(int)
        for key, votes in by_pair.items():
            for trainer, says_low_first in votes:
                right[trainer] += posterior[key] if says_low_first else 1 - posterior[key]
                count[trainer] += 1
        updated = {
            trainer: (right[trainer] + prior_right) / (count[trainer] + prior_right + prior_wrong)
            for trainer in trainers
        }
        moved = max((abs(updated[t] - trust[t]) for t in trainers), default=0.0)
        trust = updated
        if moved < 1e-6:
            break
    gold_counts: dict[int, int] = defaultdict(int)
    counts: dict[int, int] = defaultdict(int)
    for key, votes in by_pair.items():
        for trainer, _ in votes:
            counts[trainer] += 1
            gold_counts[trainer] += key in gold
    return {
        trainer: Trust(trust[trainer], counts[trainer], gold_counts[trainer])
        for trainer in trainers
    }


def trust_log_odds(trust: float) -> float:
    """A ranking's vote weight: the log-odds of its ranker's trust, none at or below chance."""
    p = min(max(trust, TRUST_BOUNDS[0]), TRUST_BOUNDS[1])
    return max(0.0, math.log(p / (1 - p)))


def consensus_ranking(rankings: Iterable[tuple[Ordering, float]]) -> list[list[int]]:
    """Trust-weighted Borda count of (ordering, trust) pairs, as tie groups, best first."""
    scores: dict[int, float] = defaultdict(float)
    for ordering, trust in rankings:
        weight = trust_log_odds(trust)
        below = sum(len(group) for group in ordering)
        for group in ordering:
            below -= len(group)
            for candidate in group:
                scores[candidate] += weight * below
    groups: dict[float, list[int]] = defaultdict(list)
    for candidate, score in scores.items():
        groups[round(score, 9)].append(candidate)
    return [sorted(groups[score]) for score in sorted(groups, reverse=True)]


def krippendorff_alpha_pairwise(units: Iterable[Sequence[Ordering]]) -> float | None:
    """Krippendorff's alpha over pairwise judgements: each (task, pair of replies) is a unit,
    each ranker's order of the pair a nominal value (first before second, or second before
    first; ties are a third value). alpha = 1 - D_o / D_e; None when undefined."""
    # Coincidence counts of values within units with at least two judgements.
    coincidences: dict[tuple[int, int], float] = defaultdict(float)
    for orderings in units:
        values_by_pair: dict[tuple[int, int], list[int]] = defaultdict(list)
        for ordering in orderings:
            rank = {c: r for r, group in enumerate(ordering) for c in group}
            for low in rank:
                for high in rank:
                    if low < high:
                        difference = rank[low] - rank[high]
                        value = 0 if difference < 0 else (1 if difference > 0 else 2)
                        values_by_pair[(low, high)].append(value)
        for values in values_by_pair.values():
            m = len(values)
            if m < 2:
                continue
            for i, first in enumerate(values):
                for j, second in enumerate(values):
                    if i != j:
                        coincidences[(first, second)] += 1 / (m - 1)
    total = sum(coincidences.values())
    if total <= 1:
        return None
    marginals: dict[int, float] = defaultdict(float)
    for (first, _), weight in coincidences.items():
        marginals[first] += weight
    observed = sum(w for (a, b), w in coincidences.items() if a != b) / total
    expected = sum(marginals[a] * marginals[b] for a in marginals for b in marginals if a != b) / (
        total * (total - 1)
    )
    if expected == 0:
        return None
    return 1 - observed / expected
