"""The account page: the user's API tokens (create, list, revoke)."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
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


@require_GET
def account(request: HttpRequest) -> HttpResponse:
    return _page(request, form=ApiTokenCreateForm())


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
    # Rendered, not redirected: the token is shown this once and is not stored anywhere.
    response = _page(request, form=ApiTokenCreateForm(), created_secret=created.secret)
    response.headers["Cache-Control"] = "no-store"
    return response


@require_POST
def api_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        token = services.api_token_revoke(user=request.user, token_id=token_id)
    except ApiToken.DoesNotExist as error:
        raise Http404("No such token.") from error
    messages.success(request, f"Token {token.prefix}… ({token.name}) revoked.")
    return redirect("accounts:account")
