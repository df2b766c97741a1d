from django.db import migrations, models


def mark_candidates(apps, schema_editor):
    """Alternatives sampled for ranking so far: the messages of ranking jobs' samples."""
    Message = apps.get_model("labeling", "Message")
    Message.objects.filter(sample__job__purpose="ranking").update(is_candidate=True)


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0006_attack_run_job"),
        ("sampler", "0005_job_lifecycle_and_backends"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="is_candidate",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(mark_candidates, migrations.RunPython.noop),
    ]
