from django.conf import settings
from django.db import migrations, models


def release_extra_claims(apps, schema_editor):
    """Before the index exists a reviewer may hold several claims: keep the one that expires
    last and put the others back in the queue."""
    ReviewItem = apps.get_model("reviews", "ReviewItem")
    kept: set[int] = set()
    extra = []
    for pk, reviewer in (
        ReviewItem.objects.filter(state="claimed")
        .order_by("claimed_by_id", "-claim_expires_at", "-pk")
        .values_list("pk", "claimed_by_id")
    ):
        if reviewer in kept:
            extra.append(pk)
        else:
            kept.add(reviewer)
    ReviewItem.objects.filter(pk__in=extra).update(state="open", claimed_by=None, claim_expires_at=None)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0009_review_item_mode_fallback_reopened"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(release_extra_claims, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="reviewitem",
            constraint=models.UniqueConstraint(
                condition=models.Q(("state", "claimed")), fields=("claimed_by",), name="item_one_claim_per_reviewer"
            ),
        ),
    ]
