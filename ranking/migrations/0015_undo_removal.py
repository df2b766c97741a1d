# The rows an undo deletes (its ranking, the leases it gives back), remembered for their trainer so
# that a later request on one is told it is gone (409), not that it never existed (404).

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ranking', '0014_ranking_rationale_line_breaks'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='UndoRemoval',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('ranking_id', models.PositiveBigIntegerField(blank=True, db_index=True, null=True)),
                ('assignment_id', models.PositiveBigIntegerField(blank=True, db_index=True, null=True)),
                ('removed_at', models.DateTimeField()),
                ('trainer', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('assignment_id__isnull', False), ('ranking_id__isnull', True)), models.Q(('assignment_id__isnull', True), ('ranking_id__isnull', False)), _connector='OR'), name='undo_removal_one_row')],
            },
        ),
    ]
