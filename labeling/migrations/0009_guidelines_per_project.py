# Every project numbers its own guideline versions; the versions that exist move into the
# default project (made here when missing), keeping their numbers.

import django.db.models.deletion
import ranking.projects.models
from django.conf import settings
from django.db import migrations, models


def _fill_default_project(apps, schema_editor):
    Project = apps.get_model("ranking", "Project")
    project, _ = Project.objects.get_or_create(
        slug="default", defaults={"name": "Default project", "status": "active"}
    )
    GuidelineVersion = apps.get_model("labeling", "GuidelineVersion")
    GuidelineVersion.objects.filter(project__isnull=True).update(project=project)


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0008_project_scoping'),
        ('ranking', '0007_uncertainty_selection'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='guidelineversion',
            options={'ordering': ['project', '-number']},
        ),
        migrations.AddField(
            model_name='guidelineversion',
            name='project',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='guideline_versions', to='ranking.project'),
        ),
        migrations.RunPython(_fill_default_project, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='guidelineversion',
            name='project',
            field=models.ForeignKey(blank=True, default=ranking.projects.models.project_default_id, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='guideline_versions', to='ranking.project'),
        ),
        migrations.AlterField(
            model_name='guidelineversion',
            name='number',
            field=models.PositiveIntegerField(),
        ),
        migrations.AddConstraint(
            model_name='guidelineversion',
            constraint=models.UniqueConstraint(fields=('project', 'number'), name='guideline_number_once_per_project'),
        ),
    ]
