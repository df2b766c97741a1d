from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ranking.projects.selectors import projects_affected_by_promotion
from sampler.registry.models import ModelVersion
from sampler.registry.services import model_version_promote


class Command(BaseCommand):
    help = "Make a model version the active one of its kind (one atomic switch)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The model version's name.")

    def handle(self, *args, **options):
        try:
            version = ModelVersion.objects.get(name=options["name"])
        except ModelVersion.DoesNotExist as error:
            raise CommandError(f"No model version named {options['name']}.") from error
        try:
            version = model_version_promote(version=version)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        self.stdout.write(f"{version.name} is now the active {version.get_kind_display()}.")
        if version.kind == ModelVersion.Kind.POLICY:
            # Projects that name no policy sample from the active one: the promotion moves them.
            following = [project.slug for project in projects_affected_by_promotion()]
            self.stdout.write(
                "Projects that sample from it now: "
                + (", ".join(following) if following else "none (each names its own policy).")
            )
