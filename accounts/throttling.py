"""Throttling for API clients without valid credentials.

DRF runs authentication, then permissions, then throttles: a request without (valid)
credentials gets its 401 before DRF's AnonRateThrottle is consulted, so that throttle never
slows down a client that guesses tokens or passwords. This middleware counts the 401s that
``/api/`` answers per client address; past ``API_THROTTLE_ANON`` within its window, the next
ones become 429 with ``Retry-After``. Requests with valid credentials never get a 401, so they
are never counted and cost no cache lookup here (their rate is DRF's UserRateThrottle)."""

from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.throttling import AnonRateThrottle


class _FailureRate(AnonRateThrottle):
    scope = "anon"
    cache_format = "throttle_api_401_%(ident)s"

    def get_rate(self) -> str:
        return settings.API_THROTTLE_ANON


class AnonymousApiThrottleMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 401 or not request.path_info.startswith("/api/"):
            return response
        rate = _FailureRate()
        key = rate.cache_format % {"ident": rate.get_ident(request)}
        now = rate.timer()
        history = [moment for moment in cache.get(key, []) if moment > now - rate.duration]
        if len(history) >= rate.num_requests:
            wait = max(1, round(history[0] + rate.duration - now))
            return JsonResponse(
                {"detail": f"Too many unauthenticated requests: try again in {wait} seconds."},
                status=429,
                headers={"Retry-After": str(wait)},
            )
        cache.set(key, [*history, now], rate.duration)
        return response
