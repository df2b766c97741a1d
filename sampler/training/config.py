"""What a training run can be told. Every value is JSON-friendly: the dict is stored on the run.

Defaults suit the small models this project trains on one machine; each non-obvious one says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


class ConfigError(ValueError):
    """A bad setting; ``errors`` maps field names to messages meant for users."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{key}: {value}" for key, value in errors.items()))
        self.errors = errors


@dataclass
class TrainingConfig:
    """Settings both kinds of run share."""

    learning_rate: float = 5e-5
    # Passes over the training data; `max_steps` (optimizer steps), when set, wins.
    epochs: float = 1.0
    max_steps: int | None = None
    # Per process, in batch elements: conversations for SFT, rankings for the reward model.
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    # Tokens per sequence; longer ones keep their end (the reply being trained or scored).
    max_length: int = 256
    # Of the optimizer steps; 3% is the usual choice in InstructGPT-style fine-tuning.
    warmup_ratio: float = 0.03
    # Cosine decay floor as a share of the peak learning rate.
    min_learning_rate_ratio: float = 0.1
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    gradient_clip: float = 1.0
    # Evaluate every N optimizer steps (0: only at the end).
    eval_every: int = 50
    # Curves get a training point every N steps (averaged over them).
    log_every: int = 5
    # Keep a resumable checkpoint every N optimizer steps (0: none).
    checkpoint_every: int = 200
    seed: int = 0
    # "auto": bf16 on a GPU that supports it, full precision on CPU.
    mixed_precision: str = "auto"
    # Held-out share for records without a `split` (exports always carry one), by conversation.
    test_fraction: float = 0.1

    kind: ClassVar[str] = ""

    def validate(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        if not 0 < self.learning_rate < 1:
            errors["learning_rate"] = "learning_rate must be between 0 and 1."
        if not 0 < self.epochs <= 100:
            errors["epochs"] = "epochs must be above 0 and at most 100."
        if self.max_steps is not None and not 1 <= self.max_steps <= 10_000_000:
            errors["max_steps"] = "max_steps must be a positive number of steps."
        for name, top in (
            ("batch_size", 4096),
            ("gradient_accumulation_steps", 1024),
            ("max_length", 131072),
        ):
            if not 1 <= getattr(self, name) <= top:
                errors[name] = f"{name} must be between 1 and {top}."
        if self.max_length < 8:
            errors["max_length"] = "max_length must be at least 8 tokens."
        if not 0 <= self.warmup_ratio < 1:
            errors["warmup_ratio"] = "warmup_ratio must be at least 0 and below 1."
        if not 0 <= self.min_learning_rate_ratio <= 1:
            errors["min_learning_rate_ratio"] = "min_learning_rate_ratio must be between 0 and 1."
        if self.weight_decay < 0:
            errors["weight_decay"] = "weight_decay cannot be negative."
        if self.gradient_clip <= 0:
            errors["gradient_clip"] = "gradient_clip must be positive."
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                errors[name] = f"{name} cannot be negative."
        if self.log_every < 1:
            errors["log_every"] = "log_every must be at least 1."
        if self.mixed_precision not in MIXED_PRECISION:
            errors["mixed_precision"] = (
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}."
            )
        if not 0 <= self.test_fraction < 1:
            errors["test_fraction"] = "test_fraction must be at least 0 and below 1."
        return errors

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrainingConfig:
        """Build and validate; unknown keys and bad values raise ``ConfigError``."""
        values = {key: value for key, value in (values or {}).items() if value is not None}
        known = {field.name: field for field in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError({"config": f"Unknown settings: {', '.join(unknown)}."})
        typed: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, value in values.items():
            default = getattr(cls, name, None)
            try:
                typed[name] = _coerce(value, known[name].type, default)
            except (TypeError, ValueError):
                errors[name] = f"{name} has the wrong type ({value!r})."
        if errors:
            raise ConfigError(errors)
        config = cls(**typed)
        errors = config.validate()
        if errors:
            raise ConfigError(errors)
        return config


def _coerce(value: Any, annotation: str, default: Any) -> Any:
    # Annotations are strings (postponed evaluation); the default's type says what to build.
    if "bool" in annotation:
        if isinstance(value, str):
            return value.strip().lower() in {"1", "true", "yes", "on"}
        return bool(value)
    if annotation.startswith("int") or isinstance(default, int):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    if annotation.startswith("float") or isinstance(default, float):
        return float(value)
    return str(value)


@dataclass
class SFTConfig(TrainingConfig):
    """Supervised fine-tuning on demonstrations; loss on assistant tokens only."""

    # Higher than the RM's: small chat models move little at 1e-5 in one epoch.
    learning_rate: float = 1e-4
    epochs: float = 2.0

    kind: ClassVar[str] = "sft"


@dataclass
class RewardConfig(TrainingConfig):
    """InstructGPT's K-wise reward model; one ranking (all its candidates) per batch element."""

    # One epoch: InstructGPT saw the RM overfit after one pass over the comparisons.
    epochs: float = 1.0
    # Rankings per step; each carries K candidates, so a step scores batch_size * K sequences.
    batch_size: int = 4
    learning_rate: float = 2e-5
    # Added to the score gap a winner must reach, per rank between the two (0: no margin).
    margin_per_rank: float = 0.0
    # TRL's center_rewards_coefficient (0.01 recommended there): penalises (r_w + r_l)**2 per
    # pair so scores stay centred on zero without shrinking the gaps; 0 turns it off.
    center_rewards_coefficient: float = 0.0
    # After training, shift scores so that demonstrations score mean 0 (InstructGPT, before RL).
    normalize_to_demonstrations: bool = True
    # Demonstrations scored for that shift; the mean settles long before thousands.
    normalization_samples: int = 1000

    kind: ClassVar[str] = "reward"

    def validate(self) -> dict[str, str]:
        errors = super().validate()
        if self.margin_per_rank < 0:
            errors["margin_per_rank"] = "margin_per_rank cannot be negative."
        if self.center_rewards_coefficient < 0:
            errors["center_rewards_coefficient"] = "center_rewards_coefficient cannot be negative."
        if self.normalization_samples < 1:
            errors["normalization_samples"] = "normalization_samples must be at least 1."
        return errors


CONFIGS: dict[str, type[TrainingConfig]] = {"sft": SFTConfig, "reward": RewardConfig}
