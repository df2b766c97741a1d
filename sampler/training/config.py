"""What a training run can be told. Every value is JSON-friendly: the dict is stored on the run.

Defaults suit the small models this project trains on one machine; each non-obvious one says why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from typing import Any, ClassVar

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


# What users call each setting of every kind's config: the label of its field on the Training
# and Models pages, the name its refusals open with (``ConfigError``), and with the option that
# sets it, the name a train_* command's refusal says. (label, help): the help is the field's
# on the pages.
SETTINGS: dict[str, tuple[str, str]] = {
    "learning_rate": ("Learning rate", "The peak of the schedule (warmup, then cosine decay)."),
    "epochs": ("Epochs", "Passes over the training data; Max steps, when set, wins."),
    "max_steps": ("Max steps", "Optimizer steps (PPO: rollout batches); empty: from the epochs."),
    "batch_size": (
        "Batch size",
        "Per process: conversations (SFT), rankings (reward, DPO), examples (KTO), prompts (PPO).",
    ),
    "gradient_accumulation_steps": (
        "Gradient accumulation steps",
        "Batches summed into each optimizer step.",
    ),
    "max_length": ("Max length", "Tokens per sequence; a longer one keeps its end."),
    "warmup_ratio": ("Warmup ratio", "The share of the steps the learning rate warms up over."),
    "min_learning_rate_ratio": (
        "Minimum learning-rate ratio",
        "Where the cosine decay ends, as a share of the learning rate.",
    ),
    "weight_decay": ("Weight decay", "AdamW's decoupled weight decay."),
    "adam_beta1": ("Adam beta 1", "Adam's decay of the gradient's mean."),
    "adam_beta2": ("Adam beta 2", "Adam's decay of the gradient's square."),
    "adam_epsilon": ("Adam epsilon", "Added to Adam's denominator."),
    "gradient_clip": ("Gradient clip", "The most a gradient's norm may be."),
    "eval_every": ("Evaluate every", "Optimizer steps between evaluations (0: only at the end)."),
    "log_every": ("Log every", "Steps averaged into each point of the curves."),
    "checkpoint_every": (
        "Checkpoint every",
        "Optimizer steps between resumable checkpoints (0: none).",
    ),
    "seed": ("Seed", "Seeds the initial weights' noise, the data order and sampling."),
    "mixed_precision": ("Mixed precision", "auto: bf16 on a GPU that has it, else full precision."),
    "test_fraction": (
        "Held-out fraction",
        "Held out, by conversation, to evaluate on (0: no evaluation).",
    ),
    "lora_r": ("LoRA rank", "The rank of LoRA's adapters; 0: every weight is trained."),
    "lora_alpha": ("LoRA alpha", "The adapters' scale is alpha / rank."),
    "lora_dropout": ("LoRA dropout", "Dropout on the adapters' input."),
    "lora_targets": (
        "LoRA target modules",
        "Comma-separated module names; empty: PEFT's default for the architecture.",
    ),
    "origins": (
        "Origins to learn",
        "The assistant turns SFT learns, by who wrote them; none: all (the rest stay context).",
    ),
    "margin_per_rank": (
        "Margin per rank",
        "Added to the score gap a winner must reach, per rank between the two.",
    ),
    "center_rewards_coefficient": (
        "Reward centring coefficient",
        "Keeps scores centred on 0 without shrinking their gaps (0: off).",
    ),
    "normalize_to_demonstrations": (
        "Normalise reward scores to mean 0 on demonstrations",
        "After training, scores are shifted so that demonstrations score 0 on average.",
    ),
    "normalization_samples": (
        "Normalisation samples",
        "Demonstrations scored to shift the scores by.",
    ),
    "tie_weight": (
        "Tie weight",
        "A tied pair's weight against a ranked pair's 1 (0: ties left out).",
    ),
    "data_half": (
        "Conversations trained on",
        "Every conversation, or one half of them (a fixed hash): a reward model trained on the "
        "other half judges independently.",
    ),
    "weight_by_trust": ("Weigh by trust", "Each ranking weighed by its ranker's trust."),
    "beta": ("Beta", "Higher keeps the policy nearer its reference (DPO, KTO)."),
    "mode": (
        "DPO mode",
        "listwise: Plackett-Luce over each ranking; pairwise: every pair it implies.",
    ),
    "loss_type": ("DPO loss", "sigmoid: DPO's; ipo: IPO's squared loss (pairwise only)."),
    "label_smoothing": (
        "Label smoothing",
        "The chance a ranking's order is wrong (cDPO; 0: trust every ranking).",
    ),
    "sources": (
        "KTO learns from",
        "Thumbs up (desirable), thumbs down, reports and flags in rankings (undesirable).",
    ),
    "desirable_ratio": (
        "Desirable ratio",
        "The weight of desirable examples against undesirable ones, by their counts.",
    ),
    "desirable_weight": ("Desirable weight", "Empty: from the desirable ratio."),
    "undesirable_weight": ("Undesirable weight", "The weight of undesirable examples."),
    # PPO's own.
    "samples_per_prompt": ("Samples per prompt", "Replies sampled for each prompt."),
    "max_new_tokens": ("Max new tokens", "The longest reply sampled."),
    "temperature": ("Temperature", "Sampling temperature, used for every log-probability too."),
    "missing_eos_penalty": (
        "Missing end-of-turn penalty",
        "Subtracted from the score of a reply that never ended its turn (0: off).",
    ),
    "kl_coef": ("KL coefficient", "The per-token penalty on the KL to the starting policy."),
    "kl_estimator": ("KL estimator", "k1: log ratio; k3: always positive, less noisy."),
    "adaptive_kl": ("Adaptive KL", "Moves the KL coefficient so the KL tracks the target KL."),
    "target_kl": ("Target KL", "The KL the adaptive controller aims for."),
    "kl_horizon": ("KL horizon", "How fast the adaptive controller moves."),
    "max_kl": (
        "Stop past KL",
        "A rollout whose mean KL to the starting policy passes it ends the run (0: never).",
    ),
    "whiten_rewards": ("Whiten rewards", "Rewards scaled to unit variance in each batch."),
    "eval_prompts": ("Evaluation prompts", "Held-out prompts sampled at each evaluation."),
    "ppo_epochs": ("PPO epochs", "Passes over each rollout batch."),
    "minibatches": ("Minibatches", "Each rollout batch is split into these per PPO epoch."),
    "cliprange": ("Clip range", "How far one update may move a token's probability ratio."),
    "cliprange_value": ("Value clip range", "How far one update may move a value."),
    "vf_coef": ("Value loss coefficient", "The value loss's weight in the PPO loss."),
    "gamma": ("Gamma", "The discount over a reply's tokens."),
    "lam": ("GAE lambda", "Trades bias for variance in the advantage estimate."),
    "value_init": ("Value head start", "reward_head: the reward model's score head; zeros."),
}


def setting_label(name: str) -> str:
    """What users call the setting ``name`` (its own name when it has no label)."""
    return SETTINGS[name][0] if name in SETTINGS else name


def range_refusal(
    name: str, low: float, high: float | None = None, *, above: bool = False, below: bool = False
) -> str:
    """How every door refuses the setting ``name`` out of ``low`` to ``high`` (None: no top),
    by its label: the configs' checks (so the train_* commands) and the bounds of the Training
    and Models pages' fields say the one sentence. ``above``: ``low`` itself is out; ``below``:
    ``high`` is. "Batch size must be between 1 and 4096.", "Beta must be above 0 and at most
    10.", "Learning rate must be above 0 and below 1.", "Eval every cannot be negative.", "LoRA
    alpha must be positive."; numbers as ``number_text`` writes them ("Max steps must be
    between 1 and 10,000,000.")."""
    label, least, most = setting_label(name), number_text(low), number_text(high)
    if high is None:
        if low == 0:
            return f"{label} must be positive." if above else f"{label} cannot be negative."
        return f"{label} must be {'above' if above else 'at least'} {least}."
    if above and below:
        return f"{label} must be above {least} and below {most}."
    if above:
        return f"{label} must be above {least} and at most {most}."
    if below:
        return f"{label} must be at least {least} and below {most}."
    return f"{label} must be between {least} and {most}."


