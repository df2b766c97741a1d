"""Generation backends side by side on the embedded model, in one process (no Django).

Usage: .venv/bin/python bench/bench_generation.py [--model DIR] [--max-new-tokens 48]
       [--repeats 3] [--threads 1] [--backends transformers,vllm]
(.venv-vllm/bin/python for the vllm backend: `make bench-generation` picks it when built.)

(a) K = 4 and 8 alternatives of one prefix: one call with n=K vs K sequential calls of n=1,
    per backend; generated tokens/s and the ratio.
(b) 16 jobs of K = 4 arriving together (16 different prefixes): one job at a time vs all of
    them in one ``generate_many`` call (the transformers backend batches them; vLLM batches
    continuously); tokens/s and the ratio.
Every figure is the median of ``--repeats`` runs, both ways interleaved, same seeds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sampler.generation.backends import GenerationRequest, backend_get, backends_clear  # noqa: E402
from sampler.generation.params import GenerationParams  # noqa: E402

EMBEDDED = ROOT / "assets" / "models" / "tandem-chitchat-tiny"
PREFIX = [
    {"role": "user", "content": "hi! how was your weekend?"},
    {"role": "assistant", "content": "it was great, i went hiking with my sister. how about you?"},
    {"role": "user", "content": "nice! i mostly stayed home and read. do you like books?"},
]
OPENERS = [
    "hi! how was your weekend?", "what are you cooking tonight?", "do you have any pets?",
    "where did you grow up?", "what music do you like?", "any plans for the summer?",
    "how is work going?", "have you seen a good movie lately?", "do you like the rain?",
    "what did you have for breakfast?", "are you a morning person?", "what's your hobby?",
    "do you play any sports?", "where would you like to travel?", "how was school today?",
    "what's the best book you read this year?",
]  # fmt: skip


def _tokens(results) -> int:
    return sum(c.token_count for result in results for c in result.completions)


def _rate(call) -> float:
    started = time.perf_counter()
    results = call()
    return _tokens(results) / (time.perf_counter() - started)


def part_a(backend, params, repeats) -> dict[int, tuple[float, float]]:
    figures = {}
    for k in (4, 8):
        together, one_by_one = [], []
        for repeat in range(repeats):
            seed = 1000 * repeat

            def batched(k=k, seed=seed):
                return [backend.generate(GenerationRequest(PREFIX, k, params, seed))]

            def sequential(k=k, seed=seed):
                return [
                    backend.generate(GenerationRequest(PREFIX, 1, params, seed + index))
                    for index in range(k)
                ]

            together.append(_rate(batched))
            one_by_one.append(_rate(sequential))
        figures[k] = (statistics.median(together), statistics.median(one_by_one))
    return figures


def part_b(backend, params, repeats, jobs=16, k=4) -> tuple[float, float]:
    together, one_by_one = [], []
    for repeat in range(repeats):
        requests = [
            GenerationRequest([{"role": "user", "content": opener}], k, params, 1000 * repeat + i)
            for i, opener in enumerate(OPENERS[:jobs])
        ]
        together.append(_rate(lambda requests=requests: backend.generate_many(requests)))
        one_by_one.append(_rate(lambda requests=requests: [backend.generate(r) for r in requests]))
    return statistics.median(together), statistics.median(one_by_one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(EMBEDDED) if EMBEDDED.exists() else "")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("TORCH_THREADS", 1)))
    parser.add_argument("--backends", default="transformers,vllm")
    parser.add_argument("--device", default="auto")
    arguments = parser.parse_args()

    import torch

    torch.set_num_threads(arguments.threads)
    model_dir = arguments.model
    if not model_dir:
        from sampler.embedded.build import build_micro_model

        model_dir = str(build_micro_model(Path(tempfile.mkdtemp()) / "micro", seed=0))
    params = GenerationParams(max_new_tokens=arguments.max_new_tokens)
    device = "cuda" if torch.cuda.is_available() and arguments.device == "auto" else "cpu"
    print(f"model {model_dir}, device {device}, {torch.get_num_threads()} torch threads")
    print(f"max_new_tokens {params.max_new_tokens}, repeats {arguments.repeats} (median)")

    results: dict[str, dict] = {}
    for name in arguments.backends.split(","):
        if name == "vllm":
            try:
                import vllm  # noqa: F401
            except ImportError:
                print("vllm: not installed here (run with .venv-vllm/bin/python)")
                continue
        options = {}
        started = time.perf_counter()
        backend = backend_get(backend=name, path=model_dir, options=options, device=device)
        backend.generate(GenerationRequest(PREFIX, 2, params, 0))  # warm-up: one-off costs
        print(f"{name}: loaded and warmed up in {time.perf_counter() - started:.1f} s")
        results[name] = {
            "a": part_a(backend, params, arguments.repeats),
            "b": part_b(backend, params, arguments.repeats),
        }
        backends_clear()

    print("\n(a) K alternatives of one prefix: tokens/s, one call of n=K vs K calls of n=1")
    print(f"{'backend':<13} {'K':>2} {'n=K tok/s':>10} {'K calls tok/s':>14} {'ratio':>7}")
    for name, figures in results.items():
        for k, (together, one_by_one) in figures["a"].items():
            print(
                f"{name:<13} {k:>2} {together:>10.1f} {one_by_one:>14.1f} "
                f"{together / one_by_one:>6.2f}x"
            )
    print("\n(b) 16 jobs of K=4 arriving together: tokens/s, one batch vs one job at a time")
    print(f"{'backend':<13} {'batch tok/s':>12} {'one at a time':>14} {'ratio':>7}")
    for name, figures in results.items():
        together, one_by_one = figures["b"]
        print(f"{name:<13} {together:>12.1f} {one_by_one:>14.1f} {together / one_by_one:>6.2f}x")
    if {"transformers", "vllm"} <= set(results):
        print("\nvllm / transformers (same work, same process):")
        for k in (4, 8):
            ratio = results["vllm"]["a"][k][0] / results["transformers"]["a"][k][0]
            print(f"  (a) K={k}, one call: {ratio:.2f}x")
        ratio = results["vllm"]["b"][0] / results["transformers"]["b"][0]
        print(f"  (b) 16 jobs in one batch: {ratio:.2f}x")


if __name__ == "__main__":
    main()
