from dataclasses import fields
from datetime import date

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ranking.exports.filters import ExportFilters
from ranking.projects.selectors import project_ids_by_slug
from sampler.management.commands._training import (
    ProgressBar,
    _errors,
    add_config_options,
    train_here_or_queue,
)
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_by_name
from sampler.runs import services as training_services
from sampler.runs.models import TrainingRun
from sampler.training.ppo_config import PPOConfig


class PPOProgressBar(ProgressBar):
    """tqdm over PPO steps with reward, KL and length; evaluations and messages above it."""

    description = "ppo"
    eval_format = ".3f"

    def postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        return {
            "reward": f"{metrics['objective/rlhf_reward']:.3f}",
            "score": f"{metrics['objective/scores']:.3f}",
            "kl": f"{metrics['objective/kl']:.2f}",
            "length": f"{metrics['response/length']:.1f}",
        }


class Command(BaseCommand):
    help = (
        "PPO: optimise a policy (default: the active one) against a reward model (default: the "
        "active one) with a KL penalty to the starting policy, on prompts from the database "
        "(every user turn of the finished conversations, the rankings' prompts) or a JSONL "
        "file; registers the new policy as an inactive version. Runs here or, with --queue, "
        "on a worker."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base", help="Policy version to start from (default: active).")
        parser.add_argument("--reward-model", help="Reward version (default: the active one).")
        parser.add_argument("--name", default="", help="Name of the new policy version.")
        parser.add_argument("--data", help="A JSONL file of prompts (any export format).")
        parser.add_argument("--date-from", type=date.fromisoformat)
        parser.add_argument("--date-to", type=date.fromisoformat)
        parser.add_argument(
            "--test-fraction", type=float, default=0.1, help="Held out, by conversation."
        )
        parser.add_argument("--split-seed", type=int, default=0)
        parser.add_argument(
            "--project",
            action="append",
            default=[],
            help="Only this project's prompts (a slug, repeatable; none: every project).",
        )
        parser.add_argument(
            "--resume", type=int, metavar="RUN_ID", help="Continue an unfinished PPO run."
        )
        parser.add_argument(
            "--queue", action="store_true", help="Queue it for a training worker and exit."
        )
        add_config_options(parser, PPOConfig)

    def handle(self, *args, **options):
        version = train_here_or_queue(
            self,
            options,
            kind=TrainingRun.Kind.PPO,
            name="PPO",
            create=lambda: self._create(options),
            progress_bar=PPOProgressBar,
        )
        if version is None:
            return
        shown = {
            key: value
            for key, value in version.metrics.items()
            if key.startswith(("eval/", "objective/")) or key in {"steps", "stopped_early"}
        }
        self.stdout.write(f"metrics: {shown}")

    def _create(self, options) -> TrainingRun:
        config = {
            field.name: options[field.name]
            for field in fields(PPOConfig)
            if options.get(field.name) is not None
        }
        config["test_fraction"] = options["test_fraction"]
        base, reward = _version(options["base"]), _version(options["reward_model"])
        try:
            # Its message names what is unknown ("Unknown project: x."), as in train_sft.
            project_ids = project_ids_by_slug(slugs=options["project"])
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        filters = None
        try:
            if not options["data"]:
                filters = ExportFilters(
                    date_from=options["date_from"],
                    date_to=options["date_to"],
                    test_fraction=options["test_fraction"],
                    split_seed=options["split_seed"],
                    project_ids=project_ids,
                )
            return training_services.training_run_create(
                kind=TrainingRun.Kind.PPO,
                config=config,
                base_version=base,
                reward_version=reward,
                filters=filters,
                data_path=options["data"],
                output_name=options["name"],
                queue=options["queue"],
            )
        except ValidationError as error:
            raise CommandError(_errors(error)) from error


def _version(name: str | None) -> ModelVersion | None:
    if not name:
        return None
    version = model_version_by_name(name=name)
    if version is None:
        raise CommandError(f"No model version named {name}.")
    return version
