from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ranking.projects.selectors import projects_affected_by_promotion
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_by_name
from sampler.registry.services import model_version_promote


class Command(BaseCommand):
    help = "Make a model version the active one of its kind (one atomic switch)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The model version's name (in any letter case).")

    def handle(self, *args, **options):
        version = model_version_by_name(name=options["name"])
        if version is None:
            raise CommandError(f"No model version named {options['name']}.")
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
