from django.db import migrations

TRAINER_GROUP = "trainer"


def create_trainer_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.get_or_create(name=TRAINER_GROUP)


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_trainer_group, migrations.RunPython.noop)]