def number_text(value: float | None, *, grouped: bool = True) -> str:
    """``value`` as the pages and the commands write a setting's number: in full, never in
    Python's exponent form ("0.00000001", not "1e-08"; "2.0" stays "2.0"), and unless not
    ``grouped`` (a number to type into a field), grouped by thousands from five digits on
    ("10,000,000"). None: "None"."""
    if value is None:
        return "None"
    # repr is the shortest text that reads back as the same float; Decimal writes it out in full.
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return format(number, ",f" if grouped and abs(number) >= 10_000 else "f")


@dataclass(frozen=True)
class Bound:
    """The range a setting takes: ``low`` to ``high`` (None: no top), both ends included
    unless ``above`` (``low`` itself is out) or ``below`` (``high`` is). One per bounded
    setting, in its config class's ``BOUNDS``: the configs' checks and the pages' fields both
    read it, so they take the same values and refuse the rest in one sentence."""

    low: float
    high: float | None = None
    above: bool = False
    below: bool = False

    def admits(self, value: float) -> bool:
        """Whether ``value`` is in range (NaN never is)."""
        over_low = value > self.low if self.above else value >= self.low
        under_high = self.high is None or (value < self.high if self.below else value <= self.high)
        return over_low and under_high

    def refusal(self, name: str) -> str:
        """The sentence refusing the setting ``name`` out of this range (``range_refusal``)."""
        return range_refusal(name, self.low, self.high, above=self.above, below=self.below)


