# A guidelines version's change note is one line (config.text.validate_one_line), as the banner
# and the versions table show it. Notes stored before with a line break or another control
# character in them are made one line, as a conversation's title was (labeling 0016): each run
# of whitespace, line breaks and control characters is one space (what the page showed). Only
# those rows are read and written.

import config.text
from django.db import migrations, models


def _change_notes_as_one_line(apps, schema_editor):
    GuidelineVersion = apps.get_model("labeling", "GuidelineVersion")
    config.text.rows_as_one_line(GuidelineVersion.objects.all(), "change_note")


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0024_draft_role'),
    ]

    operations = [
        migrations.RunPython(_change_notes_as_one_line, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name='guidelineversion',
            name='change_note',
            field=models.CharField(blank=True, max_length=300, validators=[config.text.validate_one_line]),
        ),
    ]
