"""Where reward models disagree: the spread of an ensemble's pairwise preferences over a task's
replies, the selection rule (most uncertain plus a random exploration share), and an ensemble
of small reward heads on frozen features (what ``bench/bench_loop.py --active`` measures).

No Django; torch only inside the ensemble (the spread and the selection rule run in web
processes too, which never import torch).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def pairwise_spread(scores: Sequence[Sequence[float]]) -> float:
    """``scores[m][i]``: model m's reward for reply i of one task. The mean, over the task's
    reply pairs, of the standard deviation across models of P(i before j) = sigmoid(s_i - s_j):
    0 when the models agree on every pair, up to 0.5 when they split with certainty."""
    if len(scores) < 2:
        raise ValueError("The spread of an ensemble needs at least two models.")
    replies = len(scores[0])
    spreads = []
    for first, second in itertools.combinations(range(replies), 2):
        preferences = [1 / (1 + math.exp(row[second] - row[first])) for row in scores]
        mean = sum(preferences) / len(preferences)
        spreads.append(math.sqrt(sum((p - mean) ** 2 for p in preferences) / len(preferences)))
    return sum(spreads) / len(spreads) if spreads else 0.0


def select_uncertain(
    uncertainties: Sequence[float], count: int, *, exploration_share: float, rng: random.Random
) -> list[int]:
    """Indices of ``count`` tasks: the most uncertain ``count - round(count * share)``, and
    the rest drawn uniformly from the others (exploration keeps the reward models from only
    ever seeing what they already find hard)."""
    if not 0.0 <= exploration_share <= 1.0:
        raise ValueError("exploration_share is a share between 0 and 1.")
    count = min(count, len(uncertainties))
    explore = round(count * exploration_share)
    ranked = sorted(range(len(uncertainties)), key=lambda index: (-uncertainties[index], index))
    chosen = ranked[: count - explore]
    rest = ranked[count - explore :]
    return chosen + rng.sample(rest, explore)


def ranking_pairs(orderings: Sequence[Sequence[Sequence[int]]]) -> list[tuple[int, int]]:
    """(winner, loser) row indices over every ordering (tie groups of row indices, best first)."""
    return [
        (winner, loser)
        for ordering in orderings
        for index, better in enumerate(ordering)
        for worse in ordering[index + 1 :]
        for winner in better
        for loser in worse
    ]


class RewardHeadEnsemble:
    """``members`` linear reward heads on fixed features, each fitted with the Bradley-Terry
    loss on a bootstrap resample of the rankings from its own initialisation."""

    def __init__(
        self, *, members: int = 5, steps: int = 200, learning_rate: float = 0.05, l2: float = 1e-2
    ):
        self.members, self.steps, self.learning_rate, self.l2 = members, steps, learning_rate, l2
        self.heads: list = []

    def fit(
        self,
        features: torch.Tensor,
        orderings: Sequence[Sequence[Sequence[int]]],
        *,
        seed: int,
    ) -> RewardHeadEnsemble:
        """``features`` (N, D) of every reply; ``orderings``: one per ranking, as tie groups of
        row indices into ``features``."""
        # torch is heavy: imported where the ensemble is fitted, never by the selection rule.
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.heads = []
        for _ in range(self.members):
            picked = torch.randint(len(orderings), (len(orderings),), generator=generator)
            pairs = ranking_pairs([orderings[int(index)] for index in picked])
            weight = (torch.randn(features.shape[1], generator=generator) * 0.01).requires_grad_()
            optimizer = torch.optim.Adam([weight], lr=self.learning_rate)
            if pairs:
                winners = torch.tensor([w for w, _ in pairs])
                losers = torch.tensor([lo for _, lo in pairs])
                for _ in range(self.steps):
                    optimizer.zero_grad()
                    margin = features[winners] @ weight - features[losers] @ weight
                    loss = -torch.nn.functional.logsigmoid(margin).mean()
                    (loss + self.l2 * weight.square().sum()).backward()
                    optimizer.step()
            self.heads.append(weight.detach())
        return self

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """(members, N) rewards."""
        import torch  # heavy: see fit()

        return torch.stack([features @ head for head in self.heads])
