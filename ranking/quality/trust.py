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

No Django. EM runs on numpy arrays of the judgements (one entry per trainer and pair), so an
export or the quality page can estimate trust over every ranking of a deployment in memory:
the work per EM step is a few vectorised passes over those arrays.
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

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


class Votes:
    """Judgements as compact arrays (task, first, second, trainer), filled from ``Judgement``
    objects or straight from rankings (``add_ranking``, no object per judgement); ``arrays``
    turns them into each judgement's pair index, trainer index and whether it puts the pair's
    lower id first."""

    def __init__(self) -> None:
        self.trainers: dict[int, int] = {}
        self._task = array("q")
        self._first = array("q")
        self._second = array("q")
        self._trainer_index = array("q")
        self._keys: np.ndarray | None = None

    def add(self, task: int, trainer: int, first: int, second: int) -> None:
        self._task.append(task)
        self._first.append(first)
        self._second.append(second)
        self._trainer_index.append(self.trainers.setdefault(trainer, len(self.trainers)))

    def add_ranking(self, task: int, trainer: int, ordering: Ordering) -> None:
        # ``add`` inlined: this runs once per implied pair of every ranking an export reads.
        firsts, seconds = self._first, self._second
        count = 0
        for index, better in enumerate(ordering):
            for worse in ordering[index + 1 :]:
                for winner in better:
                    for loser in worse:
                        firsts.append(winner)
                        seconds.append(loser)
                        count += 1
        self._task.extend([task] * count)
        self._trainer_index.extend([self.trainers.setdefault(trainer, len(self.trainers))] * count)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pair index, trainer index, says low first) per judgement; ``keys`` afterwards holds
        each pair's (task, low id, high id)."""
        task = np.frombuffer(self._task, dtype=np.int64)
        first = np.frombuffer(self._first, dtype=np.int64)
        second = np.frombuffer(self._second, dtype=np.int64)
        low, high = np.minimum(first, second), np.maximum(first, second)
        # Number the distinct (task, low, high) in sorted order: sort once, mark where a key
        # changes (lighter on memory than np.unique over rows).
        order = np.lexsort((high, low, task))
        sorted_task, sorted_low, sorted_high = task[order], low[order], high[order]
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = (
            (sorted_task[1:] != sorted_task[:-1])
            | (sorted_low[1:] != sorted_low[:-1])
            | (sorted_high[1:] != sorted_high[:-1])
        )
        pair = np.empty(len(order), dtype=np.int64)
        pair[order] = np.cumsum(starts) - 1
        self._keys = np.stack(
            [sorted_task[starts], sorted_low[starts], sorted_high[starts]], axis=1
        )
        trainer = np.frombuffer(self._trainer_index, dtype=np.int64)
        return pair, trainer, first < second

    def pair_indexes(self, keys: Iterable[tuple[int, int, int]]) -> dict[tuple[int, int, int], int]:
        """Where each of ``keys`` (task, low id, high id) stands among the pairs (after
        ``arrays``); keys no judgement made are left out."""
        wanted = set(keys)
        if not wanted or self._keys is None or not len(self._keys):
            return {}
        tasks = np.fromiter({task for task, _, _ in wanted}, dtype=np.int64)
        found = {}
        for index in np.flatnonzero(np.isin(self._keys[:, 0], tasks)):
            key = tuple(int(v) for v in self._keys[index])
            if key in wanted:
                found[key] = int(index)
        return found


def trust_estimate(
    judgements: Iterable[Judgement] | Votes,
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
    if isinstance(judgements, Votes):
        votes = judgements
    else:
        votes = Votes()
        for judgement in judgements:
            votes.add(judgement.task, judgement.trainer, judgement.first, judgement.second)
    if not votes.trainers:
        return {}
    pair, trainer, says_low_first = votes.arrays()
    if not len(pair):
        # Trainers whose rankings order nothing ("all equally good"): the prior's trust.
        prior = prior_right / (prior_right + prior_wrong)
        return {trainer_id: Trust(prior, 0, 0) for trainer_id in votes.trainers}
    pairs, trainers = int(pair.max()) + 1, len(votes.trainers)
    # Gold pairs: their posterior is fixed at the known order.
    known = np.zeros(pairs, dtype=bool)
    known_low_first = np.zeros(pairs)
    for key, index in votes.pair_indexes(gold).items():
        known[index] = True
        known_low_first[index] = 1.0 if gold[key] else 0.0
    trust = np.full(trainers, initial)
    for _ in range(max(1, iterations)):
        # E: the posterior that low is before high, per pair, from each vote's log-likelihood.
        p = np.clip(trust, *TRUST_BOUNDS)[trainer]
        log_right, log_wrong = np.log(p), np.log1p(-p)
        log_low = np.bincount(
            pair, weights=np.where(says_low_first, log_right, log_wrong), minlength=pairs
        )
        log_high = np.bincount(
            pair, weights=np.where(says_low_first, log_wrong, log_right), minlength=pairs
        )
        posterior = 1.0 / (1.0 + np.exp(np.clip(log_high - log_low, -700, 700)))
        posterior = np.where(known, known_low_first, posterior)
        # M: the expected share of each trainer's judgements that are right.
        right = np.where(says_low_first, posterior[pair], 1.0 - posterior[pair])
        updated = (np.bincount(trainer, weights=right, minlength=trainers) + prior_right) / (
            np.bincount(trainer, minlength=trainers) + prior_right + prior_wrong
        )
        moved = float(np.max(np.abs(updated - trust)))
        trust = updated
        if moved < 1e-6:
            break
    counts = np.bincount(trainer, minlength=trainers)
    gold_counts = np.bincount(trainer, weights=known[pair], minlength=trainers)
    return {
        trainer_id: Trust(float(trust[index]), int(counts[index]), int(gold_counts[index]))
        for trainer_id, index in votes.trainers.items()
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
