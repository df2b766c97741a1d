import math

import torch

from sampler.generation import filter_logits, penalize_repeats


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
    from sampler.generation import GenerationParams, load_model, sample_completions

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
