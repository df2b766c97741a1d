"""Request ids and JSON log lines."""

import io
import json
import logging
import re

import pytest
from django.test import Client

from config.log import JsonFormatter, RequestIdFilter, request_id_var


def _json_handler() -> tuple[logging.Handler, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    return handler, stream


def test_a_json_line_has_time_level_logger_message_request_id_extras_and_the_exception():
    handler, stream = _json_handler()
    logger = logging.getLogger("tandem.test.json")
    logger.addHandler(handler)
    token = request_id_var.set("req-123")
    try:
        try:
            raise ValueError("broken")
        except ValueError:
            logger.exception("job %s failed", 7, extra={"job_id": 7})
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)

    entry = json.loads(stream.getvalue())
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "tandem.test.json"
    assert entry["message"] == "job 7 failed"
    assert entry["request_id"] == "req-123"
    assert entry["job_id"] == 7
    assert "ValueError: broken" in entry["exception"]
    assert entry["time"].endswith("+00:00")


def test_every_response_carries_a_request_id_and_its_log_lines_the_same(db):
    handler, stream = _json_handler()
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        response = Client().get("/api/no-such-endpoint/")  # a 404, logged by Django
    finally:
        logger.removeHandler(handler)

    request_id = response["X-Request-ID"]
    assert len(request_id) == 32
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines and all(line["request_id"] == request_id for line in lines)


def test_a_sane_request_id_from_the_caller_is_kept_and_any_other_replaced(db):
    kept = Client().get("/accounts/login/", HTTP_X_REQUEST_ID="lb-7f3a.9:2")
    replaced = Client().get("/accounts/login/", HTTP_X_REQUEST_ID="<script>" + "x" * 200)

    assert kept["X-Request-ID"] == "lb-7f3a.9:2"
    assert replaced["X-Request-ID"] != "<script>" and len(replaced["X-Request-ID"]) == 32


@pytest.mark.parametrize("offered", ["abc\n", "good-id<script>", "good-id extra", "\ngood-id"])
def test_a_request_id_with_anything_around_a_sane_one_is_replaced_whole(db, offered):
    """Only an id that is sane from its first character to its last is kept: one with a
    trailing newline, or more after a sane start, is neither echoed nor logged."""
    response = Client().get("/accounts/login/", HTTP_X_REQUEST_ID=offered)

    assert response.status_code == 200
    request_id = response["X-Request-ID"]
    assert request_id != offered and len(request_id) == 32
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