class ConfigError(ValueError):
    """A bad setting; ``errors`` maps field names to messages meant for users. A message that
    opens with its setting's name opens with its label instead ("batch_size must be ..." is
    said "Batch size must be ..."), so every door says the setting as the pages label it."""

    def __init__(self, errors: dict[str, str]):
        errors = {key: _labelled(key, message) for key, message in errors.items()}
        super().__init__("; ".join(f"{key}: {value}" for key, value in errors.items()))
        self.errors = errors


def _labelled(key: str, message: str) -> str:
    if message.startswith((f"{key} ", f"{key}:")):
        return setting_label(key) + message.removeprefix(key)
    return message


# The most optimizer steps a run takes (PPO: rollout batches): the pages' fields take it too.
MAX_STEPS = 10_000_000

# The most a run holds out (as for exports: ranking.exports.filters.MAX_TEST_FRACTION; this core
# imports nothing of the app).
MAX_TEST_FRACTION = 0.99


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
    # Adam's denominator term: above a gradient's size the step follows the gradient's size,
    # below it its sign alone (the usual 1e-8).
    adam_epsilon: float = 1e-8
    gradient_clip: float = 1.0
    # Evaluate every N optimizer steps (0: only at the end).
    eval_every: int = 50
    # Curves get a training point every N steps (averaged over them), at the first step and
    # at the last.
    log_every: int = 5
    # Keep a resumable checkpoint every N optimizer steps (0: none).
    checkpoint_every: int = 200
    seed: int = 0
    # "auto": bf16 on a GPU that supports it, full precision on CPU.
    mixed_precision: str = "auto"
    # Held-out share for records without a `split` (exports always carry one), by conversation.
    test_fraction: float = 0.1
    # LoRA (PEFT): rank of the adapters, 0 trains every weight. The saved model is merged (it
    # serves as any other); the adapter is kept beside it.
    lora_r: int = 0
    # The adapters' scale is alpha / r; 16 with r 8 is PEFT's and most recipes' starting point.
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    # Comma-separated module names ("c_attn,c_proj", "q_proj,v_proj"); empty: PEFT's default
    # for the architecture (GPT-2: c_attn; Llama: q_proj, v_proj).
    lora_targets: str = ""

    kind: ClassVar[str] = ""
    # Each bounded setting's range: the configs' checks (``validate``) and the pages' fields
    # (sampler.runs.forms) read it. A kind's own settings add theirs in its class.
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "learning_rate": Bound(0, 1, above=True, below=True),
        "epochs": Bound(0, 100, above=True),
        "max_steps": Bound(1, MAX_STEPS),
        "batch_size": Bound(1, 4096),
        "gradient_accumulation_steps": Bound(1, 1024),
        # Fewer tokens leave no room for a prompt and its reply.
        "max_length": Bound(8, 131072),
        "warmup_ratio": Bound(0, 1, below=True),
        "min_learning_rate_ratio": Bound(0, 1),
        # AdamW shrinks each weight by learning_rate * weight_decay a step: recipes use 0 to
        # 0.1 (TRL 0, Llama 0.1); at 1 and a learning rate near 1 a weight is all but zeroed.
        "weight_decay": Bound(0, 1),
        # Recipes clip the gradient's norm at 1 (TRL, InstructGPT); a norm past 1,000 is a run
        # that has diverged, so a larger limit clips nothing more.
        "gradient_clip": Bound(0, 1000, above=True),
        # torch's AdamW refuses a beta of 1 or more.
        "adam_beta1": Bound(0, 1, below=True),
        "adam_beta2": Bound(0, 1, below=True),
        # The usual 1e-8 (1e-6 in some recipes); at 1 a step no longer follows the gradient's
        # scale, past it Adam is plain SGD with a smaller learning rate.
        "adam_epsilon": Bound(0, 1, above=True),
        # Every N steps: past the most steps a run takes, never (0 and 1 say that already).
        "eval_every": Bound(0, MAX_STEPS),
        "log_every": Bound(1, MAX_STEPS),
        "checkpoint_every": Bound(0, MAX_STEPS),
        # The seed of numpy's generator too, which takes 0 to 2**32 - 1.
        "seed": Bound(0, 2**32 - 1),
        "test_fraction": Bound(0, MAX_TEST_FRACTION),
        "lora_r": Bound(0, 1024),
        # The adapters' scale is alpha / r: recipes use alpha = r to 2r (PEFT's 16 with r 8),
        # so twice lora_r's top is room for any of them; a huge one scales the update to inf.
        "lora_alpha": Bound(0, 2048, above=True),
        "lora_dropout": Bound(0, 1, below=True),
    }

    def validate(self) -> dict[str, str]:
        # Said as such rather than as out of range: inf passes a range with no top (an inf
        # lora_alpha), and a NaN is no number to place in one.
        errors: dict[str, str] = {
            setting.name: f"{setting.name} must be a finite number."
            for setting in fields(self)
            if isinstance(value := getattr(self, setting.name), float) and not math.isfinite(value)
        }
        for name, bound in self.BOUNDS.items():
            value = getattr(self, name)
            # None: the setting is off (max_steps: from the epochs), which every range takes.
            if value is not None and name not in errors and not bound.admits(value):
                errors[name] = bound.refusal(name)
        if self.mixed_precision not in MIXED_PRECISION:
            errors["mixed_precision"] = (
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}."
            )
        if any(
            not name.replace("_", "").replace(".", "").isalnum()
            for name in _names(self.lora_targets)
        ):
            errors["lora_targets"] = "lora_targets: module names separated by commas."
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


