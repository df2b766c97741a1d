# A conversation's title is one line (config.text.validate_one_line), wherever it is written.
# Titles stored before, through the API or an import, with a line break or another control
# character in them are made one line, as an import makes the title it takes from a turn: each
# run of whitespace, line breaks and control characters is one space. Only those rows are
# read; their updated_at is left as it was (the list's order does not change).

import config.text
from django.db import migrations, models

# Control characters (NUL aside: no column holds it) and the line and paragraph separators.
NOT_IN_A_LINE = "[\x01-\x1f\x7f-\x9f\u2028\u2029]"


def _titles_as_one_line(apps, schema_editor):
    Conversation = apps.get_model("labeling", "Conversation")
    changed = []
    for conversation in (
        Conversation.objects.filter(title__regex=NOT_IN_A_LINE).only("pk", "title").iterator()
    ):
        conversation.title = config.text.as_one_line(conversation.title)
        changed.append(conversation)
    Conversation.objects.bulk_update(changed, ["title"], batch_size=500)


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0015_text_line_breaks_as_newlines'),
    ]

    operations = [
        migrations.RunPython(_titles_as_one_line, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name='conversation',
            name='title',
            field=models.CharField(blank=True, max_length=200, validators=[config.text.validate_one_line]),
        ),
    ]
