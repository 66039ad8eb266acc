"""Indexes for the administrators' dashboard and the audit trail list.

- item_decided_at: the queue series and the overturn rates read items by decision time; created_at
  and source_id are included so the queue series is an index-only scan.
- verdict_created_at: decisions per reviewer per day.
- audit_actor_id, audit_verb_id: the audit list filtered by actor or verb, newest first, reads one
  page of the index instead of walking the whole trail backwards.

The scores histogram needs none: it filters on the scored statuses so that the existing
(status, received_at) index serves it, and the event table, the busiest writer, gets no new index.

Database operations only: the models do not declare these indexes (yet), and a state operation
would make the next makemigrations propose to drop them. When the models' Meta lists them, this
migration can become plain AddIndex operations."""

from django.db import migrations, models

INDEXES = [
    ("reviewitem", models.Index(fields=["decided_at"], include=["created_at", "source"], name="item_decided_at")),
    ("verdict", models.Index(fields=["created_at"], name="verdict_created_at")),
    ("auditentry", models.Index(fields=["actor_label", "id"], name="audit_actor_id")),
    ("auditentry", models.Index(fields=["verb", "id"], name="audit_verb_id")),
]


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0005_source_api_clients"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.AddIndex(model_name=model, index=index) for model, index in INDEXES],
            state_operations=[],
        )
    ]
