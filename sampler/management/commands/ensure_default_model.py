from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from sampler.registry.services import model_version_ensure_default


class Command(BaseCommand):
    help = "Register SAMPLER_MODEL as the active policy when no policy is active yet."

    def handle(self, *args: object, **options: object) -> None:
        try:
            version = model_version_ensure_default()
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        self.stdout.write(f"Active policy: {version.name} ({version.path})")
