import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.db import transaction

from accounts.roles import TRAINER_GROUP


@dataclass(frozen=True)
class CreatedAccount:
    username: str
    password: str
    role: str


def trainer_group_ensure() -> Group:
    group, _ = Group.objects.get_or_create(name=TRAINER_GROUP)
    return group


@transaction.atomic
def user_create_trainer(*, username: str, password: str, email: str = "") -> AbstractUser:
    user = get_user_model().objects.create_user(username=username, password=password, email=email)
    user.groups.add(trainer_group_ensure())
    return user


@transaction.atomic
def demo_accounts_ensure() -> list[CreatedAccount]:
    """Create the embedded default's admin and demo trainer once, with random passwords.

    Returns only the accounts created by this call, so credentials are shown exactly once.
    """
    trainer_group_ensure()
    user_model = get_user_model()
    created: list[CreatedAccount] = []
    if not user_model.objects.filter(username="admin").exists():
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username="admin", password=password, email="")
        created.append(CreatedAccount("admin", password, "admin"))
    if not user_model.objects.filter(username="trainer").exists():
        password = secrets.token_urlsafe(12)
        user_create_trainer(username="trainer", password=password)
        created.append(CreatedAccount("trainer", password, "trainer"))
    return created
