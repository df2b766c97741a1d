from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts import selectors, services
from accounts.models import ApiToken


class Command(BaseCommand):
    help = (
        "API tokens for scripts: `create USER NAME` (prints the token once), `list USER`, "
        "`revoke USER TOKEN_ID`."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="make a token; it is printed only this once")
        create.add_argument("username")
        create.add_argument("name", help="what the token is for")
        listing = actions.add_parser("list", help="a user's tokens (prefix, never the token)")
        listing.add_argument("username")
        revoke = actions.add_parser("revoke", help="revoke one of a user's tokens")
        revoke.add_argument("username")
        revoke.add_argument("token_id", type=int)

    def handle(self, *args: object, action: str, username: str, **options: object) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if action == "create":
            try:
                created = services.api_token_create(user=user, name=str(options["name"]))
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from error
            self.stderr.write(
                f"Token {created.token.pk} for {username} (shown only this once; only its hash "
                "is stored):"
            )
            self.stdout.write(created.secret)
        elif action == "list":
            for token in selectors.api_token_list(user=user):
                used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
                state = f"revoked {token.revoked_at:%Y-%m-%d}" if token.revoked_at else "active"
                self.stdout.write(
                    f"{token.pk}\t{token.prefix}…\t{token.name}\tcreated "
                    f"{token.created_at:%Y-%m-%d}\tlast used {used}\t{state}"
                )
        else:
            try:
                token = services.api_token_revoke(user=user, token_id=int(options["token_id"]))
            except ApiToken.DoesNotExist as error:
                raise CommandError(str(error)) from error
            self.stdout.write(self.style.SUCCESS(f"Token {token.pk} ({token.prefix}…) revoked."))
