"""Run by ``test_multiprocess_training`` as ``python this.py MODEL OUT`` or under torchrun: the
held-out evaluations of SFT, DPO and KTO on 5 examples in batches of 2 (uneven across two
processes, so Accelerate repeats some), and KTO's reference point on one training batch per
process. The main process writes what it got to OUT (JSON)."""

import json
import os
import sys

import torch

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))

from accelerate.utils import gather_object  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from sampler.training.config import DPOConfig, KTOConfig, SFTConfig  # noqa: E402
from sampler.training.data import SFTCollator, build_sft_data  # noqa: E402
from sampler.training.dpo import DPOTask, build_dpo_data  # noqa: E402
from sampler.training.kto import KTOTask, kto_example  # noqa: E402
from sampler.training.loop import make_accelerator  # noqa: E402
from sampler.training.model import CausalLM, load_policy, load_tokenizer, turn_end_ids  # noqa: E402
from sampler.training.preference import (  # noqa: E402
    PromptCompletionCollator,
    SharedPromptPolicy,
    policy_and_reference,
)
from sampler.training.sft import SFTTask  # noqa: E402
from sampler.training.synthetic import synthetic_demonstrations, synthetic_rankings  # noqa: E402

EXAMPLES = 5
BATCH_SIZE = 2


def _evaluate(accelerator, task, module, examples, collate) -> dict[str, float]:
    loader = DataLoader(examples, batch_size=BATCH_SIZE, shuffle=False, collate_fn=collate)
    prepared, loader = accelerator.prepare(module, loader)
    return task.evaluate(prepared, loader, accelerator)


def _moved(policy: SharedPromptPolicy) -> SharedPromptPolicy:
    """The policy a little away from its reference (the same on every process), so that the
    log-ratios differ from example to example."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    return policy


def main(model_dir: str, out: str) -> None:
    tokenizer = load_tokenizer(model_dir)
    end_ids = turn_end_ids(model_dir, tokenizer)
    pad_id = tokenizer.pad_token_id
    results = {}

    config = SFTConfig(batch_size=BATCH_SIZE, max_length=48)
    accelerator = make_accelerator(config)
    sft = build_sft_data(
        tokenizer,
        synthetic_demonstrations(EXAMPLES, seed=1),
        max_length=48,
        test_fraction=0.0,
        seed=0,
    )
    results["sft"] = _evaluate(
        accelerator,
        SFTTask(),
        CausalLM(load_policy(model_dir)),
        sft.train + sft.test,
        SFTCollator(pad_id=pad_id),
    )

    config = DPOConfig(batch_size=BATCH_SIZE, max_length=48)
    accelerator = make_accelerator(config)
    dpo = build_dpo_data(
        tokenizer,
        synthetic_rankings(EXAMPLES, k=3, seed=4),
        max_length=48,
        test_fraction=0.0,
        seed=0,
        end_ids=end_ids,
    )
    policy, reference = policy_and_reference(model_dir, config)
    task = DPOTask(config, reference)
    task.place_reference(accelerator)
    results["dpo"] = _evaluate(
        accelerator,
        task,
        _moved(policy),
        dpo.train + dpo.test,
        PromptCompletionCollator(pad_id=pad_id),
    )

    config = KTOConfig(batch_size=BATCH_SIZE, max_length=48)
    accelerator = make_accelerator(config)
    rankings = synthetic_rankings(2 * EXAMPLES, k=2, seed=5)
    kto = [
        kto_example(
            tokenizer,
            {
                "prompt": record["prompt"],
                "completion": record["candidates"][index % 2]["text"],
                "label": index % 3 != 0,
            },
            max_length=48,
            end_ids=end_ids,
        )
        for index, record in enumerate(rankings)
    ]
    policy, reference = policy_and_reference(model_dir, config)
    task = KTOTask(config, reference, (1.0, 1.0))
    task.place_reference(accelerator)
    collate = PromptCompletionCollator(pad_id=pad_id, pair_with_next=True, max_length=48)
    policy = _moved(policy)
    results["kto"] = _evaluate(accelerator, task, policy, kto[:EXAMPLES], collate)

    # One training batch of 3 per process: z0 from every process's mismatched pairs.
    prepared = accelerator.prepare(policy)
    loader = accelerator.prepare(DataLoader(kto, batch_size=3, shuffle=False, collate_fn=collate))
    batch = next(iter(loader))
    with torch.no_grad():
        _, reference_point, _ = task.parts(prepared, batch)
        own = task.logratios(prepared, batch)[len(batch["examples"]) :]
    results["kto_z0"] = gather_object(
        [{"z0": reference_point.item(), "own_sum": own.sum().item(), "own_pairs": len(own)}]
    )
    results["processes"] = accelerator.num_processes
    if accelerator.is_main_process:
        with open(out, "w") as handle:
            json.dump(results, handle)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
