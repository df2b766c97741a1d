"""K alternatives of one prefix: one batched call vs K sequential calls, side by side.

Usage: .venv/bin/python bench/bench_sampling.py [--model DIR] [--max-new-tokens 48] [--repeats 3]

Prints generated tokens/s for both ways at K = 2, 4, 8 and the ratio batched/sequential.
Both ways use the same model, prefix, parameters and seeds, in one process, interleaved.

Two more columns explain the ratio. ``ceiling``: a batched call lasts as long as its longest
reply, so even if a step cost the same for K rows as for one, the ratio could not pass
sum(lengths) / max(lengths). ``equal-len``: the same comparison with every row running the full
``max_new_tokens`` (end of turn ignored), which measures batching alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sampler.generation.sampling import (  # noqa: E402
    GenerationParams,
    load_model,
    prepare_prompt,
    sample_completions,
    sample_rows,
)

EMBEDDED = ROOT / "assets" / "models" / "tandem-chitchat-tiny"
PREFIX = [
    {"role": "user", "content": "hi! how was your weekend?"},
    {"role": "assistant", "content": "it was great, i went hiking with my sister. how about you?"},
    {"role": "user", "content": "nice! i mostly stayed home and read. do you like books?"},
]


def timed(function) -> tuple[float, int]:
    started = time.perf_counter()
    completions = function()
    return time.perf_counter() - started, sum(c.token_count for c in completions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(EMBEDDED) if EMBEDDED.exists() else "")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)

    model_dir = arguments.model
    if not model_dir:
        from sampler.embedded.build import build_micro_model

        model_dir = str(build_micro_model(Path(tempfile.mkdtemp()) / "micro", seed=0))
    loaded = load_model(model_dir, device="auto")
    params = GenerationParams(max_new_tokens=arguments.max_new_tokens)
    print(f"model {model_dir} on {loaded.device}, {torch.get_num_threads()} threads")
    print(f"max_new_tokens {params.max_new_tokens}, repeats {arguments.repeats} (median)")
    print(
        f"{'K':>3} {'batched tok/s':>14} {'sequential tok/s':>17} {'ratio':>7} {'ceiling':>8} "
        f"{'equal-len':>10}"
    )
    prompt_ids = prepare_prompt(
        loaded, PREFIX, role="assistant", max_new_tokens=params.max_new_tokens
    ).input_ids

    def equal_length(k: int, seed: int) -> tuple[float, int]:
        started = time.perf_counter()
        rows = sample_rows(
            loaded.model,
            prompt_ids,
            n=k,
            params=params,
            end_token_ids=[-1],  # no token ends a row: every row runs max_new_tokens
            generator=torch.Generator(device=loaded.device).manual_seed(seed),
        )
        return time.perf_counter() - started, sum(len(tokens) for tokens, _ in rows)

    def batched(k: int, seed: int):
        return sample_completions(loaded, PREFIX, n=k, params=params, seed=seed)[0]

    def sequential(k: int, seed: int):
        out = []
        for index in range(k):
            out += sample_completions(loaded, PREFIX, n=1, params=params, seed=seed + index)[0]
        return out

    batched(2, 0)  # warm-up: first call pays one-off costs
    for k in (2, 4, 8):
        batched_rates, sequential_rates, ceilings, equal_ratios = [], [], [], []
        for repeat in range(arguments.repeats):
            started = time.perf_counter()
            completions = batched(k, 1000 * repeat)
            seconds = time.perf_counter() - started
            lengths = [c.token_count for c in completions]
            batched_rates.append(sum(lengths) / seconds)
            ceilings.append(sum(lengths) / max(lengths))
            seconds, tokens = timed(lambda k=k, r=repeat: sequential(k, 1000 * r))
            sequential_rates.append(tokens / seconds)
            together = equal_length(k, repeat)
            alone = [equal_length(1, 100 * repeat + index) for index in range(k)]
            equal_ratios.append(
                (together[1] / together[0]) / (sum(n for _, n in alone) / sum(t for t, _ in alone))
            )
        fast, slow = statistics.median(batched_rates), statistics.median(sequential_rates)
        print(
            f"{k:>3} {fast:>14.1f} {slow:>17.1f} {fast / slow:>6.2f}x "
            f"{statistics.median(ceilings):>7.2f}x {statistics.median(equal_ratios):>9.2f}x"
        )


if __name__ == "__main__":
    main()
