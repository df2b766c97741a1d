from sampler.management.commands._training import TrainingCommand


class Command(TrainingCommand):
    help = (
        "Fine-tune a policy on demonstrations (loss on assistant tokens only) and register it as "
        "a new, inactive policy version. Runs here (try `accelerate launch manage.py train_sft` "
        "on several GPUs) or, with --queue, on a worker."
    )
    kind = "sft"
