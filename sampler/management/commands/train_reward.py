from sampler.management.commands._training import TrainingCommand
from sampler.runs.sources import REWARD_SOURCES


class Command(TrainingCommand):
    help = (
        "Train a reward model on rankings with the K-wise loss (each ranking one batch element) "
        "and register it as a new, inactive reward version. Runs here (or under `accelerate "
        "launch`) or, with --queue, on a worker."
    )
    kind = "reward"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--demonstrations",
            help="Demonstrations JSONL to normalise scores on (default with --data: none; "
            "from the database: the finished conversations). A run from --data that normalises "
            "(the default) needs it.",
        )
        parser.add_argument(
            "--reward-source",
            action="append",
            default=[],
            choices=REWARD_SOURCES,
            help="From the database: rankings (default), red_team (a correction chosen over the "
            "failed reply), feedback (a liked reply chosen over a disliked or reported one to "
            "the same prompt). Repeat to combine.",
        )
