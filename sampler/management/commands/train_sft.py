from sampler.management.commands._training import TrainingCommand
from sampler.training.config import ORIGINS


class Command(TrainingCommand):
    help = (
        "Fine-tune a policy on demonstrations (loss on assistant tokens only) and register it as "
        "a new, inactive policy version. Runs here (try `accelerate launch manage.py train_sft` "
        "on several GPUs) or, with --queue, on a worker."
    )
    kind = "sft"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--origin",
            action="append",
            default=[],
            choices=ORIGINS,
            help="Learn only assistant turns of this origin (human: written by hand; model: an "
            "accepted suggestion; model_edited: an edited one); the others stay as context. "
            "Repeat to combine (default: all).",
        )
