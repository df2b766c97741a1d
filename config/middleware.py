from urllib.parse import unquote_to_bytes, urlencode, urlsplit

from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.wsgi import get_bytes_from_wsgi
from django.http import HttpResponse
from django.middleware.common import CommonMiddleware
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from config.api import is_api_request, not_utf8_response


class CommonExceptApiSlashMiddleware(CommonMiddleware):
    """Django's ``CommonMiddleware``, except that an API path is never redirected to add its
    trailing slash: a client would send its POST again as a GET, without the body (and under
    DEBUG Django raises instead). ``config.api.ApiErrorMiddleware`` answers a JSON 404 that
    names the path with the slash."""

    def should_redirect_with_slash(self, request) -> bool:
        if is_api_request(request):
            return False
        return super().should_redirect_with_slash(request)


class LoginRequiredExceptApiMiddleware(LoginRequiredMiddleware):
    """Every page needs a login; the JSON API answers 401/403 itself instead of redirecting.

    DRF's default permission (IsAuthenticated) and each API view's role permission guard
    ``/api/``; a redirect to an HTML login form would be the wrong answer for an API client.

    An htmx request that meets an expired session gets a 401 instead of the login page (which
    htmx would swap into the page, over what the user was typing). Its ``X-Login-Url`` header
    is the login page with ``next`` set to the page the request came from (``HX-Current-URL``);
    static/js/tandem.js keeps the text and goes there.
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)

    def handle_no_permission(self, request, view_func):
        if request.headers.get("HX-Request") != "true":
            return super().handle_no_permission(request, view_func)
        current = request.headers.get("HX-Current-URL", "")
        next_url = "/"
        if current and url_has_allowed_host_and_scheme(
            current, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            parts = urlsplit(current)
            next_url = parts.path + (f"?{parts.query}" if parts.query else "")
        login_url = resolve_url(self.get_login_url(view_func))
        response = HttpResponse(
            "Your session has expired: log in again. What you typed is kept.",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["X-Login-Url"] = f"{login_url}?{urlencode({'next': next_url})}"
        return response


class PageMethodNotAllowedMiddleware:
    """A page's address visited with a method it does not take (a GET of an address that only a
    form posts to, such as ``/write/new/``) gets a page saying so, with a way back, instead of
    Django's empty 405. The status and its ``Allow`` header stay; the API answers its own 405s
    in JSON, and an htmx request keeps the bare one (its error handler shows a message)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code == 405
            and not response.content
            and not is_api_request(request)
            and request.headers.get("HX-Request") != "true"
        ):
            page = render(
                request,
                "405.html",
                {"allowed": response.get("Allow", "")},
                status=405,
            )
            page["Allow"] = response.get("Allow", "")
            return page
        return response


class AdminNumberTooLargeMiddleware:
    """An admin list page filtered by a number the database cannot hold (a hand-written address
    such as ``?model_version=999999999999999999999999``: the admin takes any of the model's
    fields as a filter) gets a 400 page saying so, with a way back to the unfiltered list, not
    a 500. SQLite stores integers of 64 bits and its driver refuses a larger one when the query
    runs (``OverflowError``); PostgreSQL compares it and finds nothing. Only under the admin:
    the project's own pages and the API check their numbers before they query. The page is
    ``number_too_large.html``, not ``400.html``: Django renders that one for every bad request
    of a page (a host it does not serve, a form of too many fields)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OverflowError):
            return None
        admin_root = reverse("admin:index")
        if not request.path_info.startswith(admin_root):
            return None
        return render(request, "number_too_large.html", {"back": request.path}, status=400)


def _is_utf8(encoded: bytes) -> bool:
    """Whether URL-encoded text (``+`` for spaces, ``%XX`` escapes, raw bytes) decodes as UTF-8.
    Strict: an encoded surrogate half (``%ED%A0%80``) is not UTF-8 either."""
    try:
        unquote_to_bytes(encoded.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class TextEncodingMiddleware:
    """A query string, or a URL-encoded form body, that is not UTF-8 gets a 400 saying so
    (JSON under ``/api/``) instead of reaching a view: Django decodes such bytes to U+FFFD, and
    a title or reply would be stored changed without a word. A real U+FFFD sent as UTF-8 is
    kept. (Django refuses a URL-encoded body that declares another charset itself.) A multipart
    body (a form with a file) is not read here, since a view that takes a file installs its
    upload handlers first: its text fields are checked while Django parses it
    (``config.uploads.FormTextUtf8Only``), with the same answer, and an uploaded file's text
    where it is read. A body over the size limit is left to Django's own refusal."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        where = None
        if not _is_utf8(get_bytes_from_wsgi(request.META, "QUERY_STRING", "")):
            where = "address's query"
        elif request.content_type == "application/x-www-form-urlencoded":
            try:
                body = request.body
            except RequestDataTooBig:
                return self.get_response(request)
            if not _is_utf8(body):
                where = "form's text"
        if where is None:
            return self.get_response(request)
        return not_utf8_response(request, where)
