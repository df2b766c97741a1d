from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.services import user_create_trainer


class Command(BaseCommand):
    help = (
        "Create an AI trainer account (member of the trainer group). The password must pass "
        "Django's password validators."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--email", default="")

    def handle(
        self, *args: object, username: str, password: str, email: str, **options: object
    ) -> None:
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"A user named {username!r} already exists.")
        try:
            user_create_trainer(username=username, password=password, email=email)
        except ValidationError as error:
            raise CommandError("Password refused: " + " ".join(error.messages)) from error
        self.stdout.write(self.style.SUCCESS(f"Trainer {username} created."))
