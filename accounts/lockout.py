"""What a client locked out by django-axes (too many wrong passwords) gets: JSON under /api/,
the login page with the reason elsewhere; both with status 429 and Retry-After."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def lockout_response(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    minutes = round(settings.AXES_COOLOFF_TIME * 60)
    detail = (
        f"Too many failed logins for this account from this address: try again in {minutes} "
        "minutes."
    )
    headers = {"Retry-After": str(minutes * 60)}
    if request.path_info.startswith("/api/"):
        return JsonResponse({"detail": detail}, status=429, headers=headers)
    response = render(request, "accounts/locked_out.html", {"detail": detail}, status=429)
    response["Retry-After"] = headers["Retry-After"]
    return response
