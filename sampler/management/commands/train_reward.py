from sampler.management.commands._training import TrainingCommand


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
            "from the database: the finished conversations).",
        )
