"""``train_ppo``: a policy optimised against a frozen reward model, held near a frozen reference.

One PPO step, in the order of ``PPOTrainer.step``:

1. **rollout**: sample a reply for each prompt of the batch (left-padded, temperature T, full
   distribution), then score the replies once: log-probs under the policy and the reference (at
   the same T), values, and the reward model's score at the reply's last token (its end-of-turn
   token; minus ``missing_eos_penalty`` when it never ended its turn);
2. **rewards**: per token ``-kl_coef * KL(policy || reference)``, plus the score on the last
   token; optionally whitened;
3. **advantages**: GAE (gamma, lam) over the reply, whitened;
4. **update**: ``ppo_epochs`` passes over shuffled minibatches, clipped policy loss plus
   ``vf_coef`` times the clipped value loss;
5. **control**: the adaptive KL coefficient moves towards ``target_kl``; a rollout whose KL
   passes ``max_kl`` stops the run.

The value function is a linear head on the policy's last hidden state (the backbone is shared,
so PPO holds two models in memory besides the policy: the reference and the reward model).
The saved output is the policy alone, loadable with stock ``from_pretrained``.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from torch import nn

from sampler.training.data import DataError
from sampler.training.loop import (
    CHECKPOINT_PREFIX,
    STATE_FILE,
    LoopResult,
    ProgressCallback,
    RunResult,
    RunSetup,
    add_log_message,
    checkpoint_plan,
    finish_run,
    learning_rate_at,
    make_accelerator,
    pruned_messages,
    report_progress,
    started_over_message,
    step_seed,
)
from sampler.training.losses import masked_mean
from sampler.training.model import (
    RewardScorer,
    apply_lora,
    build_reward_model,
    load_policy,
    load_tokenizer,
    score_head,
)
from sampler.training.optim import make_optimizer
from sampler.training.ppo_config import PPOConfig
from sampler.training.rollout import (
    build_prompt_data,
    check_same_tokenizer,
    pad_left,
    reply_logprobs,
    response_logits,
    response_mask_and_ends,
    reward_scores,
    sample_and_score,
    sample_replies,
    token_entropy,
    token_logprobs,
)

# ---- pure tensor helpers ----------------------------------------------------------------------


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``values`` where ``mask`` is true (Bessel-corrected by default)."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        count = mask.sum()
        if count > 1:
            variance = variance * count / (count - 1)
    return variance


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Scale to unit variance over the masked entries (and centre them unless ``shift_mean`` is
    false, which keeps the sign of rewards). Entries outside the mask are returned as computed;
    callers zero them."""
    mean, variance = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(variance + eps)
    return whitened if shift_mean else whitened + mean


def kl_per_token(
    logprobs: torch.Tensor, reference_logprobs: torch.Tensor, estimator: str = "k1"
) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled tokens' log-probs.

    k1 = log p - log q; k3 = (r - 1) - log r with r = q / p, never negative.
    """
    log_ratio = logprobs - reference_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"Unknown KL estimator {estimator!r}.")


def token_rewards(
    kl: torch.Tensor,
    scores: torch.Tensor,
    mask: torch.Tensor,
    *,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards, non-score rewards), both (B, R): ``-kl_coef * kl`` on every reply token and the
    sequence score added on each row's last reply token, which for a finished reply is its
    end-of-turn token (never a pad after it)."""
    non_score = -kl_coef * kl * mask
    rewards = non_score.clone()
    rows = torch.arange(rewards.size(0), device=rewards.device)
    last = (mask.sum(-1) - 1).clamp(min=0).long()
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards, non_score


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns, both (B, R), zero outside ``mask``.

    delta_t = r_t + gamma * V_{t+1} - V_t; A_t = delta_t + gamma * lam * A_{t+1}, with V and A
    zero past the reply's end, so the last token bootstraps from nothing. Returns = A + V.
    """
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    length = rewards.size(1)
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate: (loss, clip fraction, approximate KL old -> new)."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = 0.5 * masked_mean(log_ratio**2, mask)
    return loss, clipfrac, approx_kl


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(0.5 * max of the squared errors of the new and the clipped value, clip fraction)."""
    clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    clipfrac = masked_mean((clipped_error > unclipped_error).float(), mask)
    return loss, clipfrac


