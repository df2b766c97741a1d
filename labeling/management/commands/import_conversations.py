import gzip
import sys
import zlib
from contextlib import contextmanager
from typing import IO

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from config.text import one_line_problem, text_problem
from labeling.conversations.importing import (
    MAX_LINE_BYTES,
    MAX_LINES,
    import_summary,
    jsonl_lines,
)
from labeling.conversations.services import conversations_import
from ranking.projects.selectors import project_ids_by_slug


@contextmanager
def _open_binary(path: str):
    if path == "-":
        yield sys.stdin.buffer
        return
    opener = gzip.open if path.endswith(".gz") else open
    try:
        stream: IO[bytes] = opener(path, "rb")
    except OSError as error:
        raise CommandError(f"Cannot open {path}: {error.strerror or error}") from error
    with stream:
        yield stream


class Command(BaseCommand):
    help = (
        "Import finished conversations from a JSONL file (one "
        '{"messages": [{"role": ..., "content": ...}, ...], "title": ...} per line). '
        f"Lines are at most {MAX_LINE_BYTES} bytes, files at most {MAX_LINES} lines. "
        "All or nothing: every line is checked first, and one invalid line means nothing is "
        "imported; each invalid line is listed with its number and the command exits non-zero. "
        "A line whose turns the project already holds from an import, or an earlier line of "
        "the file holds, is skipped (--allow-duplicates imports it again)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="A .jsonl or .jsonl.gz file, or - for standard input.")
        parser.add_argument("--owner", required=True, help="Username that will own them.")
        parser.add_argument("--title-prefix", default="", help="Put before every title.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Check every line; save nothing."
        )
        parser.add_argument("--project", help="The project's slug (default: the default project).")
        parser.add_argument(
            "--allow-duplicates",
            action="store_true",
            help=(
                "Import every line, also those whose turns the project already holds from an "
                "import or an earlier line holds (by default they are skipped)."
            ),
        )

    def handle(
        self,
        *args,
        file: str,
        owner: str,
        title_prefix: str,
        dry_run: bool,
        allow_duplicates: bool,
        **options,
    ):
        # Checked before any of them reaches the database, which cannot store these (bytes of
        # the command line that are not UTF-8 arrive as lone surrogates).
        # The prefix starts every title, and a title is one line.
        for option, text, problem_in in (
            ("--owner", owner, text_problem),
            ("--title-prefix", title_prefix, one_line_problem),
            ("--project", options.get("project") or "", text_problem),
        ):
            if problem := problem_in(text):
                raise CommandError(f"{option}: {problem}")
        user = get_user_model().objects.filter(username=owner).first()
        if user is None:
            raise CommandError(f"No user named {owner!r}: create the account first.")
        project_id = None
        if options.get("project"):
            try:
                (project_id,) = project_ids_by_slug(slugs=[options["project"]])
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from error
        with _open_binary(file) as stream:
            try:
                report = conversations_import(
                    lines=jsonl_lines(stream),
                    owner=user,
                    title_prefix=title_prefix,
                    dry_run=dry_run,
                    project_id=project_id,
                    allow_duplicates=allow_duplicates,
                )
            except (OSError, EOFError, zlib.error) as error:  # a cut or corrupt .gz, a read error
                raise CommandError(
                    f"Reading {file} failed part way: {error}. Nothing was imported."
                ) from error
            except ValidationError as error:  # a closed project
                raise CommandError(f"{' '.join(error.messages)} Nothing was imported.") from error
        for line_number, message in report.errors:
            self.stderr.write(f"line {line_number}: {message}")
        if report.errors:
            raise CommandError(
                f"{len(report.errors)} invalid lines ({report.valid} valid): nothing "
                f"{'would be ' if dry_run else 'was '}imported. Fix the lines above and run again."
            )
        if options["verbosity"] >= 2:
            for line_number, where in report.skipped:
                self.stdout.write(f"line {line_number}: skipped, {where}")
        self.stdout.write(import_summary(report, dry_run=dry_run))