# How a form or a command line says yes or no.
YES_WORDS = frozenset({"1", "true", "yes", "on"})
NO_WORDS = frozenset({"0", "false", "no", "off"})


def _coerce(value: Any, annotation: str, default: Any) -> Any:
    # Annotations are strings (postponed evaluation); the default's type says what to build.
    if "bool" in annotation:
        if isinstance(value, bool):
            return value
        word = value.strip().lower() if isinstance(value, str) else None
        if word in YES_WORDS or word in NO_WORDS:
            return word in YES_WORDS
        raise ValueError(value)  # "maybe" or 2 is not a yes or a no: never read as False
    if annotation.startswith("int") or isinstance(default, int):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    if annotation.startswith("float") or isinstance(default, float):
        return float(value)
    return str(value)


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


# Who wrote an assistant turn (the demonstrations export's `origins`).
ORIGINS = ("human", "model", "model_edited")


@dataclass
class SFTConfig(TrainingConfig):
    """Supervised fine-tuning on demonstrations; loss on assistant tokens only."""

    # Higher than the RM's: small chat models move little at 1e-5 in one epoch.
    learning_rate: float = 1e-4
    epochs: float = 2.0
    # Comma-separated origins of the assistant turns to learn from (human: written by hand;
    # model: an accepted suggestion; model_edited: an edited one); empty: all. The others stay
    # in the context.
    origins: str = field(
        default="",
        metadata={
            "help": "comma-separated origins of the assistant turns to learn (human, model, "
            "model_edited; default: all), as --origin repeated"
        },
    )

    kind: ClassVar[str] = "sft"

    @property
    def learn_origins(self) -> tuple[str, ...]:
        return tuple(_names(self.origins))

    def validate(self) -> dict[str, str]:
        errors = super().validate()
        unknown = set(self.learn_origins) - set(ORIGINS)
        if unknown:
            errors["origins"] = f"origins must be among {', '.join(ORIGINS)}."
        return errors


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
    # Weight of each tied pair (label 1/2: the two scores pulled together) against a ranked
    # pair's 1; 0 drops ties as InstructGPT did.
    tie_weight: float = 1.0
    # "first" or "second": train on one half of the conversations only (a fixed hash, the same
    # in every run), so that a reward model trained on the other half judges independently of
    # it; "all": every conversation.
    data_half: str = "all"
    # Weigh each ranking by its ranker's trust (the export's trust_weight) in the loss.
    weight_by_trust: bool = False

    kind: ClassVar[str] = "reward"
    BOUNDS: ClassVar[dict[str, Bound]] = {
        **TrainingConfig.BOUNDS,
        # In reward units, times the ranks between two replies: Llama 2's margins go up to 1
        # and scores spread over a few units; a huge margin makes the loss inf at step 1.
        "margin_per_rank": Bound(0, 100),
        # TRL suggests 0.01 (the squared mean reward's weight): past 10 the loss is about the
        # rewards' mean, not their order; a huge one makes it inf.
        "center_rewards_coefficient": Bound(0, 10),
        # Records scored to set the reward's mean and spread: a million is past any estimate's
        # need, and each is held in memory as it is read.
        "normalization_samples": Bound(1, 1_000_000),
        # A tied pair's weight against a ranked pair's 1 (as KTO's weights, up to 100).
        "tie_weight": Bound(0, 100),
    }

    def validate(self) -> dict[str, str]:
        errors = super().validate()
        if self.data_half not in DATA_HALVES:
            errors["data_half"] = f"data_half must be one of {', '.join(DATA_HALVES)}."
        return errors