class KLController:
    """The KL coefficient: fixed, or Ziegler et al.'s (2019) proportional controller, which
    multiplies it by 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon after each batch of n
    replies, so the measured KL drifts towards ``target``."""

    def __init__(self, value: float, *, adaptive: bool, target: float, horizon: int):
        self.value, self.adaptive, self.target, self.horizon = value, adaptive, target, horizon

    def update(self, kl: float, replies: int) -> None:
        if self.adaptive:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * replies / self.horizon


# ---- the policy with its value head -----------------------------------------------------------


class PolicyWithValue(nn.Module):
    """The policy and a value head on its last hidden state: one module, so Accelerate / DDP
    wraps, syncs and checkpoints both."""

    def __init__(self, policy: nn.Module, value_head: nn.Linear):
        super().__init__()
        self.policy = policy
        self.value_head = value_head

    def forward(
        self, sequence: torch.Tensor, mask: torch.Tensor, context_length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, values) at the positions predicting the reply: (B, R, V) and (B, R), from the
        policy's own forward (the values read the hidden states its head read)."""
        logits, hidden = response_logits(
            self.policy, sequence, mask, context_length, with_hidden=True
        )
        return logits, self.value_head(hidden).squeeze(-1).float()


def hidden_size(model: nn.Module) -> int:
    return int(model.get_output_embeddings().weight.shape[-1])


