"""Request ids and JSON log lines (``LOG_FORMAT=json``).

Every request gets an id: the caller's ``X-Request-ID`` when it sends a sane one (a proxy or
load balancer that already assigned one), else a new one. It is returned in the response's
``X-Request-ID`` header and attached to every log record written while the request (or a Celery
task, whose id stands in) is handled, so one line in a collector leads to the others.
"""

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

from django.core.signals import request_finished
from django.dispatch import receiver

request_id_var: ContextVar[str] = ContextVar("request_id", default="")

REQUEST_ID_HEADER = "X-Request-ID"
# Ids taken from a caller: letters, digits and - _ . : only, at most 128 characters, the whole
# value (fullmatch: ``$`` would also match before a trailing newline).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# LogRecord attributes that are not extras passed by the caller.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
}


class RequestIdMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if _SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        request.request_id = request_id
        # Kept until the response is closed (request_finished, below): Django logs a 4xx after
        # the middleware has returned.
        request_id_var.set(request_id)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


@receiver(request_finished)
def _request_id_forget(**kwargs) -> None:
    request_id_var.set("")


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (empty outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class ClientErrorFilter(logging.Filter):
    """On ``django.request``: a 4xx (a refused page, a missing one) is logged as one line, without
    the traceback Django attaches to it; a 5xx keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", 500) < 500:
            record.exc_info = None
            record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, the
    exception when there is one, and any ``extra={...}`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "") or request_id_var.get(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        return json.dumps(entry, default=str)
