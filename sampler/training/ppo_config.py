"""What a PPO run can be told. JSON-friendly, stored on the run like the other configs.

Defaults follow TRL's PPO (the last release that shipped one, 1.12) and InstructGPT where they
differ for a reason; each non-obvious one says which and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sampler.training.config import Bound, TrainingConfig, setting_label

KL_ESTIMATORS = ("k1", "k3")
VALUE_INITS = ("reward_head", "zeros")


@dataclass
class PPOConfig(TrainingConfig):
    """Policy vs a frozen reward model, with a per-token KL penalty to the frozen start policy.

    Inherited fields keep their meaning where one exists: ``batch_size`` is prompts per rollout
    batch (per process), ``max_length`` the prompt tokens kept (their end), ``epochs`` passes
    over the training prompts and ``max_steps`` (when set) the number of rollout batches.
    ``eval_every`` samples the held-out prompts every N steps.
    """

    # TRL's default; small models tolerate more, large ones want 1e-6..1e-5.
    learning_rate: float = 1e-5
    batch_size: int = 16
    max_length: int = 192
    # No warmup: the first updates are already small (the ratio starts at 1 and is clipped).
    warmup_ratio: float = 0.0
    min_learning_rate_ratio: float = 1.0
    # One curve point per PPO step: steps are few and each is costly.
    log_every: int = 1
    eval_every: int = 10
    checkpoint_every: int = 50

    # ---- rollouts
    # Sampled replies per prompt; >1 spends one prompt encoding on several replies.
    samples_per_prompt: int = 1
    max_new_tokens: int = 48
    # Used for sampling *and* for every log-prob (TRL's 0.7): scoring at another temperature
    # than the one sampled with makes the KL estimate biased, even negative.
    temperature: float = 0.7
    # Subtracted from the score of a reply that never ended its turn (TRL #3750: without it the
    # policy learns to run on to max_new_tokens). 0 turns it off.
    missing_eos_penalty: float = 1.0

    # ---- reward
    # Per-token penalty -kl_coef * KL(policy || reference); TRL 0.05, InstructGPT 0.02.
    kl_coef: float = 0.05
    # k1: log p - log q (unbiased, noisy, can go negative per token); k3: (r - 1) - log r with
    # r = q / p (unbiased, always >= 0, lower variance; Schulman's note on KL approximations).
    kl_estimator: str = "k1"
    # Ziegler et al.'s adaptive controller: moves kl_coef so the KL tracks target_kl.
    adaptive_kl: bool = False
    target_kl: float = 6.0
    kl_horizon: int = 10_000
    # Early stop: a rollout whose mean KL to the reference (nats per reply) passes this ends the
    # run (reward hacking shows as KL running away). 0 turns it off.
    max_kl: float = 20.0
    whiten_rewards: bool = False
    # Held-out prompts sampled at each evaluation (score, KL, length, end-of-turn rate).
    eval_prompts: int = 64

    # ---- PPO update
    ppo_epochs: int = 4
    # Minibatches each rollout batch is split into per PPO epoch.
    minibatches: int = 2
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    # No discount over a reply (InstructGPT, TRL); lam trades bias for variance in GAE.
    gamma: float = 1.0
    lam: float = 0.95
    # "reward_head": the value head starts as the reward model's score head when the hidden
    # sizes match (InstructGPT initialised the value function from the RM), else at zero.
    value_init: str = "reward_head"

    kind: ClassVar[str] = "ppo"
    BOUNDS: ClassVar[dict[str, Bound]] = {
        **TrainingConfig.BOUNDS,
        "samples_per_prompt": Bound(1, 64),
        "max_new_tokens": Bound(1, 4096),
        "temperature": Bound(0.05, 2.0),
        # In reward units, as scores are (TRL's examples use 1): 100 is past any score spread.
        "missing_eos_penalty": Bound(0, 100),
        "kl_coef": Bound(0, 10),
        # Nats per reply: Ziegler et al. aim at 6, and a policy past 1,000 has run away from
        # its reference (max_kl, the early stop, is there for it), so a higher target or limit
        # says nothing more.
        "target_kl": Bound(0, 1000, above=True),
        # Samples over which the controller moves kl_coef (Ziegler et al.: 10,000); at a
        # thousand times that it all but never moves.
        "kl_horizon": Bound(1, 10_000_000),
        "max_kl": Bound(0, 1000),
        "eval_prompts": Bound(1, 100_000),
        "ppo_epochs": Bound(1, 100),
        # No top here: more than a rollout batch's replies is refused by its own sentence.
        "minibatches": Bound(1),
        "cliprange": Bound(0, 10, above=True),
        "cliprange_value": Bound(0, 10, above=True),
        # The value loss's weight (TRL 0.1, InstructGPT's PPO 1 with a shared trunk): past
        # 100 the update is about the value head alone.
        "vf_coef": Bound(0, 100),
        "gamma": Bound(0, 1),
        "lam": Bound(0, 1),
    }

    @property
    def rollout_size(self) -> int:
        return self.batch_size * self.samples_per_prompt

    def validate(self) -> dict[str, str]:
        errors = super().validate()
        if self.gradient_accumulation_steps != 1:
            errors["gradient_accumulation_steps"] = (
                f"PPO splits each rollout batch into {setting_label('minibatches')}; leave this "
                "at 1."
            )
        if self.log_every != 1:
            errors["log_every"] = (
                "PPO records every step (each is a whole rollout); leave this at 1."
            )
        if "kl_coef" not in errors and self.adaptive_kl and self.kl_coef == 0:
            # The controller scales the coefficient: from 0 it would never move.
            errors["kl_coef"] = (
                f"{setting_label('adaptive_kl')} starts from the {setting_label('kl_coef')}: "
                "it must be above 0."
            )
        if self.kl_estimator not in KL_ESTIMATORS:
            errors["kl_estimator"] = f"kl_estimator must be one of {', '.join(KL_ESTIMATORS)}."
        if "minibatches" not in errors and self.minibatches > self.rollout_size:
            # Often met by lowering batch_size alone: say which minibatches, the default's too.
            which = ", the default" if self.minibatches == PPOConfig.minibatches else ""
            batch, samples, minibatches = (
                setting_label(name) for name in ("batch_size", "samples_per_prompt", "minibatches")
            )
            errors["minibatches"] = (
                f"{batch} * {samples} ({self.batch_size} * {self.samples_per_prompt}"
                f" = {self.rollout_size} repl{'y' if self.rollout_size == 1 else 'ies'} a rollout "
                "batch) must be at least the "
                f"{minibatches} ({self.minibatches}{which}): each minibatch takes at least one "
                f"reply; raise the {batch} or the {samples}, or lower the {minibatches}."
            )
        if self.value_init not in VALUE_INITS:
            errors["value_init"] = f"value_init must be one of {', '.join(VALUE_INITS)}."
        return errors
