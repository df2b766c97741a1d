"""Liveness, readiness and metrics endpoints for probes, load balancers and Prometheus.

- ``/healthz``: the process answers (touches nothing else: no database, no broker).
- ``/readyz``: the database answers, the broker answers, and every queue has at least one live
  worker, by the heartbeats the workers write (sampler.workers), so a probe costs one query
  and one broker round trip, never a broadcast to every worker. 200 when ready, else 503; the
  JSON body says which part failed.
- ``/metrics``: Prometheus text format (config/metrics.py), for a token or an allowed network.

The middleware answers these paths before anything else runs: a probe sends whatever Host
header its network gives it (not one of ALLOWED_HOSTS), over plain HTTP (no HTTPS redirect),
and without a session (no login redirect).
"""

import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponseNotAllowed, JsonResponse

from config.broker import BrokerUnavailable, broker_ping
from config.celery import Queue
from config.metrics import metrics_view
from sampler.workers.selectors import workers_live_by_queue

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": _check_database(),
        "broker": _check_broker(),
    }
    checks["workers"] = (
        _check_workers()
        if checks["database"]["ok"]
        else {"ok": False, "error": "unknown: the database is down"}
    )
    ready = all(check["ok"] for check in checks.values())
    response = JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
    if not ready:
        # "Not ready" is the probe's answer, not a server error: one warning that says why,
        # instead of django.request's ERROR line for a 5xx (which Sentry would report), as
        # every poll while the workers start would otherwise leave.
        failed = [f"{name}: {check['error']}" for name, check in checks.items() if not check["ok"]]
        logger.warning("Not ready: %s", "; ".join(failed))
        response._has_been_logged = True  # Django's own marker for "logged already"
    return response


def ready_queues() -> list[str]:
    """The queues that need a live worker: ``READY_QUEUES``, or every queue."""
    return settings.READY_QUEUES or [queue.value for queue in Queue]


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        logger.warning("Readiness: database unavailable: %s", error)
        # The class only: a probe's answer is no place for host names and credentials.
        return {"ok": False, "error": type(error).__name__}
    return {"ok": True}


def _check_broker() -> dict:
    try:
        broker_ping(timeout=settings.BROKER_PROBE_TIMEOUT)
    except BrokerUnavailable as error:
        logger.warning("Readiness: broker unavailable: %s", error)
        return {"ok": False, "error": str(error).split(":", 1)[0]}
    return {"ok": True}


def _check_workers() -> dict:
    try:
        live = workers_live_by_queue()
    except DatabaseError as error:
        logger.warning("Readiness: worker heartbeats unreadable: %s", error)
        return {"ok": False, "error": type(error).__name__}
    queues = ready_queues()
    missing = [queue for queue in queues if not live.get(queue)]
    result = {"ok": not missing, "live": {queue: live.get(queue, 0) for queue in queues}}
    if missing:
        result["error"] = "no live worker for " + ", ".join(missing)
    return result


ENDPOINTS = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics_view}


def operations_headers() -> dict[str, str]:
    """What the security middleware sets on every other response, from the same settings (the
    rest of the site's headers come from the middleware above this one)."""
    headers = {}
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers["X-Content-Type-Options"] = "nosniff"
    if settings.SECURE_REFERRER_POLICY:
        headers["Referrer-Policy"] = settings.SECURE_REFERRER_POLICY
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers["Cross-Origin-Opener-Policy"] = settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
    return headers


class OperationsEndpointsMiddleware:
    """Answers ``ENDPOINTS`` ahead of host validation, HTTPS redirects and login (see above);
    every other request goes on down the stack."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        view = ENDPOINTS.get(request.path_info)
        if view is None:
            return self.get_response(request)
        if request.method not in {"GET", "HEAD"}:
            response = HttpResponseNotAllowed(["GET", "HEAD"])
        else:
            response = view(request)
        # Answered above the security middleware: its headers are set here.
        for name, value in operations_headers().items():
            response.setdefault(name, value)
        return response
