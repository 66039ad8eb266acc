from django.db import migrations

BUILTIN_ACTIONS = [("allow", "allow", 0), ("step_up", "step-up authentication", 1), ("deny", "deny access", 2), ("block", "block entity", 3)]


def seed(apps, schema_editor):
    Source = apps.get_model("reviews", "Source")
    ActionType = apps.get_model("actions", "ActionType")
    for source in Source.objects.all():
        for name, label, severity in BUILTIN_ACTIONS:
            ActionType.objects.get_or_create(
                source=source, name=name, defaults={"label": label, "severity": severity, "builtin": True, "mode": "propose"}
            )


class Migration(migrations.Migration):
    dependencies = [("actions", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
