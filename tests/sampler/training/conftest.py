"""What the training loops' tests share."""

from collections.abc import Callable
from pathlib import Path

import pytest


class TakenOver(Exception):
    """What stops a process that no longer holds its run (taken over after a stall)."""


def stopped_at_its_checkpoint_report_keeps_others(train: Callable, checkpoints: Path) -> None:
    """``train(checkpoint_dir=checkpoints, callback=...)`` is stopped by its first checkpoint's
    report, as a process taken over after a stall learns that it lost its run. It must not
    have removed, before that, a checkpoint another process saved in the same folder: that one
    is left, beside the checkpoint it saved itself."""
    theirs = checkpoints / "step-00000099"
    theirs.mkdir(parents=True)
    (theirs / "trainer_state.json").write_text("{}")

    def taken_over_at_checkpoint(event) -> None:
        if event.kind == "checkpoint":
            raise TakenOver

    with pytest.raises(TakenOver):
        train(checkpoint_dir=checkpoints, callback=taken_over_at_checkpoint)
    assert theirs.is_dir()
    assert len(list(checkpoints.glob("step-*"))) == 2
