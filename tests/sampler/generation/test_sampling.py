import math

import pytest
import torch

from sampler.generation import sampling
from sampler.generation.sampling import filter_logits, penalize_repeats, sampling_distribution


def _dense(ids, probabilities, vocabulary):
    if ids is None:
        return probabilities / probabilities.sum(-1, keepdim=True)
    dense = torch.zeros(ids.shape[0], vocabulary).scatter(-1, ids, probabilities)
    return dense / dense.sum(-1, keepdim=True)


@pytest.mark.parametrize(
    ("top_k", "top_p"), [(0, 0.9), (0, 0.5), (0, 0.999), (20, 0.9), (7, 1.0), (0, 1.0), (300, 0.8)]
)
@pytest.mark.parametrize("sharpness", [0.3, 1.0, 4.0])  # flat rows need the full-sort fallback
def test_the_candidate_distribution_is_exactly_the_filtered_softmax(top_k, top_p, sharpness):
    torch.manual_seed(0)
    scaled = torch.randn(6, 4096) * sharpness

    ids, probabilities = sampling_distribution(scaled, top_k=top_k, top_p=top_p)

    expected = torch.softmax(filter_logits(scaled, top_k=top_k, top_p=top_p), dim=-1)
    # Equal up to float rounding (a token right at the top_p boundary may flip; it weighs < 1e-5).
    assert torch.allclose(_dense(ids, probabilities, 4096), expected, atol=1e-5)


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_ties_at_the_kth_logit_are_all_kept_as_filter_logits_keeps_them(top_p):
    # Coarse logits, as bf16 gives: many tokens share the k-th value.
    scaled = torch.round(torch.randn(4, 512, generator=torch.Generator().manual_seed(1)) * 2) / 2

    ids, probabilities = sampling_distribution(scaled, top_k=20, top_p=top_p)

    expected = torch.softmax(filter_logits(scaled, top_k=20, top_p=top_p), dim=-1)
    kept_by_top_k = torch.isfinite(filter_logits(scaled, top_k=20, top_p=1.0)).sum(-1)
    assert int(kept_by_top_k.max()) > 20  # the case is real: ties widen the set
    assert torch.allclose(_dense(ids, probabilities, 512), expected, atol=1e-6)


def test_flat_rows_fall_back_to_the_whole_vocabulary(monkeypatch):
    monkeypatch.setattr(sampling, "NUCLEUS_CANDIDATES", 4)
    scaled = torch.zeros(2, 50)  # uniform: 4 candidates hold 8% of the mass, far from top_p

    ids, probabilities = sampling_distribution(scaled, top_k=0, top_p=0.5)

    assert ids.shape == (2, 50)
    assert int((probabilities > 0).sum(-1)[0]) == 26  # 25 tokens above reach 0.5 < 0.52


def test_top_k_keeps_the_k_best():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    kept = filter_logits(logits, top_k=2, top_p=1.0)
    assert torch.isfinite(kept).tolist() == [[False, True, True, False]]


def test_top_p_keeps_the_smallest_set_reaching_p_and_always_the_best():
    probabilities = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(filter_logits(probabilities.log(), top_k=0, top_p=0.75))
    assert kept.tolist() == [[True, True, False, False]]
    only_best = torch.isfinite(filter_logits(probabilities.log(), top_k=0, top_p=0.01))
    assert only_best.tolist() == [[True, False, False, False]]


def test_repetition_penalty_lowers_seen_tokens_only():
    logits = torch.tensor([[2.0, -2.0, 2.0]])
    seen = torch.tensor([[True, True, False]])
    assert penalize_repeats(logits, seen, 2.0).tolist() == [[1.0, -4.0, 2.0]]
    assert penalize_repeats(logits, seen, 1.0) is logits


def test_log_probs_are_consistent_with_the_token_counts(policy, micro_model_dir):
    from sampler.generation.sampling import GenerationParams, load_model, sample_completions

    loaded = load_model(micro_model_dir)
    params = GenerationParams(max_new_tokens=10, temperature=1.0, top_p=1.0)
    completions, _ = sample_completions(
        loaded, [{"role": "user", "content": "hi"}], n=6, params=params, seed=4
    )
    for completion in completions:
        assert 1 <= completion.token_count <= 10
        # Each sampled token has probability < 1 under a random model: strictly negative sum.
        assert (
            -completion.token_count * math.log(loaded.model.config.vocab_size) * 3
            < completion.logprob_sum
            < 0
        )
        assert completion.finished or completion.token_count == 10