DATA_HALVES = ("all", "first", "second")
DPO_MODES = ("listwise", "pairwise")
DPO_LOSSES = ("sigmoid", "ipo")
KTO_SOURCES = ("thumbs_up", "thumbs_down", "reports", "flags")
# DPO's and KTO's beta: one field of the Training page sets either.
BETA = Bound(0, 10, above=True)


@dataclass
class DPOConfig(TrainingConfig):
    """DPO from rankings; the reference is the starting (parent) version, frozen."""

    # TRL uses 1e-6 for 7B models; models this small barely move below 1e-5.
    learning_rate: float = 2e-5
    # Rankings per step; each carries K candidates and one shared prompt pass.
    batch_size: int = 4
    # The usual DPO temperature: higher keeps the policy nearer the reference.
    beta: float = 0.1
    # listwise: Plackett-Luce over the whole ranking (tied groups unordered); pairwise: the mean
    # of DPO's pair loss over every pair the ranking implies (ties give none).
    mode: str = "listwise"
    # sigmoid: DPO; ipo: IPO's squared loss (pairwise only).
    loss_type: str = "sigmoid"
    # cDPO: the probability that a label is flipped (0: trust every ranking).
    label_smoothing: float = 0.0
    # Weigh each ranking by its ranker's trust (the export's trust_weight) in the loss.
    weight_by_trust: bool = False

    kind: ClassVar[str] = "dpo"
    BOUNDS: ClassVar[dict[str, Bound]] = {
        **TrainingConfig.BOUNDS,
        "beta": BETA,
        # cDPO's flip probability: at 0.5 a ranking says nothing.
        "label_smoothing": Bound(0, 0.5, below=True),
    }

    def validate(self) -> dict[str, str]:
        errors = super().validate()
        if self.mode not in DPO_MODES:
            errors["mode"] = f"mode must be one of {', '.join(DPO_MODES)}."
        if self.loss_type not in DPO_LOSSES:
            errors["loss_type"] = f"loss_type must be one of {', '.join(DPO_LOSSES)}."
        elif self.loss_type == "ipo" and self.mode != "pairwise":
            errors["loss_type"] = (
                f"IPO is a pairwise loss: use it with {setting_label('mode')} pairwise."
            )
        if "label_smoothing" not in errors and self.label_smoothing and self.loss_type == "ipo":
            errors["label_smoothing"] = "label_smoothing applies to the sigmoid loss only."
        return errors


