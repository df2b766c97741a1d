from sampler.management.commands._training import TrainingCommand


class Command(TrainingCommand):
    help = (
        "KTO from replies marked good or bad: thumbs up (desirable), thumbs down and reports "
        "(undesirable) from feedback, and replies a ranking flagged harmful or untruthful "
        "(undesirable); --sources picks them. The starting version is the frozen reference; "
        "registers the new policy as an inactive version. Data: the database, or --data with "
        "TRL's unpaired records (prompt, completion, label). Runs here or, with --queue, on a "
        "worker."
    )
    kind = "kto"
