"""Error reporting: off (sentry-sdk not even imported) without SENTRY_DSN; with it, Django and
Celery integrations on, and an error in a view reaches the DSN's server."""

import gzip
import importlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import os, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
print("imported", "sentry_sdk" in sys.modules)
if os.environ.get("SENTRY_DSN"):
    import sentry_sdk
    client = sentry_sdk.get_client()
    print("integrations", *sorted(client.integrations))
    from django.test import Client
    from django.test.utils import setup_test_environment
    setup_test_environment()
    from django.urls import path
    import config.urls

    def broken(request):
        raise RuntimeError("a bug in a view")

    config.urls.urlpatterns.append(path("api/broken/", broken))  # no login needed
    response = Client(raise_request_exception=False).get("/api/broken/")
    print("status", response.status_code)
    sentry_sdk.flush(timeout=10)
"""


def _run(tmp_path, **env: str) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"SENTRY_DSN", "DATABASE_URL"}}
    environment.update(env, VAR_DIR=str(tmp_path), ALLOWED_HOSTS="testserver")
    return run_python("-c", SCRIPT, env=environment).stdout.splitlines()


def test_without_a_dsn_sentry_is_not_even_imported(tmp_path):
    assert _run(tmp_path) == ["imported False"]


def test_with_a_dsn_an_error_in_a_view_is_sent_with_the_django_and_celery_integrations(tmp_path):
    received: list[bytes] = []

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            encoding = self.headers.get("Content-Encoding")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "br":  # sentry-sdk prefers brotli when it is installed
                body = importlib.import_module("brotli").decompress(body)
            received.append(self.path.encode() + b" " + body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dsn = f"http://publickey@127.0.0.1:{server.server_port}/42"
        printed = _run(tmp_path, SENTRY_DSN=dsn)
    finally:
        server.shutdown()

    assert printed[0] == "imported True"
    assert {"celery", "django"} <= set(printed[1].split()[1:])
    assert printed[2] == "status 500"
    assert any(
        body.startswith(b"/api/42/envelope/") and b"a bug in a view" in body for body in received
    )
