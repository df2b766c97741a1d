"""How a judge reads replies sampled by any backend: where each reply stopped."""

import torch

from sampler.training.compare import Reply, judge_replies
from sampler.training.data import reply_ids
from sampler.training.model import RewardScorer, build_reward_model, load_tokenizer
from sampler.training.reward import score_sequences


def test_a_reply_cut_by_the_length_limit_is_judged_without_a_made_up_end_of_turn(
    micro_model_dir, tmp_path
):
    tokenizer = load_tokenizer(micro_model_dir)
    torch.manual_seed(0)
    judge = tmp_path / "judge"
    build_reward_model(micro_model_dir, tokenizer).save_pretrained(judge)
    tokenizer.save_pretrained(judge)
    prompt = [{"role": "user", "content": "how was the hike?"}]
    text = "it was long and the view"
    verdict = judge_replies(
        reward_model=judge,
        prompts=[prompt],
        replies_a=[Reply(text=text, token_count=7, finished=True)],
        replies_b=[Reply(text=text, token_count=7, finished=False)],
    )
    scorer = RewardScorer(build_reward_model(judge, load_tokenizer(judge))).eval()
    ended = reply_ids(tokenizer, prompt, text)
    assert ended[-1] == tokenizer.eos_token_id
    expected = score_sequences(scorer, [ended, ended[:-1]], pad_id=tokenizer.pad_token_id)
    example = verdict["examples"][0]
    assert abs(example["score_a"] - expected[0].item()) < 1e-5
    assert abs(example["score_b"] - expected[1].item()) < 1e-5
    # Same text, read at different positions: the two scores differ.
    assert abs(example["score_a"] - example["score_b"]) > 1e-6
    assert verdict["eos_rate_a"] == 1.0 and verdict["eos_rate_b"] == 0.0
