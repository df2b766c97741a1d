# An edit of an imported model-written turn (no sample here) names that turn, so an edit of the
# edit is measured against the model's text too, not against the previous edit. Edits saved
# before keep no link: an edit of one of them is measured against its own text, as before.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0013_feedback_saying_nothing_deleted"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="model_original",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="labeling.message",
            ),
        ),
        migrations.AddConstraint(
            model_name="message",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("origin", "human"), _negated=True),
                    ("model_original__isnull", True),
                    _connector="OR",
                ),
                name="message_human_origin_has_no_model_original",
            ),
        ),
    ]
