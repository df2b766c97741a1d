# Feedback that says nothing (no thumb, no report, no filter report) is deleted as it empties;
# the rows a thumb taken back or an emptied report left before go too, so the admins' overview
# and a trainer's own list count only feedback that says something.

from django.db import migrations


def _delete_saying_nothing(apps, schema_editor):
    apps.get_model("labeling", "Feedback").objects.filter(
        rating="", categories=[], comment="", filter_report=""
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0012_attack_result_outlives_withdrawal"),
    ]

    operations = [
        migrations.RunPython(_delete_saying_nothing, migrations.RunPython.noop, elidable=True),
    ]
