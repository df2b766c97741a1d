# A project's name is one line (config.text.validate_one_line), wherever it is written: the API,
# the Projects page and the Django admin refuse a line break or other control character in it.
# The validator changes no column; a name stored before is kept as it is.

import config.text
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ranking', '0015_undo_removal'),
    ]

    operations = [
        migrations.AlterField(
            model_name='project',
            name='name',
            field=models.CharField(max_length=200, unique=True, validators=[config.text.validate_one_line]),
        ),
    ]