def build_value_head(policy: nn.Module, reward_model: nn.Module, how: str) -> tuple[nn.Linear, str]:
    """A (H -> 1) head; from the reward model's score head when asked and the sizes match (the
    backbones share their origin), else zeros (values start neutral). Returns how it started."""
    size = hidden_size(policy)
    head = nn.Linear(size, 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    if how == "reward_head":
        score = score_head(reward_model)
        if score.weight.shape == head.weight.shape:
            with torch.no_grad():
                head.weight.copy_(score.weight.float())
                if score.bias is not None:
                    head.bias.copy_(score.bias.float())
            return head, "reward_head"
    return head, "zeros"


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def end_token_ids(model: nn.Module, tokenizer) -> list[int]:
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.extend([configured] if isinstance(configured, int) else list(configured or []))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("The policy has no end-of-turn (eos) token: replies could never end.")
    return ids


def context_length(model: nn.Module) -> int:
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(model.config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


# ---- one rollout ------------------------------------------------------------------------------


@dataclass
class Rollout:
    """A batch of sampled replies and everything the update needs, on the training device."""

    sequence: torch.Tensor  # (B, P + R): left-padded prompt, then the reply
    mask: torch.Tensor  # (B, P + R) attention mask
    context_length: int  # P
    reply_mask: torch.Tensor  # (B, R) the reply up to and including its end-of-turn token
    has_end: torch.Tensor  # (B,)
    logprobs: torch.Tensor  # (B, R) policy at sampling time, temperature T
    reference_logprobs: torch.Tensor  # (B, R)
    values: torch.Tensor  # (B, R)
    entropy: torch.Tensor  # (B, R)
    raw_scores: torch.Tensor  # (B,) the reward model's
    scores: torch.Tensor  # (B,) minus the missing end-of-turn penalty


@dataclass
class PPOState:
    step: int = 0
    kl_coef: float = 0.0
    history: dict[str, list[list[float]]] | None = None
    stopped_early: str = ""

    def record(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.history.setdefault(name, []).append([step, float(value)])


class PPOTrainer:
    """Holds the models for one run; ``train`` runs the steps, ``step`` is one of them."""

    def __init__(
        self,
        *,
        config: PPOConfig,
        base_model: str | Path,
        reward_model: str | Path,
        callback: ProgressCallback | None = None,
    ):
        self.config = config
        self.callback = callback
        self.accelerator: Accelerator = make_accelerator(config)
        device = self.accelerator.device
        self.tokenizer = load_tokenizer(base_model)
        check_same_tokenizer(self.tokenizer, load_tokenizer(reward_model))
        policy = apply_lora(load_policy(base_model), config)
        # Dropout off everywhere: with it the first PPO epoch's ratio would not start at 1 and
        # rollout log-probs would disagree with the update's (TRL disables it too).
        policy.eval()
        # A separate object, never updated: the KL anchor (TRL: the ref model must not be the
        # policy itself, or the KL is always 0).
        self.reference = freeze(load_policy(base_model)).to(device)
        reward = build_reward_model(reward_model, self.tokenizer)
        value_head, self.value_init = build_value_head(policy, reward, config.value_init)
        self.scorer = freeze(RewardScorer(reward)).to(device)
        self.end_token_ids = end_token_ids(policy, self.tokenizer)
        self.prompt_budget = min(config.max_length, context_length(policy) - config.max_new_tokens)
        if self.prompt_budget < 8:
            raise ValueError(
                f"max_new_tokens={config.max_new_tokens} leaves no room for prompts in the "
                f"policy's {context_length(policy)}-token context."
            )
        module = PolicyWithValue(policy, value_head)
        optimizer = make_optimizer(module, config, eps=config.adam_epsilon)
        self.module, self.optimizer = self.accelerator.prepare(module, optimizer)
        self.kl = KLController(
            config.kl_coef,
            adaptive=config.adaptive_kl,
            target=config.target_kl,
            horizon=config.kl_horizon,
        )

    @property
    def policy(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.module).policy

    def _generator(self, step: int, salt: int) -> torch.Generator:
        # Seeded by step: a resumed run samples what an uninterrupted one would have.
        seed = step_seed(
            self.config.seed, step, salt=salt, process_index=self.accelerator.process_index
        )
        return torch.Generator(device=self.accelerator.device).manual_seed(seed)

    # ---- step 1: rollout
    @torch.no_grad()
    def rollout(self, prompts: list[list[int]], step: int) -> Rollout:
        config, device = self.config, self.accelerator.device
        repeated = [ids for ids in prompts for _ in range(config.samples_per_prompt)]
        query_ids, query_mask = pad_left(
            repeated, pad_id=self.tokenizer.pad_token_id, device=device
        )
        policy = self.policy
        with self.accelerator.autocast():
            replies = sample_replies(
                policy,
                query_ids,
                query_mask,
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature,
                end_token_ids=self.end_token_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                generator=self._generator(step, 0),
            )
            reply_mask, has_end = response_mask_and_ends(replies, self.end_token_ids)
            sequence = torch.cat([query_ids, replies], dim=-1)
            mask = torch.cat([query_mask, reply_mask], dim=-1)
            context = query_ids.size(1)
            logits, values = self.module(sequence, mask, context)
            logprobs = token_logprobs(logits, replies, config.temperature)
            entropy = token_entropy(logits, config.temperature)
            reference_logprobs, _ = reply_logprobs(
                self.reference, sequence, mask, context, config.temperature
            )
            raw_scores = reward_scores(self.scorer, sequence, mask)
        scores = raw_scores - config.missing_eos_penalty * (~has_end).float()
        return Rollout(
            sequence=sequence,
            mask=mask,
            context_length=context,
            reply_mask=reply_mask,
            has_end=has_end,
            logprobs=logprobs.float(),
            reference_logprobs=reference_logprobs.float(),
            values=values.float(),
            entropy=entropy.float(),
            raw_scores=raw_scores,
            scores=scores,
        )

    # ---- steps 2 and 3: rewards and advantages
    def advantages(self, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor, dict]:
        config = self.config
        mask = rollout.reply_mask.float()
        kl = kl_per_token(rollout.logprobs, rollout.reference_logprobs, config.kl_estimator) * mask
        rewards, non_score = token_rewards(kl, rollout.scores, mask, kl_coef=self.kl.value)
        if config.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False) * mask
        advantages, returns = gae(rewards, rollout.values, mask, gamma=config.gamma, lam=config.lam)
        advantages = masked_whiten(advantages, mask) * mask
        sequence_kl = kl.sum(-1)
        metrics = {
            "objective/kl": sequence_kl.mean(),
            "objective/kl_k1": ((rollout.logprobs - rollout.reference_logprobs) * mask)
            .sum(-1)
            .mean(),
            # As TRL logs it: after the missing-EOS penalty, so that rlhf_reward is
            # scores + non_score_reward; raw_scores is the reward model's own.
            "objective/scores": rollout.scores.mean(),
            "objective/raw_scores": rollout.raw_scores.mean(),
            "objective/non_score_reward": non_score.sum(-1).mean(),
            "objective/rlhf_reward": (rollout.scores + non_score.sum(-1)).mean(),
            "objective/kl_coef": torch.tensor(self.kl.value),
            "policy/entropy": masked_mean(rollout.entropy, mask),
            "response/length": mask.sum(-1).mean(),
            "response/eos_rate": rollout.has_end.float().mean(),
            "value/mean": masked_mean(rollout.values, mask),
            "value/returns": masked_mean(returns, mask),
        }
        return advantages, returns, metrics

    # ---- step 4: the clipped update
    def update(self, rollout: Rollout, advantages, returns, step: int) -> dict[str, float]:
        config = self.config
        rows = rollout.sequence.size(0)
        generator = self._generator(step, 1)
        totals: dict[str, float] = {}
        updates = 0
        for _ in range(config.ppo_epochs):
            order = torch.randperm(rows, generator=generator, device=generator.device)
            # Exactly `minibatches` parts (sizes differ by at most one row), even when they do
            # not divide the rows: slices of ceil(rows / minibatches) could make fewer.
            for index in torch.tensor_split(order, config.minibatches):
                mask = rollout.reply_mask[index].float()
                logits, values = self.module(
                    rollout.sequence[index], rollout.mask[index], rollout.context_length
                )
                tokens = rollout.sequence[index, rollout.context_length :]
                logprobs = token_logprobs(logits, tokens, config.temperature)
                policy_loss, clipfrac, approx_kl = clipped_policy_loss(
                    logprobs,
                    rollout.logprobs[index],
                    advantages[index],
                    mask,
                    config.cliprange,
                )
                value_loss, value_clipfrac = clipped_value_loss(
                    values, rollout.values[index], returns[index], mask, config.cliprange_value
                )
                loss = policy_loss + config.vf_coef * value_loss
                self.accelerator.backward(loss)
                self.accelerator.clip_grad_norm_(self.module.parameters(), config.gradient_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    ratio = masked_mean(torch.exp(logprobs - rollout.logprobs[index]), mask)
                for name, value in (
                    ("loss/policy", policy_loss),
                    ("loss/value", value_loss),
                    ("policy/clipfrac", clipfrac),
                    ("policy/approxkl", approx_kl),
                    ("value/clipfrac", value_clipfrac),
                    ("policy/ratio", ratio),
                ):
                    totals[name] = totals.get(name, 0.0) + float(value.detach())
                updates += 1
        metrics = {name: total / updates for name, total in totals.items()}
        if not math.isfinite(metrics["loss/policy"] + metrics["loss/value"]):
            raise FloatingPointError(f"the PPO loss became {metrics} at step {step}")
        return metrics

    def step(self, prompts: list[list[int]], step: int) -> tuple[dict[str, float], bool]:
        """(metrics, whether the run must stop). A rollout past ``max_kl`` is not trained on:
        the policy that produced it is the one the run keeps."""
        started = time.monotonic()
        rollout = self.rollout(prompts, step)
        rollout_seconds = time.monotonic() - started
        advantages, returns, metrics = self.advantages(rollout)
        metrics = self._mean_over_processes({k: float(v) for k, v in metrics.items()})
        if self.config.max_kl and metrics["objective/kl"] > self.config.max_kl:
            return metrics, True
        metrics.update(self._mean_over_processes(self.update(rollout, advantages, returns, step)))
        # Step 5: the coefficient for the next batch.
        self.kl.update(metrics["objective/kl"], rollout.sequence.size(0) * self.world)
        metrics["time/rollout_share"] = rollout_seconds / max(1e-9, time.monotonic() - started)
        return metrics, False

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    def _mean_over_processes(
        self, values: dict[str, float], weight: float = 1.0
    ) -> dict[str, float]:
        """Each value's mean over the processes, each weighted by its ``weight`` (how many
        rows it measured). A process may have nothing to say (weight 0, no values: fewer
        held-out prompts than processes), but every process takes part in the collectives."""
        if self.world == 1:
            return values
        names = sorted(set().union(*gather_object([sorted(values)])))
        tensor = torch.tensor(
            [weight, *(values.get(name, 0.0) * weight for name in names)],
            dtype=torch.float64,
            device=self.accelerator.device,
        )
        total, *sums = self.accelerator.reduce(tensor, reduction="sum").tolist()
        return (
            {name: value / total for name, value in zip(names, sums, strict=True)} if total else {}
        )

    # ---- evaluation
    @torch.no_grad()
    def evaluate(self, prompts: list[list[int]], step: int) -> dict[str, float]:
        """Fresh replies to held-out prompts: reward score, KL to the reference, length and
        end-of-turn rate (``eval/*``); each process takes its share of the prompts."""
        shard = prompts[self.accelerator.process_index :: self.world]
        if not shard:
            return self._mean_over_processes({}, weight=0.0)
        with self.accelerator.autocast():
            samples = sample_and_score(
                self.policy,
                self.tokenizer,
                shard,
                scorer=self.scorer,
                reference=self.reference,
                max_new_tokens=self.config.max_new_tokens,
                temperature=self.config.temperature,
                end_token_ids=self.end_token_ids,
                # The same seed at every evaluation: curves compare like with like.
                seed=self.config.seed + 17 + self.accelerator.process_index,
                batch_size=max(self.config.rollout_size, 8),
            )
        return self._mean_over_processes(samples.summary("eval"), weight=len(shard))

    # ---- checkpoints
    def save_checkpoint(self, directory: Path, state: PPOState) -> Path:
        path = directory / f"{CHECKPOINT_PREFIX}{state.step:08d}"
        self.accelerator.save_state(str(path))
        if self.accelerator.is_main_process:
            payload = {
                "step": state.step,
                "kl_coef": self.kl.value,
                "history": state.history,
                "config": self.config.as_dict(),
            }
            (path / STATE_FILE).write_text(json.dumps(payload))
        self.accelerator.wait_for_everyone()
        return path

    def load_checkpoint(self, path: Path) -> PPOState:
        self.accelerator.load_state(str(path))
        payload = json.loads((path / STATE_FILE).read_text())
        self.kl.value = float(payload["kl_coef"])
        return PPOState(
            step=int(payload["step"]), kl_coef=self.kl.value, history=payload["history"]
        )

    # ---- the loop
    def batch_for(self, train: list[list[int]], step: int) -> list[list[int]]:
        """This process's prompts for ``step``: a seeded shuffle per epoch, sliced in order
        (wrapping around when there are fewer prompts than one global batch)."""
        per_step = self.config.batch_size * self.world
        per_epoch = max(1, len(train) // per_step)
        epoch, position = divmod(step, per_epoch)
        order = list(range(len(train)))
        random.Random(self.config.seed * 1009 + epoch).shuffle(order)
        start = position * per_step + self.accelerator.process_index * self.config.batch_size
        return [
            train[order[(start + offset) % len(order)]] for offset in range(self.config.batch_size)
        ]

    def total_steps(self, train_prompts: int) -> int:
        if self.config.max_steps:
            return self.config.max_steps
        per_epoch = max(1, train_prompts // (self.config.batch_size * self.world))
        return max(1, math.ceil(self.config.epochs * per_epoch))

    def train(
        self,
        train: list[list[int]],
        test: list[list[int]],
        *,
        checkpoint_dir: Path | None = None,
        resume: bool = False,
    ) -> tuple[PPOState, int, float]:
        config = self.config
        total = self.total_steps(len(train))
        eval_prompts = test[: config.eval_prompts]
        state = PPOState(kl_coef=self.kl.value, history={})
        checkpoint_dir, checkpoint, abandoned = checkpoint_plan(
            self.accelerator, checkpoint_dir, resume
        )
        if checkpoint is not None:
            state = self.load_checkpoint(checkpoint)
        started = time.monotonic()
        self._report(
            "start",
            state,
            total,
            message=(
                f"resumed at step {state.step} of {total}"
                if checkpoint is not None
                else f"{total} PPO step{'s' if total != 1 else ''} of {config.rollout_size} "
                f"repl{'ies' if config.rollout_size != 1 else 'y'} ({len(train)} training "
                f"prompt{'s' if len(train) != 1 else ''}, {len(eval_prompts)} held out); "
                f"value head from {self.value_init}"
            ),
        )
        if abandoned:
            self._report("message", state, total, message=started_over_message(abandoned))
        if eval_prompts and state.step == 0:
            evaluated = self.evaluate(eval_prompts, 0)
            state.record(0, evaluated)
            self._report("eval", state, total, evaluated)
        while state.step < total:
            learning_rate = learning_rate_at(state.step, total, config)
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate
            metrics, over_bound = self.step(self.batch_for(train, state.step), state.step)
            if over_bound:
                state.stopped_early = (
                    f"stopped early before step {state.step + 1}: the rollout's KL "
                    f"{metrics['objective/kl']:.2f} passed max_kl {config.max_kl}"
                )
                state.record(state.step + 1, {"objective/kl": metrics["objective/kl"]})
                self._report("message", state, total, message=state.stopped_early)
            else:
                state.step += 1
                metrics["learning_rate"] = learning_rate
                state.record(state.step, metrics)
                self._report("train", state, total, metrics)
            is_last = state.step >= total or over_bound
            evaluated_here = state.history.get("eval/scores", [[None]])[-1][0] == state.step
            if (
                eval_prompts
                and not evaluated_here
                and (is_last or (config.eval_every and state.step % config.eval_every == 0))
            ):
                evaluated = self.evaluate(eval_prompts, state.step)
                state.record(state.step, evaluated)
                self._report("eval", state, total, evaluated)
            if is_last:
                break
            if (
                checkpoint_dir
                and config.checkpoint_every
                and state.step % config.checkpoint_every == 0
            ):
                path = self.save_checkpoint(checkpoint_dir, state)
                self._report("checkpoint", state, total, message=f"checkpoint {path.name}")
                for message in pruned_messages(self.accelerator, path, abandoned):
                    self._report("message", state, total, message=message)
                abandoned = []
        self._report("end", state, total, self.final_metrics(state))
        return state, total, time.monotonic() - started

    def final_metrics(self, state: PPOState) -> dict[str, float]:
        """The last value of every curve (for a run stopped early: the KL that stopped it)."""
        return {name: points[-1][1] for name, points in state.history.items() if points}

    def _report(self, kind, state: PPOState, total: int, metrics=None, message: str = "") -> None:
        main = self.accelerator.is_main_process
        report_progress(self.callback, kind, state, total, main, metrics, message)


def train_ppo(
    *,
    config: PPOConfig,
    prompts: Iterable[dict],
    base_model: str | Path,
    reward_model: str | Path,
    output_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    callback: ProgressCallback | None = None,
) -> RunResult:
    """PPO from the policy at ``base_model`` against the reward model at ``reward_model``; the
    new policy is saved to ``output_dir``.

    ``prompts``: records with ``messages`` (demonstrations, or bare prompts) or ``prompt``
    (rankings, pairs); every prefix ending in a user turn is a prompt, once. Records carry
    their ``split`` (by conversation) or get one by hash; held-out prompts are only evaluated.
    """
    set_seed(config.seed)
    trainer = PPOTrainer(
        config=config, base_model=base_model, reward_model=reward_model, callback=callback
    )
    data = build_prompt_data(
        trainer.tokenizer,
        prompts,
        max_length=trainer.prompt_budget,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )
    if not data.train:
        raise DataError(
            f"No prompt ending in a user turn in the training split ({data.summary()})."
        )
    add_log_message(callback, f"data: {data.describe()}", main=trainer.accelerator.is_main_process)
    train_ids = [prompt.input_ids for prompt in data.train]
    test_ids = [prompt.input_ids for prompt in data.test]
    state, total, seconds = trainer.train(
        train_ids,
        test_ids,
        checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
        resume=resume,
    )
    trainer.accelerator.wait_for_everyone()
    result = LoopResult(
        steps=state.step,
        total_steps=total,
        history=state.history,
        final_metrics=trainer.final_metrics(state),
        seconds=seconds,
    )
    return finish_run(
        trainer.policy,
        trainer.tokenizer,
        RunSetup(config, output_dir, checkpoint_dir, resume, callback),
        data,
        result,
        trainer.accelerator,
        extra_metrics={
            "total_steps": total,
            "stopped_early": state.stopped_early or None,
            "value_init": trainer.value_init,
        },
        extra_info={"reward_model": str(reward_model)},
    )
