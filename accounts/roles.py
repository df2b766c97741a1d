"""Who may do what. Trainers write and rank; staff (admins) also export, train and promote."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission

TRAINER_GROUP = "trainer"

View = Callable[..., HttpResponse]


def is_trainer(user: AbstractBaseUser | AnonymousUser) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    return user.is_staff or user.groups.filter(name=TRAINER_GROUP).exists()


def is_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def _role_required(allowed: Callable[..., bool], message: str) -> Callable[[View], View]:
    """A view decorator that refuses users ``allowed`` rejects. Login is enforced globally by
    LoginRequiredMiddleware; this adds the role check."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if not allowed(request.user):
                raise PermissionDenied(message)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


trainer_required = _role_required(is_trainer, "This page is for AI trainers.")
staff_required = _role_required(is_admin, "This page is for admins.")


class IsTrainer(BasePermission):
    message = "This endpoint is for AI trainers."

    def has_permission(self, request: HttpRequest, view: object) -> bool:
        return is_trainer(request.user)


class IsStaff(BasePermission):
    message = "This endpoint is for admins."

    def has_permission(self, request: HttpRequest, view: object) -> bool:
        return is_admin(request.user)
