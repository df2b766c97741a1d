"""What ``train_sft``, ``train_reward``, ``train_dpo`` and ``train_kto`` share: options, progress
bar, one service call; ``train_ppo`` shares the progress bar and how a run is resumed, created,
queued and trained (``train_here_or_queue``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import fields
from datetime import date
from pathlib import Path

from accelerate.utils import broadcast_object_list
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm.auto import tqdm

from accounts.selectors import user_ids_by_username
from config.commands import option_errors
from ranking.exports.filters import FLAG_NAMES, MIN_AGREEMENT, SPLIT_SEED, ExportFilters
from ranking.projects.selectors import project_ids_by_slug
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_by_name, model_version_ids_by_name
from sampler.runs import services as training_services
from sampler.runs.kinds import normalising_remedy_worded, training_kind
from sampler.runs.models import TrainingRun
from sampler.training.config import CONFIGS, NO_WORDS, SETTINGS, YES_WORDS, number_text
from sampler.training.loop import ProgressEvent, process_state
from sampler.training.records import DataError, carries_own_split, read_jsonl

# Options that choose rows of the database (with --data they would choose nothing).
DATABASE_ONLY = {
    "date_from",
    "date_to",
    "model_version",
    "min_agreement",
    "exclude_flag",
    "exclude_trainer",
    "split_seed",
    "project",
    "reward_source",
    "sources",  # train_kto's
}


def _flags(dests: set[str]) -> str:
    return ", ".join("--" + dest.replace("_", "-") for dest in sorted(dests))


def options_checked(command: BaseCommand, options: dict) -> None:
    """Refuse options that would be ignored: any beside ``--resume`` (a resumed run keeps the
    settings it was created with) and database filters beside ``--data``."""
    parser = argparse.ArgumentParser(add_help=False)
    command.add_arguments(parser)
    # The command's own options whose value is not their default: what was typed.
    given = {
        action.dest
        for action in parser._actions
        if action.dest in options and options[action.dest] != action.default
    }
    if options.get("resume"):
        if extra := given - {"resume"}:
            raise CommandError(
                f"--resume continues run {options['resume']} with the settings it was created "
                f"with; leave out {_flags(extra)}."
            )
    elif options.get("data") and (extra := given & DATABASE_ONLY):
        verb = "chooses" if len(extra) == 1 else "choose"
        # An export has every KTO source: there is no filtering by them there.
        how = "." if extra == {"sources"} else " (filter it when you export it)."
        raise CommandError(
            f"{_flags(extra)} {verb} rows of the database; a --data file is read whole{how}"
        )
    elif options.get("data") and "test_fraction" in given and _carries_split(options["data"]):
        raise CommandError(
            f"--test-fraction: the records of {Path(options['data']).name} carry their own "
            "`split` (an export's, by conversation), which training keeps; choose it when you "
            "export, and leave out --test-fraction."
        )


def _carries_split(path: str) -> bool:
    """Whether the file's first record says its split (a missing or bad file: the run's own
    checks say so)."""
    try:
        return carries_own_split(read_jsonl(path))
    except (OSError, DataError):
        return False


# A service's field (or a filter's), as the command's option that gave it.
OPTION_NAMES = {
    "date_from": "--date-from",
    "date_to": "--date-to",
    "model_version_ids": "--model-version",
    "min_agreement": "--min-agreement",
    "exclude_flags": "--exclude-flag",
    "exclude_trainer_ids": "--exclude-trainer",
    "split_seed": "--split-seed",
    "project_ids": "--project",
    "data_path": "--data",
    "demonstrations": "--demonstrations",
    "output_name": "--name",
    "base_version": "--base",
    "reward_version": "--reward-model",
    "reward_sources": "--reward-source",
    "test_fraction": "--test-fraction",
    "data_half": "--data-half",
    "lora_targets": "--lora-targets",
}


# Every setting of the configs as its option (--batch-size), beside the options above, and what
# the pages call it, the filter of agreement too: a refusal says both ("Batch size
# (--batch-size) must be ...").
SETTING_OPTIONS = {name: "--" + name.replace("_", "-") for name in SETTINGS} | OPTION_NAMES
SETTING_LABELS = {name: label for name, (label, _) in SETTINGS.items()} | {
    "min_agreement": MIN_AGREEMENT,
    "split_seed": SPLIT_SEED,
}


def _errors(error: ValidationError) -> str:
    return option_errors(error, SETTING_OPTIONS, SETTING_LABELS)


class ProgressBar:
    """tqdm over optimizer steps with the training loss; eval results and log messages printed
    above it."""

    description = "train"
    eval_format = ".4f"

    def __init__(self, stdout):
        self.stdout = stdout
        self.bar = None

    def postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{metrics['loss/train']:.4f}"}

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "start":
            self.bar = tqdm(
                total=event.total_steps, initial=event.step, unit="step", desc=self.description
            )
        if event.kind in {"start", "message", "checkpoint"}:
            self._write(event.message)
        elif event.kind == "train" and self.bar is not None:
            self.bar.update(event.step - self.bar.n)
            self.bar.set_postfix(self.postfix(event.metrics), refresh=False)
        elif event.kind == "eval":
            shown = ", ".join(
                f"{k} {v:{self.eval_format}}" for k, v in sorted(event.metrics.items())
            )
            self._write(f"step {event.step}: {shown}")
        elif event.kind == "end" and self.bar is not None:
            self.bar.close()

    def _write(self, message: str) -> None:
        (self.bar.write if self.bar is not None else self.stdout.write)(message)


class TrainingCommand(BaseCommand):
    kind: str = ""

    def add_arguments(self, parser):
        source = parser.add_argument_group("data (default: the database, with export filters)")
        source.add_argument("--data", help="An exported JSONL file (.jsonl or .jsonl.gz).")
        source.add_argument("--date-from", type=date.fromisoformat)
        source.add_argument("--date-to", type=date.fromisoformat)
        source.add_argument(
            "--model-version", action="append", default=[], help="Only data sampled from it."
        )
        source.add_argument("--min-agreement", type=float)
        source.add_argument("--exclude-flag", action="append", default=[], choices=FLAG_NAMES)
        source.add_argument(
            "--exclude-trainer", action="append", default=[], help="A username to leave out."
        )
        source.add_argument(
            "--test-fraction", type=float, default=0.1, help="Held out, by conversation."
        )
        source.add_argument("--split-seed", type=int, default=0)
        source.add_argument(
            "--project",
            action="append",
            default=[],
            help="Only this project's data (a slug, repeatable; none: every project).",
        )
        parser.add_argument(
            "--base",
            help="The model version to start from, by name in any letter case (default: active "
            "policy).",
        )
        parser.add_argument("--name", default="", help="Name of the new model version.")
        parser.add_argument(
            "--resume",
            type=int,
            metavar="RUN_ID",
            help="Continue an unfinished run from its checkpoint.",
        )
        parser.add_argument(
            "--queue", action="store_true", help="Queue it for a training worker and exit."
        )
        add_config_options(parser, CONFIGS[self.kind])

    def handle(self, *args, **options):
        version = train_here_or_queue(
            self, options, kind=self.kind, name=self.kind, create=lambda: self._create(options)
        )
        if version is None:
            return
        final = {k: v for k, v in version.metrics.items() if k != "data"}
        self.stdout.write(f"metrics: {final}")

    def _create(self, options) -> TrainingRun:
        config = {
            field.name: options[field.name]
            for field in fields(CONFIGS[self.kind])
            if options.get(field.name) is not None
        }
        config["test_fraction"] = options["test_fraction"]
        if options.get("origin"):
            if options.get("origins"):
                raise CommandError("Give --origin (repeatable) or --origins, not both.")
            config["origins"] = ",".join(options["origin"])
        try:
            # Each lookup's message names what is unknown ("Unknown user: bob."), as in
            # export_comparisons.
            named = {
                "model_version_ids": model_version_ids_by_name(names=options["model_version"]),
                "exclude_trainer_ids": user_ids_by_username(usernames=options["exclude_trainer"]),
                "project_ids": project_ids_by_slug(slugs=options["project"]),
            }
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        base = None
        if options["base"]:
            base = model_version_by_name(name=options["base"])
            if base is None:
                raise CommandError(f"No model version named {options['base']}.")
        try:
            filters = None
            if not options["data"]:
                filters = ExportFilters(
                    date_from=options["date_from"],
                    date_to=options["date_to"],
                    min_agreement=options["min_agreement"],
                    exclude_flags=tuple(options["exclude_flag"]),
                    test_fraction=options["test_fraction"],
                    split_seed=options["split_seed"],
                    **named,
                )
                # Said here, naming the option (the service names the filter's field).
                try:
                    filters.check_format(training_kind(self.kind).data_format, names=OPTION_NAMES)
                except ValidationError as error:
                    raise CommandError(" ".join(error.messages)) from error
            return training_services.training_run_create(
                kind=self.kind,
                config=config,
                base_version=base,
                filters=filters,
                data_path=options["data"],
                demonstrations_path=options.get("demonstrations"),
                reward_sources=options.get("reward_source") or None,
                output_name=options["name"],
                queue=options["queue"],
            )
        except ValidationError as error:
            normalising_remedy_worded(
                error,
                remedy="name a demonstrations export (--demonstrations), or set "
                "--normalize-to-demonstrations no",
            )
            raise CommandError(_errors(error)) from error


def add_config_options(parser, config_class) -> None:
    """One ``--option`` per field of the trainer's config (``None`` when not given: the config's
    default applies), its help the field's ``metadata["help"]`` or its default; booleans read
    yes/no."""
    hyper = parser.add_argument_group("hyperparameters")
    for field in fields(config_class):
        if field.name in {"test_fraction"}:
            continue  # the held-out share comes with the data (--test-fraction)
        default = getattr(config_class, field.name)
        option = "--" + field.name.replace("_", "-")
        if isinstance(default, bool):
            hyper.add_argument(
                option,
                type=_boolean,
                default=None,
                metavar="yes|no",
                help=_option_help(field, "yes" if default else "no"),
            )
        else:
            kind = (
                float
                if isinstance(default, float)
                else int
                if field.type.startswith("int")
                else str
            )
            hyper.add_argument(option, type=kind, default=None, help=_option_help(field, default))


def _option_help(field, default) -> str:
    """A setting's option help: its label as the pages show it (``SETTINGS``), its help (the
    field's own where it words it for the command line), and its default (a float as the
    refusals write it, ``number_text``). ``%`` is argparse's format sign."""
    label, help_text = SETTINGS.get(field.name, ("", ""))
    help_text = field.metadata.get("help", help_text)
    said = f"{label}: {help_text}" if label else help_text
    if default not in {"", None}:
        shown = number_text(default) if isinstance(default, float) else default
        said += f" (default {shown})"
    return said.replace("%", "%%")


