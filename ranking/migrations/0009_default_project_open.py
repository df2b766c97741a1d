"""The default project is open to every trainer (work made without a project lands in it):
trainer groups an earlier install gave it are removed, as the project services now refuse
them."""

from django.db import migrations


def open_default_project(apps, schema_editor):
    Project = apps.get_model("ranking", "Project")
    for project in Project.objects.filter(slug="default"):
        project.trainer_groups.clear()


class Migration(migrations.Migration):
    dependencies = [
        ("ranking", "0008_trust_estimates"),
    ]

    operations = [
        migrations.RunPython(open_default_project, migrations.RunPython.noop),
    ]
