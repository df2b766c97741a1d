"""Take credentials (``user:password@``) out of the ``base_url`` of model versions saved before
such URLs were refused: the database is no place for a secret, and job errors name the URL.
The key is given through ``api_key_env`` instead; a version that relied on the credentials gets
the server's refusal until an admin sets that."""

from urllib.parse import urlsplit, urlunsplit

from django.db import migrations


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


def forwards(apps, schema_editor):
    ModelVersion = apps.get_model("sampler", "ModelVersion")
    for version in ModelVersion.objects.filter(backend_options__has_key="base_url").iterator():
        url = version.backend_options.get("base_url")
        if isinstance(url, str) and "@" in urlsplit(url).netloc:
            version.backend_options["base_url"] = _without_credentials(url)
            version.save(update_fields=["backend_options"])


class Migration(migrations.Migration):
    dependencies = [
        ("sampler", "0009_model_version_name_one_line"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
