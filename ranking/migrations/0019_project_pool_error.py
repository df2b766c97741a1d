# Why the last fill of a project's pool failed, kept on the project for its page (empty: it did
# not). A default in the database too: code from before the column still saves projects while
# the schema is migrated.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ranking', '0018_project_name_and_slug_unique_any_case'),
    ]

    operations = [
        migrations.AddField(
            model_name='project',
            name='pool_error',
            field=models.TextField(blank=True, db_default='', default='', editable=False),
        ),
    ]
