"""The account page: the user's API tokens (create, list, revoke)."""

import base64
import secrets

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts import selectors, services
from accounts.forms import ApiTokenCreateForm
from accounts.models import ApiToken


def _page(
    request: HttpRequest, *, form: ApiTokenCreateForm, created_secret: str = "", status: int = 200
) -> HttpResponse:
    context = {
        "form": form,
        "tokens": selectors.api_token_list(user=request.user),
        "created_secret": created_secret,
    }
    return render(request, "accounts/account.html", context, status=status)


# A new token goes from the POST that makes it to the GET that shows it (post/redirect/get, so a
# reload does not make another) split in two: the session holds it XORed with a random pad of
# its length, a short-lived cookie holds the pad. Neither reveals it alone, so no table (the
# session's included) ever holds it in plain text; the GET takes both and shows it once.
NEW_TOKEN_SESSION_KEY = "accounts_new_token"
NEW_TOKEN_COOKIE = "tandem_new_token_pad"
NEW_TOKEN_COOKIE_SECONDS = 300


def _xor(data: bytes, pad: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pad, strict=True))


def _new_token_keep(request: HttpRequest, response: HttpResponse, secret: str) -> None:
    data = secret.encode()
    pad = secrets.token_bytes(len(data))
    request.session[NEW_TOKEN_SESSION_KEY] = base64.b64encode(_xor(data, pad)).decode()
    response.set_cookie(
        NEW_TOKEN_COOKIE,
        base64.urlsafe_b64encode(pad).decode(),
        max_age=NEW_TOKEN_COOKIE_SECONDS,
        path=reverse("accounts:account"),
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Strict",
    )


def _new_token_take(request: HttpRequest) -> str:
    """The token made by the last POST, once ('' if none, or if either half is missing)."""
    masked = request.session.pop(NEW_TOKEN_SESSION_KEY, None)
    pad = request.COOKIES.get(NEW_TOKEN_COOKIE)
    if not masked or not pad:
        return ""
    try:
        return _xor(base64.b64decode(masked), base64.urlsafe_b64decode(pad)).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


@require_GET
def account(request: HttpRequest) -> HttpResponse:
    created_secret = _new_token_take(request)
    response = _page(request, form=ApiTokenCreateForm(), created_secret=created_secret)
    if NEW_TOKEN_COOKIE in request.COOKIES:
        response.delete_cookie(
            NEW_TOKEN_COOKIE, path=reverse("accounts:account"), samesite="Strict"
        )
    if created_secret:
        response.headers["Cache-Control"] = "no-store"
    return response


@require_POST
def api_token_create(request: HttpRequest) -> HttpResponse:
    form = ApiTokenCreateForm(request.POST)
    if not form.is_valid():
        return _page(request, form=form, status=422)
    try:
        created = services.api_token_create(user=request.user, name=form.cleaned_data["name"])
    except ValidationError as error:
        form.add_error(None, error)
        return _page(request, form=form, status=422)
    # Redirected, so that reloading the page does not make another token; the account page
    # shows it this once.
    response = redirect("accounts:account")
    _new_token_keep(request, response, created.secret)
    return response


@require_POST
def api_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        token = services.api_token_revoke(user=request.user, token_id=token_id)
    except ApiToken.DoesNotExist as error:
        raise Http404("No such token.") from error
    messages.success(request, f"Token {token.prefix}… ({token.name}) revoked.")
    return redirect("accounts:account")
