"""Web processes stay light: loading the URL configuration and serving pages (the API that
validates backend options included) never imports torch, transformers, vllm or openai."""

from tests.conftest import run_python

SCRIPT = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
import config.urls
from django.contrib.auth import get_user_model
from django.test import Client
admin = get_user_model().objects.create_superuser(username="ada", password="x-Long-passw0rd")
client = Client()
client.force_login(admin)
for url in ["/", "/api/model-versions/", "/admin/sampler/modelversion/add/"]:
    assert client.get(url).status_code == 200, url
response = client.post(
    "/api/model-versions/",
    {"name": "served", "backend": "openai", "context_length": 512,
     "backend_options": {"base_url": "http://vllm:8000/v1", "model": "m"}},
    content_type="application/json",
)
assert response.status_code == 201, response.content
heavy = sorted(
    name for name in ("torch", "transformers", "vllm", "openai") if name in sys.modules
)
print("heavy:", ",".join(heavy) or "none")
"""


def test_the_web_process_never_imports_the_model_libraries(tmp_path):
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'web.sqlite3'}",
        "SECRET_KEY": "a-test-secret-key-that-is-long-enough-0123456789",
        "ALLOWED_HOSTS": "testserver",
    }
    result = run_python("-c", SCRIPT, env=environment)
    assert "heavy: none" in result.stdout, result.stdout
