"""DPO, IPO, cDPO, listwise Plackett-Luce (with ties) and KTO against values computed by hand."""

import math

import pytest
import torch

from sampler.training.losses import (
    dpo_pair_loss,
    kto_loss,
    kto_weights,
    listwise_dpo_loss,
    plackett_luce_nll,
)


def softplus(x: float) -> float:
    return math.log(1 + math.exp(x))


def test_dpo_sigmoid_loss_by_hand():
    # beta 0.5, log-ratios 1 and -1: beta * h = 1, loss = log(1 + e^-1) = 0.3133.
    loss = dpo_pair_loss(torch.tensor([1.0]), torch.tensor([-1.0]), beta=0.5)
    assert loss.item() == pytest.approx(softplus(-1.0)) == pytest.approx(0.3132617)


def test_label_smoothing_is_cdpo():
    # 0.9 * log(1 + e^-1) + 0.1 * log(1 + e^1)
    loss = dpo_pair_loss(torch.tensor([1.0]), torch.tensor([-1.0]), beta=0.5, label_smoothing=0.1)
    assert loss.item() == pytest.approx(0.9 * softplus(-1) + 0.1 * softplus(1))
    assert loss.item() == pytest.approx(0.4132617)


def test_ipo_is_the_squared_gap_to_one_over_two_beta():
    # h = 2, 1 / (2 * 0.5) = 1: (2 - 1)^2 = 1; at h = 1 the loss is 0.
    ipo = dpo_pair_loss(
        torch.tensor([1.0, 0.5]), torch.tensor([-1.0, -0.5]), beta=0.5, loss_type="ipo"
    )
    assert ipo.tolist() == pytest.approx([1.0, 0.0])


def test_plackett_luce_of_a_total_order_by_hand():
    scores = torch.tensor([2.0, 1.0, 0.0])
    first = -2 + math.log(math.e**2 + math.e + 1)
    second = -1 + math.log(math.e + 1)
    assert plackett_luce_nll(scores, [[0], [1], [2]]).item() == pytest.approx((first + second) / 2)


def test_plackett_luce_with_a_tied_group_is_order_free_inside_it():
    scores = torch.tensor([2.0, 1.0, 0.0])
    # 0 and 1 tied above 2: each competes with {0, 1, 2}; the last group adds nothing.
    normaliser = math.log(math.e**2 + math.e + 1)
    expected = ((normaliser - 2) + (normaliser - 1)) / 2
    assert plackett_luce_nll(scores, [[0, 1], [2]]).item() == pytest.approx(expected)
    assert plackett_luce_nll(scores, [[1, 0], [2]]).item() == pytest.approx(expected)
    # A group tied at the bottom: 0 competes with everything, 1 and 2 rank nothing below them.
    bottom = (normaliser - 2) / 1
    assert plackett_luce_nll(scores, [[0], [1, 2]]).item() == pytest.approx(bottom)
    # Everything tied: no order, no loss.
    assert plackett_luce_nll(scores, [[0, 1, 2]]).item() == 0.0


def test_listwise_dpo_of_two_candidates_is_pairwise_dpo_with_and_without_smoothing():
    ratios = torch.tensor([0.7, -0.4])
    for smoothing in (0.0, 0.2):
        listwise = listwise_dpo_loss(ratios, [[0], [1]], beta=0.3, label_smoothing=smoothing)
        pairwise = dpo_pair_loss(ratios[:1], ratios[1:], beta=0.3, label_smoothing=smoothing)
        assert listwise.item() == pytest.approx(pairwise.item())


def test_listwise_dpo_prefers_the_ranked_order():
    ratios = torch.tensor([1.0, 0.0, -1.0], requires_grad=True)
    right = listwise_dpo_loss(ratios, [[0], [1], [2]], beta=1.0)
    wrong = listwise_dpo_loss(ratios, [[2], [1], [0]], beta=1.0)
    assert right < wrong
    right.backward()
    # The best candidate's log-ratio is pushed up, the worst one's down.
    assert ratios.grad[0] < 0 < ratios.grad[2]


def test_kto_loss_by_hand():
    # r = 1 for both, z0 = 0.5, beta 2: desirable 1 - s(1) = 0.2689 (x lambda_D 2),
    # undesirable 1 - s(-1) = 0.7311.
    loss = kto_loss(
        torch.tensor([1.0, 1.0]),
        torch.tensor([True, False]),
        0.5,
        beta=2.0,
        desirable_weight=2.0,
        undesirable_weight=1.0,
    )
    sigmoid = 1 / (1 + math.exp(-1))
    assert loss.tolist() == pytest.approx([2 * (1 - sigmoid), sigmoid])


def test_kto_reference_point_gets_no_gradient():
    reference = torch.tensor(0.3, requires_grad=True)
    ratios = torch.tensor([1.0], requires_grad=True)
    kto_loss(ratios, torch.tensor([True]), reference, beta=1.0).sum().backward()
    assert reference.grad is None and ratios.grad is not None


def test_kto_weights_balance_the_kinds():
    # 10 desirable, 30 undesirable: lambda_D * 10 / (1 * 30) = 1.
    assert kto_weights(10, 30) == (3.0, 1.0)
    assert kto_weights(10, 30, ratio=4 / 3, undesirable_weight=0.5) == pytest.approx((2.0, 0.5))
    assert kto_weights(0, 5) == (1.0, 1.0)
