from django.http import HttpRequest

from accounts.roles import is_admin, is_trainer


def roles(request: HttpRequest) -> dict[str, bool]:
    user = getattr(request, "user", None)
    if user is None:
        return {"is_trainer": False, "is_admin": False}
    return {"is_trainer": is_trainer(user), "is_admin": is_admin(user)}
