from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.services import demo_accounts_ensure, trainer_group_ensure


class Command(BaseCommand):
    help = (
        "Create the trainer group. On the embedded default, also create an admin and a demo "
        "trainer with random passwords and print them once. Production creates no accounts."
    )

    def handle(self, *args: object, **options: object) -> None:
        if settings.PRODUCTION:
            trainer_group_ensure()
            self.stdout.write(
                "Production mode: trainer group ready; create admins with createsuperuser."
            )
            return
        created = demo_accounts_ensure()
        if not created:
            self.stdout.write("Accounts already exist; credentials were printed on first run.")
            return
        self.stdout.write(self.style.SUCCESS("Created accounts (shown only this once):"))
        for account in created:
            self.stdout.write(
                f"  {account.role:8} username={account.username}  password={account.password}"
            )
