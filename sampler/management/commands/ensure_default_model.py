from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from sampler.registry.selectors import policy_version_by_path, sampler_model_path
from sampler.registry.services import DefaultPolicyHeldByProjects, model_version_ensure_default


class Command(BaseCommand):
    help = (
        "Register SAMPLER_MODEL as the active policy when no policy is active yet (with one "
        "active, a SAMPLER_MODEL that names another model is not used: a warning says how to "
        "switch). A model that "
        "cannot serve is an error; one refused only because a project asks for a max_new_tokens "
        "its context has no room for is a warning (exit 0, no policy active), so that the app "
        "still starts and the project can be corrected on its page."
    )

    def handle(self, *args: object, **options: object) -> None:
        try:
            version = model_version_ensure_default()
        except DefaultPolicyHeldByProjects as error:
            self.stderr.write(
                "Warning: no policy is active; suggestions and ranking tasks are refused until "
                "one is. " + " ".join(error.messages)
            )
            return
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        self.stdout.write(f"Active policy: {version.name} ({version.path})")
        configured = sampler_model_path()
        if version.path != configured:
            registered = policy_version_by_path(path=configured)
            how = (
                f"`manage.py promote {registered.name}`"
                if registered is not None
                else "register it (the admin, or POST /api/model-versions/) and promote it "
                "(`manage.py promote NAME`, or the Promote button on the Models page)"
            )
            self.stderr.write(
                f"Warning: SAMPLER_MODEL names {configured}, not the active policy "
                f"{version.name}: it is registered and made active only while no policy is "
                f"active, so it was not used. To switch, {how}."
            )