def create_once(stdout, create: Callable[[], TrainingRun]) -> int:
    """Under ``accelerate launch`` (or ``torchrun``) every process runs the command: the main
    one records the run with ``create`` and the others learn its id."""
    state = process_state()
    run_id = [None]
    if state.is_main_process:
        run = create()
        run_id = [run.pk]
        stdout.write(f"training run {run.pk}")
        publication = getattr(run, "publication", None)
        if publication is not None and publication.failed:
            # Queued with --queue while the broker is down: kept, and published by the outbox.
            stdout.write(publication.unreachable_note(f"Training run {run.pk}"))
    if state.num_processes > 1:
        broadcast_object_list(run_id)
    return run_id[0]


def train_here_or_queue(
    command: BaseCommand,
    options: dict,
    *,
    kind: str,
    name: str,
    create: Callable[[], TrainingRun],
    progress_bar: type[ProgressBar] = ProgressBar,
) -> ModelVersion | None:
    """What a training command does once its options are checked: resume the ``kind`` run that
    ``--resume`` names (``name`` says which kind in the error for one there is not) or record a
    new one with ``create``, then train it here (with ``--queue``, a new run is left to a
    worker). Returns the version the run registered; None when it was queued, and in the other
    processes of a multi-process launch."""
    options_checked(command, options)
    if options["resume"]:
        run_id = options["resume"]
        if not TrainingRun.objects.filter(pk=run_id, kind=kind).exists():
            raise CommandError(f"No {name} run {run_id}.")
    else:
        run_id = create_once(command.stdout, create)
        if options["queue"]:
            return None
    echo = progress_bar(command.stdout) if options["verbosity"] else None
    return run_inline(command.stdout, run_id, echo)


