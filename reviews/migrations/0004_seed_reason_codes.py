from django.db import migrations


def seed(apps, schema_editor):
    from reviews.reference_data import reference_data_ensure

    reference_data_ensure(apps.get_model("auth", "Group"), apps.get_model("reviews", "ReasonCode"))


class Migration(migrations.Migration):
    dependencies = [("reviews", "0003_review_kinds_reason_codes")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
