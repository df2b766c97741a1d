"""Throttling for API clients without valid credentials.

DRF runs authentication, then permissions, then throttles: a request without (valid)
credentials gets its 401 before DRF's AnonRateThrottle is consulted, so that throttle never
slows down a client that guesses tokens or passwords. This middleware counts the 401s that
``/api/`` answers per client address; past ``API_THROTTLE_ANON`` within its window, the next
ones become 429 with ``Retry-After``. Requests with valid credentials never get a 401, so they
are never counted and cost no cache lookup here (their rate is DRF's UserRateThrottle).

The counters live in the cache, in production the broker's Redis: while it is down a request
is answered as if nothing were counted (one warning in the log), never with a server error.
"""

import logging
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from redis.exceptions import RedisError
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)

# What a cache that is down raises (Django's Redis cache: redis-py's errors; a socket's).
CACHE_ERRORS = (RedisError, OSError)


def _cache_down(error: BaseException) -> None:
    logger.warning("API throttling is off while the cache is unreachable: %s", error)


class _LetThroughWhileCacheDown:
    """A DRF throttle whose request is let through while the cache is unreachable."""

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except CACHE_ERRORS as error:
            _cache_down(error)
            return True


class UserRateThrottleUnlessCacheDown(_LetThroughWhileCacheDown, UserRateThrottle):
    """DRF's per-user rate; a request is let through while the cache is unreachable."""


class AnonRateThrottleUnlessCacheDown(_LetThroughWhileCacheDown, AnonRateThrottle):
    """DRF's per-address rate; a request is let through while the cache is unreachable."""


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
        try:
            history = [moment for moment in cache.get(key, []) if moment > now - rate.duration]
            if len(history) >= rate.num_requests:
                wait = max(1, round(history[0] + rate.duration - now))
                return JsonResponse(
                    {"detail": f"Too many unauthenticated requests: try again in {wait} seconds."},
                    status=429,
                    headers={"Retry-After": str(wait)},
                )
            cache.set(key, [*history, now], rate.duration)
        except CACHE_ERRORS as error:
            _cache_down(error)
        return response
