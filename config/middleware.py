from django.contrib.auth.middleware import LoginRequiredMiddleware


class LoginRequiredExceptApiMiddleware(LoginRequiredMiddleware):
    """Every page needs a login; the JSON API answers 401/403 itself instead of redirecting.

    DRF's default permission (IsAuthenticated) and each API view's role permission guard
    ``/api/``; a redirect to an HTML login form would be the wrong answer for an API client.
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
