"""Shapes and training settings of the embedded chat model: the shipped default and a micro one."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    # 4,096 merges cover chit-chat well (~3.5M tokens for the whole dataset) while the tied
    # embedding stays a quarter of the parameters.
    vocab_size: int = 4096
    # The context the model is trained on. Callers must keep prompt + reply within it.
    n_positions: int = 256
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 4


@dataclass(frozen=True)
class TrainingConfig:
    steps: int = 2000
    batch_size: int = 8
    # Equal to ModelShape.n_positions: positions never seen in training would be random.
    block_size: int = 256
    # Small models tolerate (and, in a short budget, need) a high learning rate.
    learning_rate: float = 2e-3
    min_learning_rate_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    # 0.95 rather than 0.999: the second moment adapts faster, the usual choice for small GPTs.
    adam_beta2: float = 0.95
    gradient_clip: float = 1.0
    eval_interval: int = 250
    eval_batches: int = 20
    # Share of conversations held out, chosen by a seeded hash of their id.
    validation_fraction: float = 0.05
    # Conversations the tokenizer is trained on (None: all of the train split).
    tokenizer_conversations: int | None = None


# The micro model exists for tests: it must build in a couple of seconds and only has to behave
# like a real model (load, template, generate), not to talk.
MICRO_SHAPE = ModelShape(vocab_size=512, n_positions=256, n_embd=32, n_layer=2, n_head=2)
MICRO_TRAINING = TrainingConfig(
    steps=10,
    batch_size=4,
    block_size=64,
    learning_rate=1e-2,
    warmup_steps=2,
    eval_interval=0,
    tokenizer_conversations=300,
)
MICRO_CONVERSATIONS = 300


# Sampling defaults written to generation_config.json.
SAMPLING_DEFAULTS = {
    "do_sample": True,
    "temperature": 0.8,
    "top_p": 0.9,
    "max_new_tokens": 64,
}
