"""Pure tensor helpers: no model, no data loading, no state. Shapes are in the docstrings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def implied_pairs(ordering_groups: Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
    """Every (winner, loser, rank distance) a best-first ordering of tie groups implies.

    ``[[0], [1, 2], [3]]`` gives (0,1,1) (0,2,1) (0,3,2) (1,3,1) (2,3,1): members of one group
    are tied and give no pair. K candidates in K groups give all C(K,2) pairs.
    """
    pairs = []
    for rank, group in enumerate(ordering_groups):
        for worse_rank in range(rank + 1, len(ordering_groups)):
            for winner in group:
                for loser in ordering_groups[worse_rank]:
                    pairs.append((winner, loser, worse_rank - rank))
    return pairs


def pairwise_logistic_loss(
    winner_scores: torch.Tensor, loser_scores: torch.Tensor, margins: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """-log sigmoid(r_w - r_l - margin), per pair (Bradley-Terry; TRL's margin convention)."""
    return -F.logsigmoid(winner_scores - loser_scores - margins)


def kwise_ranking_loss(
    scores: torch.Tensor, ordering_groups: Sequence[Sequence[int]], *, margin_per_rank: float = 0.0
) -> torch.Tensor:
    """InstructGPT's loss for one ranking: the mean over its implied pairs (1/C(K,2) scaling).

    ``scores``: (K,), one per candidate; ``ordering_groups``: indices into ``scores``, best
    first, ties grouped. A ranking with no pair (all tied) gives 0.
    """
    pairs = implied_pairs(ordering_groups)
    if not pairs:
        return scores.sum() * 0.0
    winners, losers, distances = (
        torch.tensor(column, device=scores.device) for column in zip(*pairs, strict=True)
    )
    margins = margin_per_rank * distances.to(scores.dtype)
    return pairwise_logistic_loss(scores[winners], scores[losers], margins).mean()


def grouped_ranking_loss(
    scores: torch.Tensor,
    winners: torch.Tensor,
    losers: torch.Tensor,
    elements: torch.Tensor,
    num_elements: int,
    margins: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """The batched K-wise loss: mean over each ranking's pairs, then mean over rankings.

    ``scores``: (N,) for all candidates of the batch; ``winners``/``losers``/``elements``: (P,)
    per pair, indices into ``scores`` and the ranking (0..num_elements-1) each pair belongs to.
    Equal to averaging ``kwise_ranking_loss`` over the batch's rankings, so a ranking weighs the
    same whatever its K (InstructGPT: all C(K,2) pairs as one batch element).
    """
    per_pair = pairwise_logistic_loss(scores[winners], scores[losers], margins)
    return mean_per_element(per_pair, elements, num_elements)


def mean_per_element(per_pair: torch.Tensor, elements: torch.Tensor, num_elements: int):
    """Mean of (P,) per-pair values over each ranking's pairs, then over the rankings that have
    pairs: every ranking weighs the same whatever its K."""
    sums = per_pair.new_zeros(num_elements).index_add(0, elements, per_pair)
    counts = per_pair.new_zeros(num_elements).index_add(0, elements, torch.ones_like(per_pair))
    has_pairs = counts > 0
    return (sums[has_pairs] / counts[has_pairs]).mean()


def pairwise_correct(scores: torch.Tensor, winners: torch.Tensor, losers: torch.Tensor):
    """(P,) float: 1 where the winner scores strictly higher, 0.5 on an exact tie, else 0."""
    difference = scores[winners] - scores[losers]
    return (difference > 0).float() + 0.5 * (difference == 0).float()


def centering_penalty(
    scores: torch.Tensor,
    winners: torch.Tensor,
    losers: torch.Tensor,
    elements: torch.Tensor,
    num_elements: int,
) -> torch.Tensor:
    """TRL's ``center_rewards_coefficient`` term, K-wise: (r_w + r_l)**2 per implied pair,
    averaged like the ranking loss. With one pair per ranking it is TRL's
    ``mean((rewards_chosen + rewards_rejected) ** 2)``.

    It pulls each pair's mean score to zero and leaves the gap alone (scores (d, -d) cost
    nothing); ``mean(score**2)`` would also shrink the gaps the ranking loss opens.
    """
    return mean_per_element((scores[winners] + scores[losers]) ** 2, elements, num_elements)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is true (over ``dim``, or all); 0 where none are."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token loss averaged over labelled tokens.

    ``logits``: (B, T, V) for positions 0..T-1; ``labels``: (B, T) with ``IGNORE_INDEX`` where
    no loss is taken. Position t predicts label t+1, hence the shift.
    """
    predicted = logits[:, :-1].reshape(-1, logits.size(-1)).float()
    targets = labels[:, 1:].reshape(-1)
    return F.cross_entropy(predicted, targets, ignore_index=IGNORE_INDEX)


def token_cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(summed loss, labelled tokens): for evaluation means that are exact across batches."""
    predicted = logits[:, :-1].reshape(-1, logits.size(-1)).float()
    targets = labels[:, 1:].reshape(-1)
    total = F.cross_entropy(predicted, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return total, int((targets != IGNORE_INDEX).sum())
