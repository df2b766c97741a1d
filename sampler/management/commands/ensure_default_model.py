from django.core.management.base import BaseCommand

from sampler.registry.services import model_version_ensure_default


class Command(BaseCommand):
    help = "Register SAMPLER_MODEL as the active policy when no policy is active yet."

    def handle(self, *args: object, **options: object) -> None:
        version = model_version_ensure_default()
        self.stdout.write(f"Active policy: {version.name} ({version.path})")
