import sys
from collections import Counter
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.selectors import user_ids_by_username
from config.commands import option_errors
from config.text import counted
from labeling.guidelines.selectors import guideline_numbers_existing
from ranking.exports.features import features_path
from ranking.exports.filters import (
    FORMATS,
    HELD_OUT_FRACTION,
    MIN_AGREEMENT,
    PAIR_MODES,
    RED_TEAM_MODES,
    SPLIT_SEED,
    SPLITS,
    ExportFilters,
)
from ranking.exports.models import skipped_summary
from ranking.exports.pipeline import records, write_features, write_jsonl, write_jsonl_stream
from ranking.exports.services import export_prepare
from ranking.projects.selectors import project_ids_by_slug
from sampler.registry.selectors import model_version_ids_by_name

# A filter, as the option that sets it (for the messages that name it).
OPTION_NAMES = {
    "date_from": "--from",
    "date_to": "--to",
    "test_fraction": "--test-fraction",
    "split_seed": "--split-seed",
    "model_version_ids": "--model-version",
    "min_agreement": "--min-agreement",
    "exclude_flags": "--exclude-flag",
    "red_team": "--red-team",
}
# What the pages call a filter its refusal opens with ("Held-out fraction (--test-fraction) ...").
LABELS = {
    "test_fraction": HELD_OUT_FRACTION,
    "min_agreement": MIN_AGREEMENT,
    "split_seed": SPLIT_SEED,
}


class Command(BaseCommand):
    help = (
        "Export comparison or demonstration data as JSONL (gzip when --out ends in .gz), with "
        "its column types for Hugging Face datasets beside it (<name>.features.json). "
        "Formats and fields are documented in the README."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=FORMATS, required=True)
        parser.add_argument(
            "--out", required=True, help="file.jsonl, file.jsonl.gz, or - for standard output"
        )
        parser.add_argument(
            "--features-out",
            help="where to write the column types (datasets.Features as JSON); default: beside "
            "--out as <name>.features.json, none when --out is - or a device",
        )
        parser.add_argument("--from", dest="date_from", help="first day, YYYY-MM-DD")
        parser.add_argument("--to", dest="date_to", help="last day, YYYY-MM-DD")
        parser.add_argument(
            "--model-version", action="append", default=[], help="name (repeatable)"
        )
        parser.add_argument("--min-agreement", type=float)
        parser.add_argument("--exclude-flag", action="append", default=[])
        parser.add_argument("--exclude-trainer", action="append", default=[], help="username")
        parser.add_argument("--pairs", dest="pair_mode", choices=PAIR_MODES, default="per_ranker")
        parser.add_argument("--split", choices=SPLITS, default="all")
        parser.add_argument(
            "--test-fraction",
            type=float,
            default=0.1,
            help=f"{HELD_OUT_FRACTION}: held out, by conversation (default 0.1).",
        )
        parser.add_argument("--split-seed", type=int, default=0)
        parser.add_argument("--no-pseudonymize", action="store_true", help="export user ids")
        parser.add_argument(
            "--red-team",
            choices=RED_TEAM_MODES,
            default="include",
            help="corrected red-team attacks: include (default), exclude, or only them",
        )
        parser.add_argument(
            "--guideline-version",
            type=int,
            action="append",
            default=[],
            help="guideline version number (repeatable; none: any)",
        )

        parser.add_argument(
            "--project",
            action="append",
            default=[],
            help="project slug (repeatable; none: every project)",
        )

    def handle(self, *args, **options):
        try:
            versions = model_version_ids_by_name(names=options["model_version"])
            trainers = user_ids_by_username(usernames=options["exclude_trainer"])
            guidelines = guideline_numbers_existing(numbers=options["guideline_version"])
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        try:
            filters = ExportFilters.from_dict(
                {
                    "date_from": options["date_from"],
                    "date_to": options["date_to"],
                    "model_version_ids": versions,
                    "min_agreement": options["min_agreement"],
                    "exclude_flags": options["exclude_flag"],
                    "exclude_trainer_ids": trainers,
                    "pair_mode": options["pair_mode"],
                    "split": options["split"],
                    "test_fraction": options["test_fraction"],
                    "split_seed": options["split_seed"],
                    "pseudonymize": not options["no_pseudonymize"],
                    "red_team": options["red_team"],
                    "guideline_versions": guidelines,
                    "project_ids": project_ids_by_slug(slugs=options["project"]),
                }
            )
        except ValidationError as error:
            raise CommandError(option_errors(error, OPTION_NAMES, LABELS)) from error
        try:
            filters.check_format(options["format"], names=OPTION_NAMES)
        except ValidationError as error:
            # Each message names the option it refuses.
            raise CommandError(" ".join(error.messages)) from error
        progress = tqdm(unit=" rows", desc=options["format"], disable=options["verbosity"] == 0)
        last = 0

        def advance(rows: int) -> None:
            nonlocal last
            progress.update(rows - last)
            last = rows

        export_prepare(options["format"], filters)
        skipped: Counter = Counter()
        rows = records(options["format"], filters, skipped=skipped)
        to_stdout = options["out"] == "-"
        try:
            if to_stdout:
                written = write_jsonl_stream(rows, sys.stdout.buffer, on_progress=advance)
                sys.stdout.buffer.flush()
            else:
                written = write_jsonl(rows, Path(options["out"]), on_progress=advance)
        except OSError as error:
            raise CommandError(f"Cannot write {options['out']}: {error.strerror}.") from error
        features = self._features_target(options)
        if features:
            try:
                write_features(options["format"], filters, features)
            except OSError as error:
                raise CommandError(f"Cannot write {features}: {error.strerror}.") from error
        advance(written.rows)
        progress.close()
        summary = (
            f"{counted(written.rows, 'row')}, {counted(written.size_bytes, 'byte')}, "
            f"sha256 {written.sha256}"
        )
        if features:
            summary += f" (column types: {features})"
        if skipped:
            summary += f"; skipped {skipped_summary(skipped)}"
        # To standard error always: --out may be standard output by another name (/dev/stdout,
        # a pipe), and the summary must not land among the rows.
        target = "standard output" if to_stdout else options["out"]
        self.stderr.write(f"{summary} -> {target}", style_func=lambda text: text)

    @staticmethod
    def _features_target(options) -> Path | None:
        """``--features-out``, else beside a regular file written at ``--out``."""
        if options["features_out"]:
            return Path(options["features_out"])
        out = Path(options["out"])
        if options["out"] == "-" or out.is_symlink() or not out.is_file():
            return None
        return features_path(out)
