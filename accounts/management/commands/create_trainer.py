import getpass
import os
import sys

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.services import user_create_trainer

# Where a script gives the password: a command line is readable by every user of the machine
# (the process list) and kept in shell histories, the environment is not.
PASSWORD_ENV = "TRAINER_PASSWORD"


class Command(BaseCommand):
    help = (
        "Create an AI trainer account (member of the trainer group). The password is asked for "
        f"at the terminal, or read from the {PASSWORD_ENV} environment variable (for scripts); "
        "it must pass Django's password validators."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--password",
            help=(
                "The password on the command line, where other users of the machine can read it "
                f"(the process list) and the shell history keeps it: prefer {PASSWORD_ENV} or "
                "the prompt."
            ),
        )
        parser.add_argument("--email", default="")

    def handle(
        self, *args: object, username: str, password: str | None, email: str, **options: object
    ) -> None:
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"A user named {username!r} already exists.")
        if password is None:
            password = self._password()
        try:
            user_create_trainer(username=username, password=password, email=email)
        except ValidationError as error:
            raise CommandError("Password refused: " + " ".join(error.messages)) from error
        self.stdout.write(self.style.SUCCESS(f"Trainer {username} created."))

    def _password(self) -> str:
        """The password from the environment, else typed twice at the terminal (not echoed)."""
        if PASSWORD_ENV in os.environ:
            return os.environ[PASSWORD_ENV]
        if not sys.stdin.isatty():
            raise CommandError(
                f"No password: set {PASSWORD_ENV}, or run the command at a terminal to type it."
            )
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != password:
            raise CommandError("The two passwords differ: nobody was created.")
        return password
