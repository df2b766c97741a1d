from sampler.management.commands._training import TrainingCommand


class Command(TrainingCommand):
    help = (
        "DPO from rankings: listwise (Plackett-Luce over each ranking, ties as unordered groups) "
        "or pairwise (every implied pair; --loss-type ipo for IPO), against the starting "
        "version as the frozen reference; registers the new policy as an inactive version. "
        "Runs here or, with --queue, on a worker."
    )
    kind = "dpo"
