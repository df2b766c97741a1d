"""DPO and KTO trainers, the shared prompt pass, LoRA outputs, the end-of-turn token and the
model's own forward: micro models, a few steps."""

import json
import math
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sampler.training.config import DPOConfig, KTOConfig
from sampler.training.data import prompt_ids, reply_ids, trim_to_turn_end
from sampler.training.dpo import build_dpo_data, train_dpo
from sampler.training.kto import train_kto
from sampler.training.model import (
    ADAPTER_DIR,
    RewardScorer,
    build_reward_model,
    load_policy,
    load_tokenizer,
    turn_end_ids,
)
from sampler.training.ppo_config import PPOConfig
from sampler.training.preference import (
    PromptCompletionCollator,
    full_sequence_logprobs,
    shared_prompt_logprobs,
)
from sampler.training.rollout import reply_logprobs, reward_scores, token_logprobs
from sampler.training.synthetic import synthetic_rankings


@pytest.fixture(scope="module")
def tokenizer(micro_model_dir):
    return load_tokenizer(micro_model_dir)


def _weights(path):
    model = AutoModelForCausalLM.from_pretrained(path)
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_shared_prompt_pass_equals_full_sequences_in_value_and_gradient(micro_model_dir, tokenizer):
    records = synthetic_rankings(4, k=4, rule="keyword", seed=1)
    data = build_dpo_data(
        tokenizer,
        records,
        max_length=64,
        test_fraction=0.0,
        seed=0,
        end_ids=[tokenizer.eos_token_id],
    )
    examples = data.train + data.test
    batch = PromptCompletionCollator(pad_id=tokenizer.pad_token_id)(examples)
    # Prompts of different lengths: the left padding and the positions must not matter.
    assert batch["prompt_mask"].sum(-1).unique().numel() > 1 or len(examples) == 1
    grads = []
    values = []
    for shared in (True, False):
        model = load_policy(micro_model_dir)
        if shared:
            logps = shared_prompt_logprobs(
                model,
                batch["prompt_ids"],
                batch["prompt_mask"],
                batch["completion_ids"],
                batch["completion_mask"],
                batch["owners"],
            )
        else:
            prompts = [e.prompt for e in examples for _ in e.completions]
            completions = [c for e in examples for c in e.completions]
            logps = full_sequence_logprobs(
                model, prompts, completions, pad_id=tokenizer.pad_token_id
            )
        (logps * torch.linspace(0.5, 1.5, logps.numel())).sum().backward()
        values.append(logps.detach())
        grads.append(model.transformer.wte.weight.grad.clone())
    torch.testing.assert_close(values[0], values[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("mode, loss_type", [("listwise", "sigmoid"), ("pairwise", "ipo")])
def test_train_dpo_moves_the_policy_and_reports_trl_style_metrics(
    micro_model_dir, tmp_path, mode, loss_type
):
    records = synthetic_rankings(40, k=4, rule="keyword", seed=2)
    config = DPOConfig(
        mode=mode,
        loss_type=loss_type,
        max_steps=4,
        batch_size=4,
        max_length=64,
        eval_every=0,
        learning_rate=1e-3,
    )
    result = train_dpo(
        config=config, records=records, base_model=micro_model_dir, output_dir=tmp_path / "out"
    )
    history = result.history
    assert {"loss/train", "rewards/chosen", "rewards/rejected", "rewards/margins"} <= set(history)
    assert {"rewards/accuracies", "loss/eval", "accuracy/eval"} <= set(history)
    assert all(torch.isfinite(torch.tensor(v)) for _, v in history["loss/train"])
    before, after = _weights(micro_model_dir), _weights(tmp_path / "out")
    assert any(not torch.equal(before[name], after[name]) for name in before)
    # Stock loading gives float32 weights and config.
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "float32"
    assert all(t.dtype == torch.float32 for t in after.values() if t.is_floating_point())


def test_dpo_with_lora_trains_adapters_only_saves_the_adapter_and_a_merged_model(
    micro_model_dir, tmp_path
):
    records = synthetic_rankings(20, k=3, seed=3)
    config = DPOConfig(
        max_steps=2,
        batch_size=2,
        max_length=64,
        eval_every=0,
        lora_r=4,
        lora_alpha=8,
        lora_targets="c_attn,c_proj",
        learning_rate=1e-2,
    )
    result = train_dpo(
        config=config, records=records, base_model=micro_model_dir, output_dir=tmp_path / "out"
    )
    lora = result.metrics["lora"]
    assert lora["r"] == 4 and lora["alpha"] == 8 and lora["targets"] == ["c_attn", "c_proj"]
    assert lora["adapter"] == ADAPTER_DIR
    adapter = tmp_path / "out" / ADAPTER_DIR
    assert (adapter / "adapter_config.json").is_file()
    # The merged model is a plain GPT-2 (no LoRA weights), loadable with stock code ...
    merged = _weights(tmp_path / "out")
    assert not any("lora" in name for name in merged)
    before = _weights(micro_model_dir)
    changed = {name for name in before if not torch.equal(before[name], merged[name])}
    # Only the adapted modules' weights (c_proj names both attention's and the MLP's).
    assert changed and all(name.endswith(("c_attn.weight", "c_proj.weight")) for name in changed)
    # ... and equal to the base with the adapter applied.
    from peft import PeftModel

    with_adapter = PeftModel.from_pretrained(load_policy(micro_model_dir), str(adapter)).eval()
    ids = torch.tensor(
        [prompt_ids(load_tokenizer(micro_model_dir), [{"role": "user", "content": "hi"}])]
    )
    stock = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            with_adapter(ids).logits, stock(ids).logits, atol=1e-4, rtol=1e-4
        )


def _kto_records(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for record in synthetic_rankings(count, k=4, rule="keyword", seed=seed):
        for candidate in record["candidates"]:
            rows.append(
                {
                    "prompt": record["prompt"],
                    "completion": [{"role": "assistant", "content": candidate["text"]}],
                    "label": "pineapple" in candidate["text"],
                    "source": rng.choice(["thumbs_up", "flags"]),
                    "model_version": "micro",
                    "conversation_id": record["conversation_id"],
                    "split": record["split"],
                }
            )
    return rows


def test_train_kto_weights_the_scarcer_kind_and_counts_sources_and_versions(
    micro_model_dir, tmp_path
):
    records = _kto_records(30, seed=4)
    config = KTOConfig(max_steps=3, batch_size=4, max_length=64, eval_every=0, learning_rate=1e-3)
    result = train_kto(
        config=config, records=records, base_model=micro_model_dir, output_dir=tmp_path / "out"
    )
    train = [r for r in records if r["split"] == "train"]
    desirable = sum(r["label"] for r in train)
    assert result.metrics["desirable_weight"] == pytest.approx((len(train) - desirable) / desirable)
    assert result.data["version/micro"] == len(records)
    assert {"kl", "rewards/chosen", "rewards/rejected", "loss/train"} <= set(result.history)
    assert {"loss/eval", "accuracy/eval", "kl/eval"} <= set(result.metrics)
    # One source only: the other's records are left out.
    only = KTOConfig(max_steps=1, batch_size=4, max_length=64, eval_every=0, sources="flags")
    result = train_kto(
        config=only, records=records, base_model=micro_model_dir, output_dir=tmp_path / "flags"
    )
    assert result.data["skipped/source"] == sum(r["source"] != "flags" for r in records)


def test_a_kto_prompt_given_as_a_string_is_the_user_turn_and_one_kind_alone_is_said(
    micro_model_dir, tmp_path
):
    from sampler.training.kto import kto_example

    tokenizer = AutoTokenizer.from_pretrained(micro_model_dir)
    end_ids = turn_end_ids(micro_model_dir, tokenizer)
    standard = {"prompt": "question?", "completion": "an answer.", "label": False}
    conversational = {
        "prompt": [{"role": "user", "content": "question?"}],
        "completion": [{"role": "assistant", "content": "an answer."}],
        "label": False,
    }
    assert kto_example(tokenizer, standard, max_length=64, end_ids=end_ids) == kto_example(
        tokenizer, conversational, max_length=64, end_ids=end_ids
    )
    records = [{**standard, "prompt": f"question {i}?", "split": "train"} for i in range(4)]
    logged = []
    config = KTOConfig(max_steps=1, batch_size=2, max_length=64, eval_every=0)
    result = train_kto(
        config=config,
        records=records,
        base_model=micro_model_dir,
        output_dir=tmp_path / "out",
        callback=lambda event: logged.append(event.message),
    )
    assert result.data["undesirable/train"] == 4
    assert any("No desirable example in the training split" in m for m in logged if m)


def test_kto_needs_two_examples_per_step():
    with pytest.raises(ValueError, match="at least 2"):
        KTOConfig.from_dict({"batch_size": 1})
    with pytest.raises(ValueError, match="IPO is a pairwise loss"):
        DPOConfig.from_dict({"loss_type": "ipo", "mode": "listwise"})


# ---- the end-of-turn token, for any template ---------------------------------------------------


@pytest.fixture
def newline_tokenizer(micro_model_dir, tmp_path):
    """The micro tokenizer with a template that ends each turn with a newline after <|end|>."""
    tokenizer = AutoTokenizer.from_pretrained(micro_model_dir)
    tokenizer.chat_template = tokenizer.chat_template.replace("'<|end|>' }}", "'<|end|>\n' }}")
    assert "\n" in tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    return tokenizer


def test_reward_data_ppo_and_serving_score_the_same_end_of_turn_token(
    micro_model_dir, newline_tokenizer
):
    from sampler.training.data import demonstration_ids

    tokenizer = newline_tokenizer
    eos = tokenizer.eos_token_id
    prompt = [{"role": "user", "content": "how was your day?"}]
    reply = "it was good thanks"
    rendered = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": reply}], tokenize=True
    )["input_ids"]
    assert rendered[-1] != eos  # the template's last token is the newline
    data_ids = reply_ids(tokenizer, prompt, reply)
    assert data_ids[-1] == eos and data_ids == trim_to_turn_end(list(rendered), [eos])
    served = demonstration_ids(
        tokenizer, [*prompt, {"role": "assistant", "content": reply}], max_length=256
    )
    assert served == data_ids
    # PPO: the prompt with the assistant header, then the sampled tokens up to <|end|>.
    query = prompt_ids(tokenizer, prompt)
    sampled = data_ids[len(query) :]
    torch.manual_seed(0)
    scorer = RewardScorer(build_reward_model(micro_model_dir, tokenizer)).eval()
    with torch.no_grad():
        data_score = scorer(
            torch.tensor([data_ids]), torch.ones(1, len(data_ids), dtype=torch.long)
        )
        sequence = torch.tensor([query + sampled])
        ppo_score = reward_scores(scorer, sequence, torch.ones_like(sequence))
        template_score = scorer(
            torch.tensor([rendered]), torch.ones(1, len(rendered), dtype=torch.long)
        )
    torch.testing.assert_close(data_score, ppo_score)
    assert not torch.allclose(data_score, template_score)


# ---- the model's own forward ------------------------------------------------------------------


def test_rollout_log_probs_come_from_the_models_own_forward_softcapping_included():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        final_logit_softcapping=2.0,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    model = Gemma2ForCausalLM(config).eval()
    with torch.no_grad():  # logits large enough for the cap to matter
        model.lm_head.weight.mul_(50)
    sequence = torch.randint(1, 64, (2, 9))
    mask = torch.ones_like(sequence)
    context = 5
    logprobs, _ = reply_logprobs(model, sequence, mask, context, temperature=0.7)
    with torch.no_grad():
        logits = model(input_ids=sequence, attention_mask=mask).logits[:, context - 1 : -1]
        expected = token_logprobs(logits, sequence[:, context:], 0.7)
        bare = model.lm_head(model.model(input_ids=sequence).last_hidden_state)[:, context - 1 : -1]
        uncapped = token_logprobs(bare, sequence[:, context:], 0.7)
    torch.testing.assert_close(logprobs, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(logprobs, uncapped, atol=1e-3)


def test_ppo_config_takes_lora_settings():
    config = PPOConfig.from_dict({"lora_r": 8, "lora_targets": "c_attn"})
    assert config.lora_r == 8
    with pytest.raises(ValueError, match="lora_targets"):
        PPOConfig.from_dict({"lora_targets": "c_attn; rm -rf"})


def test_every_trainer_takes_lora_and_records_it(micro_model_dir, tmp_path):
    from sampler.training.config import RewardConfig, SFTConfig
    from sampler.training.ppo import train_ppo
    from sampler.training.reward import train_reward
    from sampler.training.sft import train_sft
    from sampler.training.synthetic import synthetic_demonstrations

    lora = {"lora_r": 2, "max_steps": 1, "batch_size": 2, "max_length": 48, "eval_every": 0}
    sft = train_sft(
        config=SFTConfig(**lora),
        records=synthetic_demonstrations(8),
        base_model=micro_model_dir,
        output_dir=tmp_path / "sft",
    )
    reward = train_reward(
        config=RewardConfig(**lora, normalize_to_demonstrations=False),
        records=synthetic_rankings(8, k=3),
        base_model=micro_model_dir,
        output_dir=tmp_path / "rm",
    )
    ppo = train_ppo(
        config=PPOConfig(**{**lora, "max_new_tokens": 4, "eval_prompts": 2}),
        prompts=synthetic_demonstrations(8),
        base_model=micro_model_dir,
        reward_model=tmp_path / "rm",
        output_dir=tmp_path / "ppo",
    )
    for name, result in (("sft", sft), ("rm", reward), ("ppo", ppo)):
        assert result.metrics["lora"]["r"] == 2, name
        assert (tmp_path / name / ADAPTER_DIR / "adapter_config.json").is_file()
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert (
            config["dtype"] == "float32"
            and "lora" not in (tmp_path / name / "config.json").read_text()
        )
    # The reward model's adapter keeps its trained score head (PEFT's modules_to_save).
    adapter = json.loads((tmp_path / "rm" / ADAPTER_DIR / "adapter_config.json").read_text())
    assert "score" in adapter["modules_to_save"] and adapter["task_type"] == "SEQ_CLS"
    assert AutoTokenizer.from_pretrained(tmp_path / "rm").padding_side == "right"


# ---- every log-ratio starts at 0 ---------------------------------------------------------------


def _first_step(trainer, config, records, base_model, output_dir) -> dict[str, float]:
    """Metrics of the first step, measured before any update."""
    result = trainer(config=config, records=records, base_model=base_model, output_dir=output_dir)
    return {name: values[0][1] for name, values in result.history.items() if values[0][0] == 1}


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_dpo_and_kto_start_with_every_log_ratio_at_zero(dropout_model_dir, tmp_path, precision):
    """The policy starts as its reference, so each implicit reward is 0 at the first step:
    neither dropout in training (on the policy's side only) nor mixed precision (the policy's
    forward only) may make them differ."""
    settings = {"max_steps": 1, "batch_size": 4, "max_length": 64, "eval_every": 0}
    settings.update(log_every=1, learning_rate=1e-3, mixed_precision=precision)
    dpo = _first_step(
        train_dpo,
        DPOConfig(**settings),
        synthetic_rankings(12, k=2, rule="keyword", seed=5),
        dropout_model_dir,
        tmp_path / "dpo",
    )
    assert dpo["rewards/chosen"] == pytest.approx(0, abs=1e-6)
    assert dpo["rewards/rejected"] == pytest.approx(0, abs=1e-6)
    assert dpo["loss/train"] == pytest.approx(math.log(2), abs=1e-6)
    kto = _first_step(
        train_kto,
        KTOConfig(**settings),
        _kto_records(6, seed=5),
        dropout_model_dir,
        tmp_path / "kto",
    )
    assert kto["kl"] == pytest.approx(0, abs=1e-6)
    assert kto["rewards/chosen"] == pytest.approx(0, abs=1e-6)
    assert kto["rewards/rejected"] == pytest.approx(0, abs=1e-6)


def test_kto_mismatched_pairs_fit_the_length_and_a_lone_example_is_never_its_own_pair():
    from sampler.training.preference import PromptCompletions

    long_prompt = PromptCompletions(prompt=[1] * 60, completions=[[2] * 4], desirable=[True])
    long_reply = PromptCompletions(prompt=[3] * 4, completions=[[4] * 60], desirable=[False])
    collate = PromptCompletionCollator(pad_id=0, pair_with_next=True, max_length=64)
    batch = collate([long_prompt, long_reply])
    lengths = batch["completion_mask"].sum(dim=1).tolist()
    prompt_lengths = batch["prompt_mask"].sum(dim=1).tolist()
    # Matched, then each reply after the other's prompt: cut to the 64 tokens.
    assert batch["owners"].tolist() == [0, 1, 1, 0]
    assert [
        prompt_lengths[o] + n for o, n in zip(batch["owners"].tolist(), lengths, strict=True)
    ] == [
        64,
        64,
        8,
        64,
    ]
    alone = collate([long_reply])
    assert alone["owners"].tolist() == [0]  # no mismatched pair: its next would be itself


def test_a_lone_kto_example_takes_the_last_training_estimate_not_a_held_out_one():
    from sampler.training.kto import KTOTask
    from sampler.training.preference import PromptCompletions

    class Ratios(torch.nn.Module):
        """Log-ratios as given, whatever the batch (the reference returns zeros)."""

        def __init__(self, values):
            super().__init__()
            self.values = values

        def forward(self, batch):
            return torch.tensor(self.values[: len(batch["owners"])])

    task = KTOTask(KTOConfig(), Ratios([0.0] * 4), weights=(1.0, 1.0))
    two = {"examples": [PromptCompletions([1], [[2]], desirable=[True])] * 2, "owners": [0] * 4}
    one = {"examples": two["examples"][:1], "owners": [0]}
    _, trained, _ = task.parts(Ratios([0.0, 0.0, 0.5, 0.7]), two)
    _, held_out, _ = task.parts(Ratios([0.0, 0.0, 3.0, 3.0]), two, training=False)
    _, alone, _ = task.parts(Ratios([0.2]), one)
    assert trained.item() == pytest.approx(0.6) and held_out.item() == pytest.approx(3.0)
    assert alone.item() == pytest.approx(0.6)  # the last training estimate


def test_kto_trains_through_an_epoch_ending_on_one_example_with_long_prompts_and_replies(
    micro_model_dir, tmp_path
):
    """5 examples in batches of 4 (the last batch holds one), prompts and replies each near
    max_length: the mismatched pairs stay within the model's context."""
    records = []
    for index in range(5):
        desirable = index % 2 == 0
        long_text = " ".join(["pineapple"] * 400)
        records.append(
            {
                "prompt": [{"role": "user", "content": long_text if desirable else "hi"}],
                "completion": [{"role": "assistant", "content": "ok" if desirable else long_text}],
                "label": desirable,
                "split": "train",
            }
        )
    config = KTOConfig(max_steps=4, batch_size=4, max_length=256, eval_every=0, log_every=1)
    result = train_kto(
        config=config, records=records, base_model=micro_model_dir, output_dir=tmp_path / "out"
    )
    assert len(result.history["kl"]) == 4
    assert all(math.isfinite(value) for _, value in result.history["loss/train"])


def test_ipo_reads_each_replys_log_ratio_per_token_as_trl_does(micro_model_dir, tokenizer):
    """IPO's target gap 1 / (2 beta) is for log-probs averaged over a reply's tokens (TRL
    divides by the reply's length for IPO only); DPO's sigmoid keeps them summed."""
    from sampler.training.dpo import DPOTask
    from sampler.training.losses import implied_pairs
    from sampler.training.preference import SharedPromptPolicy

    examples = build_dpo_data(
        tokenizer,
        synthetic_rankings(3, k=3, seed=2),
        max_length=64,
        test_fraction=0.0,
        seed=0,
        end_ids=[tokenizer.eos_token_id],
    ).train
    batch = PromptCompletionCollator(pad_id=tokenizer.pad_token_id)(examples)
    policy = load_policy(micro_model_dir)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    reference = load_policy(micro_model_dir)
    prompts = [e.prompt for e in examples for _ in e.completions]
    completions = [c for e in examples for c in e.completions]
    with torch.no_grad():
        summed = full_sequence_logprobs(
            policy, prompts, completions, pad_id=tokenizer.pad_token_id
        ) - full_sequence_logprobs(reference, prompts, completions, pad_id=tokenizer.pad_token_id)
    per_token = summed / torch.tensor([len(c) for c in completions], dtype=summed.dtype)
    beta = 0.1
    for loss_type, ratios in (("ipo", per_token), ("sigmoid", summed)):
        config = DPOConfig(mode="pairwise", loss_type=loss_type, beta=beta)
        task = DPOTask(config, SharedPromptPolicy(reference).eval())
        with torch.no_grad():
            loss, _ = task.train_loss(SharedPromptPolicy(policy), batch)
        expected, offset = [], 0
        for example in examples:
            own = ratios[offset : offset + len(example.completions)]
            offset += len(example.completions)
            gaps = torch.stack([own[w] - own[lo] for w, lo, _ in implied_pairs(example.groups)])
            if loss_type == "ipo":
                expected.append(((gaps - 1 / (2 * beta)) ** 2).mean())
            else:
                expected.append(-torch.nn.functional.logsigmoid(beta * gaps).mean())
        torch.testing.assert_close(loss, torch.stack(expected).mean(), atol=1e-4, rtol=1e-4)


def test_dpo_trust_weights_count_across_micro_batches_as_within_one_batch(
    micro_model_dir, tokenizer
):
    """Two rankings of trust 0.1 and 1.0: one step over them as two micro-batches has the
    gradient of one batch holding both (their trust-weighted mean), not of their plain mean."""
    from dataclasses import replace

    from sampler.training.dpo import DPOTask, ranking_completions
    from sampler.training.loop import _accumulated_step, make_accelerator
    from sampler.training.preference import SharedPromptPolicy

    config = DPOConfig(weight_by_trust=True, max_length=64)
    records = synthetic_rankings(2, k=3, rule="keyword", seed=4)
    end_ids = turn_end_ids(micro_model_dir, tokenizer)
    examples = [
        replace(ranking_completions(tokenizer, record, max_length=64, end_ids=end_ids), weight=w)
        for record, w in zip(records, (0.1, 1.0), strict=True)
    ]
    collate = PromptCompletionCollator(pad_id=tokenizer.pad_token_id)
    reference = SharedPromptPolicy(load_policy(micro_model_dir)).requires_grad_(False)
    accelerator = make_accelerator(config)

    def gradient(window) -> torch.Tensor:
        policy = SharedPromptPolicy(load_policy(micro_model_dir))
        # The reference is the start: move the policy off it so the loss has a slope to weigh.
        with torch.no_grad():
            policy.model.lm_head.weight.mul_(1.5)
        _accumulated_step(DPOTask(config, reference), policy, window, accelerator)
        return policy.model.transformer.wte.weight.grad.clone()

    together = gradient([collate(examples)])
    accumulated = gradient([collate(examples[:1]), collate(examples[1:])])
    assert together.abs().max() > 0
    torch.testing.assert_close(accumulated, together, rtol=1e-4, atol=1e-7)