@dataclass
class KTOConfig(TrainingConfig):
    """KTO from single replies marked desirable or undesirable; the reference is the starting
    version, frozen."""

    learning_rate: float = 2e-5
    # Examples per step; the KL reference point pairs each prompt with another example's
    # reply, so a step needs at least two.
    batch_size: int = 8
    beta: float = 0.1
    # Comma-separated: thumbs_up (desirable), thumbs_down and reports (undesirable) from
    # feedback; flags (harmful or untruthful in a ranking: undesirable).
    sources: str = "thumbs_up,thumbs_down,reports,flags"
    # lambda_D * n_D / (lambda_U * n_U): the KTO paper keeps it in [1, 4/3]; lambda_U is 1 and
    # lambda_D follows from the counts unless desirable_weight is set.
    desirable_ratio: float = 1.0
    desirable_weight: float | None = None
    undesirable_weight: float = 1.0

    kind: ClassVar[str] = "kto"
    BOUNDS: ClassVar[dict[str, Bound]] = {
        **TrainingConfig.BOUNDS,
        "beta": BETA,
        "desirable_ratio": Bound(0.1, 10),
        # None (desirable_weight: from the ratio) is not checked.
        "desirable_weight": Bound(0, 100, above=True),
        "undesirable_weight": Bound(0, 100, above=True),
    }

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(_names(self.sources))

    def validate(self) -> dict[str, str]:
        errors = super().validate()
        if self.batch_size < 2:
            errors["batch_size"] = "KTO needs at least 2 examples per step (its KL estimate)."
        names = self.source_names
        if not names or set(names) - set(KTO_SOURCES):
            errors["sources"] = f"sources: one or more of {', '.join(KTO_SOURCES)}."
        return errors


CONFIGS: dict[str, type[TrainingConfig]] = {
    "sft": SFTConfig,
    "reward": RewardConfig,
    "dpo": DPOConfig,
    "kto": KTOConfig,
}
