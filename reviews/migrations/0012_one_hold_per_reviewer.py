from django.conf import settings
from django.db import migrations, models


def release_extra_holds(apps, schema_editor):
    """Before the wider index exists an admin may hold a claim and an escalation: keep the hold
    that expires last and let go of the others (a claimed item reopens, an escalation stays
    escalated)."""
    ReviewItem = apps.get_model("reviews", "ReviewItem")
    kept: set[int] = set()
    extra = []
    for pk, reviewer in (
        ReviewItem.objects.filter(state__in=["claimed", "escalated"], claimed_by__isnull=False)
        .order_by("claimed_by_id", "-claim_expires_at", "-pk")
        .values_list("pk", "claimed_by_id")
    ):
        if reviewer in kept:
            extra.append(pk)
        else:
            kept.add(reviewer)
    ReviewItem.objects.filter(pk__in=extra, state="claimed").update(state="open", claimed_by=None, claim_expires_at=None)
    ReviewItem.objects.filter(pk__in=extra, state="escalated").update(claimed_by=None, claim_expires_at=None)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0011_item_skips"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="reviewitem", name="item_one_claim_per_reviewer"),
        migrations.RunPython(release_extra_holds, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="reviewitem",
            constraint=models.UniqueConstraint(
                condition=models.Q(("state__in", ("claimed", "escalated"))),
                fields=("claimed_by",),
                name="item_one_hold_per_reviewer",
            ),
        ),
    ]
