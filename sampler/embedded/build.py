"""Build the embedded chat model: tokenizer, GPT-2 weights, generation defaults, all offline.

    python -m sampler.embedded.build --out assets/models/tandem-chitchat-tiny --steps 2500
    python -m sampler.embedded.build --out /tmp/micro --micro

The result loads with stock ``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained(dir)``.
"""

import argparse
import json
import platform
import random
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import tokenizers
import torch
import transformers
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from sampler.embedded.chat_format import render_conversation
from sampler.embedded.config import (
    MICRO_CONVERSATIONS,
    MICRO_SHAPE,
    MICRO_TRAINING,
    SAMPLING_DEFAULTS,
    ModelShape,
    TrainingConfig,
)
from sampler.embedded.data import Conversation, load_conversations
from sampler.embedded.tokenizer import train_tokenizer
from sampler.embedded.training import token_stream, train

BUILD_INFO_FILE = "build_info.json"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def message_texts(conversations: Iterable[Conversation]) -> Iterable[str]:
    # The tokenizer learns merges from message text only; role markers are special tokens.
    for conversation in conversations:
        for message in conversation.messages:
            yield message["content"].strip()


def new_model(
    shape: ModelShape, tokenizer: PreTrainedTokenizerFast, *, seed: int
) -> GPT2LMHeadModel:
    config = GPT2Config(
        # The trainer may stop short of the requested size on a small corpus.
        vocab_size=len(tokenizer),
        n_positions=shape.n_positions,
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        # No dropout: the model sees each token about once or twice, too little to overfit.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(
        **SAMPLING_DEFAULTS,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def parameter_count(model: torch.nn.Module) -> int:
    # `parameters()` yields a tied embedding once, which is also how it is stored.
    return sum(parameter.numel() for parameter in model.parameters())


def save_model(
    model: GPT2LMHeadModel,
    tokenizer: PreTrainedTokenizerFast,
    output_dir: Path,
    *,
    dtype: torch.dtype,
) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.model_max_length = model.config.n_positions
    model.to(dtype).save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)


def write_build_info(output_dir: Path, info: dict) -> None:
    (output_dir / BUILD_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=False) + "\n")


def environment_info() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def build_micro_model(output_dir: Path, *, seed: int = 0) -> Path:
    """A few-second model for tests: real tokenizer and format, barely trained weights.

    Saved in float32 so that tests compare exact generations. Same seed, same weights.
    """
    output_dir = Path(output_dir)
    # Float sums depend on how many threads split them: train on one, whatever the caller uses,
    # so the same seed gives bit-identical weights.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build_micro_model(output_dir, seed=seed)
    finally:
        torch.set_num_threads(threads)


def _build_micro_model(output_dir: Path, *, seed: int) -> Path:
    seed_everything(seed)
    conversations = list(load_conversations("train", seed=seed, limit=MICRO_CONVERSATIONS))
    tokenizer = train_tokenizer(message_texts(conversations), vocab_size=MICRO_SHAPE.vocab_size)
    model = new_model(MICRO_SHAPE, tokenizer, seed=seed)
    stream = token_stream((render_conversation(c.messages) for c in conversations), tokenizer)
    result = train(
        model,
        train_stream=stream,
        validation_stream=None,
        config=MICRO_TRAINING,
        seed=seed,
        progress=False,
    )
    save_model(model, tokenizer, output_dir, dtype=torch.float32)
    write_build_info(
        output_dir,
        {
            "kind": "micro",
            "seed": seed,
            "shape": asdict(MICRO_SHAPE),
            "training": asdict(MICRO_TRAINING),
            "metrics": {"loss/train": result.train_loss, "steps": result.steps},
        },
    )
    return output_dir


def build_default_model(
    output_dir: Path,
    *,
    steps: int,
    seed: int = 0,
    progress: bool = True,
    shape: ModelShape | None = None,
    training: TrainingConfig | None = None,
    command: Sequence[str] | None = None,
) -> dict:
    """Train the shipped default chat model and save it (float32) into ``output_dir``.

    float32, not float16: a float16 checkpoint loads as float16 with dtype "auto", and TRL's
    trainers started from it on CPU fail with "mixed dtype" (or train to NaN).

    Returns the metrics, also written with the full settings to ``build_info.json``.
    ``command`` is recorded as the command line that produced the build (default: sys.argv).
    """
    started = time.monotonic()
    output_dir = Path(output_dir)
    shape = shape or ModelShape()
    training = replace(training or TrainingConfig(), steps=steps)
    seed_everything(seed)

    train_conversations = list(
        load_conversations("train", seed=seed, validation_fraction=training.validation_fraction)
    )
    validation_conversations = list(
        load_conversations(
            "validation", seed=seed, validation_fraction=training.validation_fraction
        )
    )
    tokenizer = train_tokenizer(
        message_texts(train_conversations[: training.tokenizer_conversations]),
        vocab_size=shape.vocab_size,
    )
    train_stream = token_stream(
        (render_conversation(c.messages) for c in train_conversations), tokenizer
    )
    validation_stream = token_stream(
        (render_conversation(c.messages) for c in validation_conversations), tokenizer
    )

    model = new_model(shape, tokenizer, seed=seed)
    result = train(
        model,
        train_stream=train_stream,
        validation_stream=validation_stream,
        config=training,
        seed=seed,
        progress=progress,
    )
    save_model(model, tokenizer, output_dir, dtype=torch.float32)

    metrics = {
        "loss/train": result.train_loss,
        "loss/validation": result.validation_loss,
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "parameters": parameter_count(model),
        "seconds/training": round(result.seconds, 1),
        "seconds/total": round(time.monotonic() - started, 1),
    }
    write_build_info(
        output_dir,
        {
            "kind": "default",
            "command": shlex.join(command if command is not None else sys.argv),
            "arguments": {"steps": steps, "seed": seed, "progress": progress},
            "shape": asdict(shape),
            "training": asdict(training),
            "data": {
                "source": "chitchat_dataset (PyPI package, bundled data)",
                "conversations/train": len(train_conversations),
                "conversations/validation": len(validation_conversations),
                "tokens/train": len(train_stream),
                "tokens/validation": len(validation_stream),
            },
            "metrics": metrics,
            "history": result.history,
            "environment": environment_info(),
        },
    )
    return metrics


# The settings the command line can change (``--n-embd``, ``--learning-rate``, ...).
SHAPE_OPTIONS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
TRAINING_OPTIONS = ("batch_size", "learning_rate", "warmup_steps", "eval_interval")


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sampler.embedded.build", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--steps", type=int, default=TrainingConfig.steps)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--micro", action="store_true", help="build the seconds-long test model")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    for settings, names in ((ModelShape(), SHAPE_OPTIONS), (TrainingConfig(), TRAINING_OPTIONS)):
        for name in names:
            default = getattr(settings, name)
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    arguments = parse_arguments(argv)
    torch.set_num_threads(arguments.threads)
    if arguments.micro:
        print(build_micro_model(arguments.out, seed=arguments.seed))
        return
    shape = ModelShape(**{name: getattr(arguments, name) for name in SHAPE_OPTIONS})
    training = TrainingConfig(
        block_size=arguments.n_positions,
        **{name: getattr(arguments, name) for name in TRAINING_OPTIONS},
    )
    metrics = build_default_model(
        arguments.out,
        steps=arguments.steps,
        seed=arguments.seed,
        progress=not arguments.no_progress,
        shape=shape,
        training=training,
        command=["python", "-m", "sampler.embedded.build", *argv],
    )
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
