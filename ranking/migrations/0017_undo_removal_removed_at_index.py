# The hourly prune of undo memos (ranking.rank.services.undo_removals_delete_expired) deletes
# the rows older than UNDO_REMOVAL_TTL_SECONDS by removed_at alone: an index on it, so that it
# reads the old rows, not the whole table. (The table holds about a week of undos.)

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ranking', '0016_project_name_one_line'),
    ]

    operations = [
        migrations.AlterField(
            model_name='undoremoval',
            name='removed_at',
            field=models.DateTimeField(db_index=True),
        ),
    ]
