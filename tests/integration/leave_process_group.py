"""Run by ``test_multiprocess_training`` under torchrun: joins the training processes' group
with ``process_state`` and, at exit (after the hooks registered later have run), prints
whether the process group is still there."""

import atexit

import torch


def _report() -> None:
    print(f"process group left: {not torch.distributed.is_initialized()}", flush=True)


atexit.register(_report)  # registered first, so it runs last

from sampler.training.loop import process_state  # noqa: E402

state = process_state()
print(f"process {state.process_index} of {state.num_processes}", flush=True)
