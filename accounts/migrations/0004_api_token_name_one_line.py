# A token's name is one line (config.text.validate_one_line), as the Account page's list and
# `manage.py api_token list` show it. Names stored before with a line break or another control
# character in them are made one line, as a conversation's title was (labeling 0016): each run
# of whitespace, line breaks and control characters is one space; a name left empty so is
# "Unnamed token" (a token always has a name). Only those rows are read and written.

import config.text
from django.db import migrations, models


def _names_as_one_line(apps, schema_editor):
    ApiToken = apps.get_model("accounts", "ApiToken")
    config.text.rows_as_one_line(ApiToken.objects.all(), "name", empty="Unnamed token")


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0003_idempotency_keys'),
    ]

    operations = [
        migrations.RunPython(_names_as_one_line, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name='apitoken',
            name='name',
            field=models.CharField(help_text='What the token is for (a script, a host).', max_length=100, validators=[config.text.validate_one_line]),
        ),
    ]
