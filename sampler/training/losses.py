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


def tied_pairs(ordering_groups: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Every pair of candidates that share a group (a tie): ``[[0, 1], [2]]`` gives (0, 1)."""
    return [
        (group[first], group[second])
        for group in ordering_groups
        for first in range(len(group))
        for second in range(first + 1, len(group))
    ]


def pairwise_logistic_loss(
    winner_scores: torch.Tensor, loser_scores: torch.Tensor, margins: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """-log sigmoid(r_w - r_l - margin), per pair (Bradley-Terry; TRL's margin convention)."""
    return -F.logsigmoid(winner_scores - loser_scores - margins)


def tie_loss(first_scores: torch.Tensor, second_scores: torch.Tensor) -> torch.Tensor:
    """Per tied pair: Bradley-Terry with the label 1/2 (each side wins half the time),
    -(log sigmoid(d) + log sigmoid(-d)) / 2 with d = r_1 - r_2. Symmetric, least at d = 0
    (log 2): a tie pulls the two scores together instead of saying nothing."""
    difference = first_scores - second_scores
    return -0.5 * (F.logsigmoid(difference) + F.logsigmoid(-difference))


def kwise_ranking_loss(
    scores: torch.Tensor,
    ordering_groups: Sequence[Sequence[int]],
    *,
    margin_per_rank: float = 0.0,
    tie_weight: float = 1.0,
) -> torch.Tensor:
    """InstructGPT's loss for one ranking, with ties: the weighted mean over its implied pairs
    (1/C(K,2) scaling when nothing is tied) and its tied pairs (weight ``tie_weight`` each).

    ``scores``: (K,), one per candidate; ``ordering_groups``: indices into ``scores``, best
    first, ties grouped. A ranking with no pair gives 0.
    """
    pairs = implied_pairs(ordering_groups)
    ties = tied_pairs(ordering_groups) if tie_weight else []
    terms, weights = [], []
    if pairs:
        winners, losers, distances = (
            torch.tensor(column, device=scores.device) for column in zip(*pairs, strict=True)
        )
        margins = margin_per_rank * distances.to(scores.dtype)
        terms.append(pairwise_logistic_loss(scores[winners], scores[losers], margins))
        weights.append(torch.ones(len(pairs), device=scores.device))
    if ties:
        first, second = (
            torch.tensor(column, device=scores.device) for column in zip(*ties, strict=True)
        )
        terms.append(tie_loss(scores[first], scores[second]))
        weights.append(torch.full((len(ties),), float(tie_weight), device=scores.device))
    if not terms:
        return scores.sum() * 0.0
    values, weight = torch.cat(terms), torch.cat(weights)
    return (values * weight).sum() / weight.sum()


def grouped_ranking_loss(
    scores: torch.Tensor,
    winners: torch.Tensor,
    losers: torch.Tensor,
    elements: torch.Tensor,
    num_elements: int,
    margins: torch.Tensor | float = 0.0,
    *,
    ties: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    tie_weight: float = 1.0,
    element_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The batched K-wise loss: weighted mean over each ranking's pairs, then mean over rankings
    (weighted by ``element_weights`` (num_elements,), e.g. each ranker's trust, when given).

    ``scores``: (N,) for all candidates of the batch; ``winners``/``losers``/``elements``: (P,)
    per pair, indices into ``scores`` and the ranking (0..num_elements-1) each pair belongs to;
    ``ties``: (first, second, elements) of the tied pairs, each weighing ``tie_weight``.
    Equal to averaging ``kwise_ranking_loss`` over the batch's rankings, so a ranking weighs the
    same whatever its K (InstructGPT: all C(K,2) pairs as one batch element).
    """
    per_pair = pairwise_logistic_loss(scores[winners], scores[losers], margins)
    weights = torch.ones_like(per_pair)
    if ties is not None and tie_weight and ties[0].numel():
        first, second, tie_elements = ties
        per_pair = torch.cat([per_pair, tie_loss(scores[first], scores[second])])
        weights = torch.cat([weights, torch.full_like(first, tie_weight, dtype=per_pair.dtype)])
        elements = torch.cat([elements, tie_elements])
    return mean_per_element(
        per_pair, elements, num_elements, weights=weights, element_weights=element_weights
    )


def mean_per_element(
    per_pair: torch.Tensor,
    elements: torch.Tensor,
    num_elements: int,
    *,
    weights: torch.Tensor | None = None,
    element_weights: torch.Tensor | None = None,
):
    """(Weighted) mean of (P,) per-pair values over each ranking's pairs, then over the rankings
    that have pairs: every ranking weighs the same whatever its K (or ``element_weights``)."""
    weights = torch.ones_like(per_pair) if weights is None else weights.to(per_pair.dtype)
    sums = per_pair.new_zeros(num_elements).index_add(0, elements, per_pair * weights)
    counts = per_pair.new_zeros(num_elements).index_add(0, elements, weights)
    has_pairs = counts > 0
    per_element = sums[has_pairs] / counts[has_pairs]
    if element_weights is None:
        return per_element.mean()
    chosen = element_weights.to(per_element.dtype)[has_pairs]
    return (per_element * chosen).sum() / chosen.sum().clamp_min(1e-12)


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
    *,
    element_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """TRL's ``center_rewards_coefficient`` term, K-wise: (r_w + r_l)**2 per implied pair,
    averaged like the ranking loss (by ``element_weights`` too, when given). With one pair per
    ranking it is TRL's ``mean((rewards_chosen + rewards_rejected) ** 2)``.

    It pulls each pair's mean score to zero and leaves the gap alone (scores (d, -d) cost
    nothing); ``mean(score**2)`` would also shrink the gaps the ranking loss opens.
    """
    return mean_per_element(
        (scores[winners] + scores[losers]) ** 2,
        elements,
        num_elements,
        element_weights=element_weights,
    )


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


def token_cross_entropy_rows(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, 2): each row's summed loss and its labelled tokens, for evaluation means that are
    exact across batches and processes (a row is a unit ``gather_for_metrics`` can count)."""
    targets = labels[:, 1:]
    per_token = F.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )
    counted = (targets != IGNORE_INDEX).sum(-1)
    return torch.stack([per_token.sum(-1), counted.to(per_token.dtype)], dim=1)


# ---- preference optimisation (DPO, IPO, Plackett-Luce, KTO) ----------------------------------


def dpo_pair_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    *,
    beta: float,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
) -> torch.Tensor:
    """Per pair (P,), from log pi/pi_ref of the chosen and the rejected reply (summed over tokens).

    ``sigmoid`` (DPO, Rafailov et al. 2023): -log sigmoid(beta * h) with h the difference of
    the log-ratios; ``label_smoothing`` e (cDPO): the label is wrong with probability e, so
    -(1 - e) log sigmoid(beta h) - e log sigmoid(-beta h). ``ipo`` (Azar et al. 2023):
    (h - 1 / (2 beta))^2, a squared loss that stops pushing once the gap reaches 1 / (2 beta).
    """
    difference = chosen_logratios - rejected_logratios
    if loss_type == "sigmoid":
        return -(1 - label_smoothing) * F.logsigmoid(beta * difference) - (
            label_smoothing * F.logsigmoid(-beta * difference)
        )
    if loss_type == "ipo":
        return (difference - 1 / (2 * beta)) ** 2
    raise ValueError(f"Unknown DPO loss {loss_type!r}.")


def plackett_luce_nll(
    scores: torch.Tensor, ordering_groups: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Negative log-likelihood of a best-first ordering of tie groups under Plackett-Luce, with
    ties in Breslow's form, averaged over its terms.

    ``scores``: (K,); ``ordering_groups``: indices into ``scores``. Each member j of a group
    competes with everything not above its group (the group itself included):
    -s_j + logsumexp(s of the group and all worse groups). A tie thus costs the same whichever
    member comes first (an unordered group), and without ties this is the plain PL likelihood,
    term by term (the last candidate's term is 0 and is skipped, as is the last group: nothing
    is ranked below it). For K = 2 it is -log sigmoid(s_w - s_l), DPO's pairwise term.
    """
    terms = []
    for rank, group in enumerate(ordering_groups[:-1]):
        remaining = [index for later in ordering_groups[rank:] for index in later]
        normaliser = torch.logsumexp(scores[remaining], dim=0)
        for member in group:
            terms.append(normaliser - scores[member])
    if not terms:
        return scores.sum() * 0.0
    return torch.stack(terms).mean()


def listwise_dpo_loss(
    logratios: torch.Tensor,
    ordering_groups: Sequence[Sequence[int]],
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """DPO over a whole K-wise ranking (the Plackett-Luce form of the DPO paper's appendix):
    ``plackett_luce_nll`` of the beta-scaled log-ratios (K,). ``label_smoothing`` e mixes in
    the reversed ordering with weight e, as cDPO does for a pair (equal to it when K = 2)."""
    scaled = beta * logratios
    loss = plackett_luce_nll(scaled, ordering_groups)
    if label_smoothing:
        reversed_loss = plackett_luce_nll(scaled, list(ordering_groups)[::-1])
        loss = (1 - label_smoothing) * loss + label_smoothing * reversed_loss
    return loss


def kto_loss(
    logratios: torch.Tensor,
    desirable: torch.Tensor,
    reference_point: torch.Tensor | float,
    *,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """KTO (Ethayarajh et al. 2024), per example (N,).

    ``logratios``: log pi/pi_ref of each completion; ``desirable``: (N,) bool; the reference
    point z0 is the (detached, non-negative) KL estimate. Desirable: lambda_D (1 - sigmoid(
    beta (r - z0))); undesirable: lambda_U (1 - sigmoid(beta (z0 - r))).
    """
    reference_point = torch.as_tensor(reference_point, dtype=logratios.dtype).detach()
    good = desirable_weight * (1 - torch.sigmoid(beta * (logratios - reference_point)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (reference_point - logratios)))
    return torch.where(desirable.bool(), good, bad)


def kto_weights(
    desirable: int, undesirable: int, *, ratio: float = 1.0, undesirable_weight: float = 1.0
) -> tuple[float, float]:
    """(lambda_D, lambda_U) with lambda_U = ``undesirable_weight`` and
    lambda_D * n_D / (lambda_U * n_U) = ``ratio`` (the KTO paper keeps that ratio in
    [1, 4/3]): the scarcer kind weighs more. Without one of the kinds, lambda_D = lambda_U."""
    if desirable == 0 or undesirable == 0:
        return undesirable_weight, undesirable_weight
    return ratio * undesirable_weight * undesirable / desirable, undesirable_weight


def sequence_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Summed log-probs (B,) of ``tokens`` (B, R) under ``logits`` (B, R, V) where ``mask``."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    picked = logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return (picked * mask.to(picked.dtype)).sum(-1)
