from django.conf import settings
from django.db import migrations, models


def assign_existing_reviewers(apps, schema_editor):
    """Before this migration every reviewer saw every source; keep it so for the reviewers and
    sources that exist, and let admins narrow it down."""
    Source = apps.get_model("reviews", "Source")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    reviewers = list(User.objects.filter(groups__name="reviewers").distinct())
    for source in Source.objects.all():
        source.reviewers.add(*reviewers)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0006_choice_labels"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="source",
            name="reviewers",
            field=models.ManyToManyField(
                blank=True,
                help_text="Reviewers who may see and decide this source's review items. Admins see every source.",
                related_name="review_sources",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(assign_existing_reviewers, migrations.RunPython.noop),
    ]
