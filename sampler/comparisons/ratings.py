"""Bradley-Terry ratings of model versions from side-by-side votes, with confidence intervals.

P(i beats j) = sigmoid(theta_i - theta_j). A tie counts as half a win each way. The fit
maximises the likelihood with a weak Gaussian prior on each theta (precision ``prior``), which
keeps every rating finite (a version that never lost) and anchors their mean at 0; Newton's
method converges in a few steps. The intervals are Wald intervals from the inverse Hessian
(information plus prior), taken with the ratings' mean held fixed: only differences between
versions are identified, so the common shift carries no uncertainty. Shown on the Elo scale:
1000 + 400 / ln 10 * theta, so 100 points is a 64 % expected win rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ELO_SCALE = 400 / math.log(10)
ELO_BASE = 1000.0
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Rating:
    key: object
    rating: float
    low: float
    high: float
    games: float
    wins: float

    @property
    def interval(self) -> float:
        return (self.high - self.low) / 2


def bradley_terry(
    outcomes: list[tuple[object, object, float]], *, prior: float = 0.1, iterations: int = 100
) -> list[Rating]:
    """Ratings from ``outcomes``: (i, j, score of i) with score 1 (i won), 0.5 (tie) or 0.

    Returns one ``Rating`` per player, best first, on the Elo scale with a 95 % interval.
    """
    players = sorted({p for i, j, _ in outcomes for p in (i, j)}, key=str)
    if not players:
        return []
    index = {player: n for n, player in enumerate(players)}
    size = len(players)
    wins = np.zeros((size, size))
    for i, j, score in outcomes:
        wins[index[i], index[j]] += score
        wins[index[j], index[i]] += 1 - score
    games = wins + wins.T
    theta = np.zeros(size)
    hessian = np.eye(size) * prior
    for _ in range(iterations):
        probability = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))
        gradient = -(wins - games * probability).sum(1) + prior * theta
        weight = games * probability * (1 - probability)
        hessian = -weight + np.diag(weight.sum(1) + prior)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    # Covariance with the mean fixed: the mean direction (all ones) gets curvature 1, then is
    # projected out (the information is a graph Laplacian, so ones is one of its eigenvectors).
    centre = np.eye(size) - np.ones((size, size)) / size
    covariance = centre @ np.linalg.inv(hessian + np.ones((size, size)) / size) @ centre
    errors = np.sqrt(np.clip(np.diag(covariance), 0, None))
    ratings = [
        Rating(
            key=player,
            rating=ELO_BASE + ELO_SCALE * theta[n],
            low=ELO_BASE + ELO_SCALE * (theta[n] - Z_95 * errors[n]),
            high=ELO_BASE + ELO_SCALE * (theta[n] + Z_95 * errors[n]),
            games=float(games[n].sum()),
            wins=float(wins[n].sum()),
        )
        for n, player in enumerate(players)
    ]
    return sorted(ratings, key=lambda rating: -rating.rating)