def run_inline(stdout, run_id: int, echo) -> ModelVersion | None:
    """Run the training run here, each failure a one-line ``CommandError``; returns the version
    it registered. The other processes of a multi-process launch train their share and return
    None: the main one records the run and reports it."""
    main = process_state().is_main_process
    # A finished run is returned as it is: say that nothing was trained this time.
    finished_before = (
        main and TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.SUCCEEDED).exists()
    )
    try:
        run = training_services.training_run_run_inline(run_id=run_id, echo=echo if main else None)
    except KeyboardInterrupt:
        raise CommandError(f"Interrupted. Resume with --resume {run_id}.") from None
    except ValidationError as error:
        raise CommandError(_errors(error)) from error
    except Exception as error:
        # The run is marked failed with the details; say so in one line here.
        raise CommandError(f"Run {run_id} failed: {error}") from error
    if not main:
        return None
    if run.status != TrainingRun.Status.SUCCEEDED:
        why = {
            TrainingRun.Status.RUNNING: "another process is training it (a run trains in one "
            "place at a time)",
            TrainingRun.Status.QUEUED: "it waits for a training worker",
            TrainingRun.Status.CANCELLED: "it was cancelled, and a cancelled run stays so; "
            f"`manage.py retry_job training {run.pk}` queues it again (it resumes from its "
            "checkpoint)",
        }.get(run.status, run.error or "no reason was recorded")
        raise CommandError(f"Run {run.pk} is {run.status}: {why}.")
    version = run.output_versions.first()
    outcome = "had already succeeded; nothing was trained" if finished_before else "succeeded"
    label = "reward model" if version.kind == ModelVersion.Kind.REWARD else "policy"
    standing = f"the active {label}" if version.is_active else "not promoted"
    stdout.write(f"run {run.pk} {outcome}: {version.name} at {version.path} ({standing})")
    return version


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in YES_WORDS | NO_WORDS:
        # argparse prints this message as it is (a ValueError would name this function).
        raise argparse.ArgumentTypeError(f"expected yes or no, got {value!r}")
    return lowered in YES_WORDS
