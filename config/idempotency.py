"""``Idempotency-Key`` on the API's creating POSTs: a client that retries after a timeout or a
dropped connection gets the first answer back instead of a second turn, conversation or job.

``@idempotent`` on a view's ``post``: without the header the request is handled as before;
with it, ``accounts.services.idempotent_perform`` runs the handler once per user and key and
stores its answer (status and JSON body) with the key, in the transaction of its writes. A
retry with the same key, path and body gets that answer with ``Idempotent-Replayed: true`` and
writes nothing; the same key with another path or body is a 422; a handler that raised (a 400
about a field, a 404) stored nothing, so the request can be sent again with the same key.
Bodies are compared as the JSON the API's parser reads (``request.data``; the API takes no
other body), by a hash of it written one way: a client that serialises the same JSON again for
its retry (another key order, other spaces or escapes) sends the same request. A body the
parser refuses is answered so before the key's row is looked up. Keys stored while bodies were
compared byte for byte hold a hash of the bytes, and still answer a retry of those bytes (a
browser session's body is read by its CSRF check before the view: its keys are compared as JSON
only).
Keys are kept ``IDEMPOTENCY_KEY_TTL_SECONDS``; ``accounts.tasks.delete_expired_idempotency_keys``
deletes older ones. The schema documents the header on each such operation
(``config.api_schema``).
"""

from __future__ import annotations

import functools
import json
import re

from django.http.request import RawPostDataException
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from accounts.services import (
    IdempotencyKeyBusy,
    IdempotencyKeyReused,
    IdempotentRequest,
    idempotent_perform,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Printable ASCII, 1 to 255 characters; no space at either end (servers and proxies trim them,
# so such a key would not arrive as sent).
KEY_PATTERN = re.compile(r"[!-~]([ -~]{0,253}[!-~])?")
# Set on a decorated handler: the schema documents the header on its operation.
IDEMPOTENT_ATTRIBUTE = "takes_idempotency_key"


def idempotent(handler):
    """Decorate a view's ``post`` (after authentication and permissions: the key is the
    user's) so that an ``Idempotency-Key`` makes its retries safe."""

    @functools.wraps(handler)
    def post(view, request: Request, *args, **kwargs) -> Response:
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not KEY_PATTERN.fullmatch(key):
            return _error(
                status.HTTP_400_BAD_REQUEST,
                f"The {IDEMPOTENCY_HEADER} header must be 1 to 255 printable ASCII characters, "
                "with no space at either end.",
            )
        try:
            body = request.body
        except RawPostDataException:
            # The session's CSRF check read the body before the view (through the API's parser,
            # or as a form): its bytes are gone, what the parser read (or refuses) is there.
            body = None
        # The body as the view reads it, through the API's parser (which refuses a repeated key
        # or a body nested too deep, or a form): the retry of the same JSON written otherwise
        # (another key order, other spaces) is the same request. A body it refuses is answered
        # so here, as the view would have.
        data = request.data
        first: list[Response] = []

        def perform() -> tuple[int, object]:
            response = handler(view, request, *args, **kwargs)
            first.append(response)
            return response.status_code, _json_value(response.data)

        try:
            answer = idempotent_perform(
                request=IdempotentRequest(
                    user=request.user,
                    key=key,
                    method=request.method,
                    path=request.get_full_path(),
                    body=body,
                    data=data,
                ),
                perform=perform,
            )
        except IdempotencyKeyReused:
            return _error(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                f"This {IDEMPOTENCY_HEADER} was used for another request (another path or "
                "body); send a new key with a new request.",
            )
        except IdempotencyKeyBusy:
            return _error(
                status.HTTP_409_CONFLICT,
                f"A request with this {IDEMPOTENCY_HEADER} is being handled; send it again.",
                headers={"Retry-After": "1"},
            )
        if not answer.replayed:
            return first[0]
        return Response(answer.body, status=answer.status_code, headers={REPLAYED_HEADER: "true"})

    setattr(post, IDEMPOTENT_ATTRIBUTE, True)
    return post


def _error(code: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return Response({"detail": detail}, status=code, headers=headers)


def _json_value(data: object) -> object:
    """``data`` as the renderer writes it (dates as text, decimals as numbers), to store."""
    return json.loads(json.dumps(data, cls=JSONEncoder))
