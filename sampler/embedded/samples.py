"""Sample replies from a built model and write them, with its losses, to ``SAMPLES.md``.

Usage: ``python -m sampler.embedded.samples assets/models/tandem-chitchat-tiny``.
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sampler.embedded.build import BUILD_INFO_FILE

SAMPLES_FILE = "SAMPLES.md"

PROMPTS = (
    "hi! how was your weekend?",
    "what do you like to do for fun?",
    "I just got a new puppy!",
    "what's your favorite movie?",
    "I'm so tired today, work was crazy.",
)


def sample_replies(
    model_dir: Path, prompts: Sequence[str], *, samples_per_prompt: int, seed: int
) -> list[tuple[str, list[str]]]:
    """Replies drawn with the model's own generation defaults, stopping at end of turn."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # float32 whatever the stored dtype (older builds stored float16).
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    results = []
    for index, prompt in enumerate(prompts):
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        torch.manual_seed(seed + index)
        with torch.no_grad():
            output = model.generate(**inputs, num_return_sequences=samples_per_prompt)
        prompt_length = inputs["input_ids"].shape[1]
        replies = [
            tokenizer.decode(sequence[prompt_length:], skip_special_tokens=True).strip()
            for sequence in output
        ]
        results.append((prompt, replies))
    return results


def samples_markdown(model_dir: Path, results: list[tuple[str, list[str]]], *, seed: int) -> str:
    info = json.loads((model_dir / BUILD_INFO_FILE).read_text())
    metrics = info["metrics"]
    generation = json.loads((model_dir / "generation_config.json").read_text())
    lines = [
        f"# Samples: {model_dir.name}",
        "",
        f"Built with `{info.get('command', '?')}`: {metrics['parameters']:,} parameters, "
        f"{metrics['steps']:,} steps, {metrics['tokens_seen']:,} tokens seen, "
        f"{metrics['seconds/total'] / 60:.0f} min on one CPU thread.",
        "",
        f"- train loss (mean of the last 50 steps): {metrics['loss/train']:.3f}",
        f"- validation loss (all held-out conversations): {metrics['loss/validation']:.3f}",
        "",
        "Sampling: the model's `generation_config.json` "
        f"(temperature {generation.get('temperature')}, top_p {generation.get('top_p')}, "
        f"max_new_tokens {generation.get('max_new_tokens')}), one user turn rendered with the "
        f"chat template and `add_generation_prompt=True`, stopping at `<|end|>`, "
        f"`torch.manual_seed({seed} + prompt index)`. Regenerate with "
        f"`python -m sampler.embedded.samples {model_dir}`.",
        "",
    ]
    for prompt, replies in results:
        lines.append(f"**user:** {prompt}")
        lines.append("")
        lines.extend(f"- **assistant:** {reply}" for reply in replies)
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sampler.embedded.samples")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--samples-per-prompt", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = sample_replies(
        arguments.model_dir,
        PROMPTS,
        samples_per_prompt=arguments.samples_per_prompt,
        seed=arguments.seed,
    )
    text = samples_markdown(arguments.model_dir, results, seed=arguments.seed)
    (arguments.model_dir / SAMPLES_FILE).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
