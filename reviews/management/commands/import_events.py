"""Import events from a CSV file, optionally labelled (labelled rows become training history)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reviews import services
from reviews.choices import EventStatus
from reviews.csv_import import CsvLayout, infer_schema, read_events
from reviews.models import Source

BATCH = 5000


class Command(BaseCommand):
    help = "Import events from a CSV (or .csv.gz) file into a source."

    def add_arguments(self, parser):
        parser.add_argument("--source", required=True)
        parser.add_argument("--file", required=True, type=Path)
        parser.add_argument("--label-column", help="column whose value marks a threat (anything but normal/benign/0/false)")
        parser.add_argument("--create-source", action="store_true", help="create the source, inferring its schema from the file")
        parser.add_argument("--id-column", help="column holding the external id (default: <file>-<row number>)")
        parser.add_argument("--entity-columns", default="", help="comma-separated columns joined into the entity")
        parser.add_argument("--time-column", help="column with ISO 8601 times (default: synthetic times, see --start)")
        parser.add_argument(
            "--start", help="ISO 8601 time of the first row when there is no time column (default: now minus one second per row)"
        )
        parser.add_argument("--ignore-columns", default="", help="comma-separated columns that are not attributes")

    def handle(self, *args, **opts):
        path: Path = opts["file"]
        if not path.exists():
            raise CommandError(f"no such file: {path}")
        ignore = {c for c in opts["ignore_columns"].split(",") if c}
        for key in ("label_column", "id_column", "time_column"):
            if opts[key]:
                ignore.add(opts[key])
        source = Source.objects.filter(name=opts["source"]).first()
        if source is None:
            if not opts["create_source"]:
                raise CommandError(f"unknown source {opts['source']!r} (use --create-source)")
            source = services.source_create(name=opts["source"], schema=infer_schema(path, ignore))
            self.stdout.write(f"created source {source.name} with {len(source.schema)} attributes")
        row_count = sum(1 for _ in read_events(path, CsvLayout(schema={}, id_prefix="count")))
        start = datetime.fromisoformat(opts["start"]) if opts["start"] else datetime.now(UTC) - timedelta(seconds=row_count + 1)
        layout = CsvLayout(
            schema=source.schema,
            id_column=opts["id_column"],
            entity_columns=tuple(c for c in opts["entity_columns"].split(",") if c),
            time_column=opts["time_column"],
            label_column=opts["label_column"],
            start=start,
            id_prefix=path.name.split(".")[0],
        )
        labelled = bool(opts["label_column"])
        totals = {"accepted": 0, "duplicates": 0}
        rows, labels, first_row = [], [], 0
        for index, (event, label) in enumerate(read_events(path, layout)):
            rows.append(event)
            labels.append(bool(label))
            if len(rows) == BATCH:
                self._flush(source, rows, labels if labelled else None, totals, first_row)
                rows, labels, first_row = [], [], index + 1
        if rows:
            self._flush(source, rows, labels if labelled else None, totals, first_row)
        self.stdout.write(
            self.style.SUCCESS(
                f"imported {totals['accepted']} events into {source.name} ({totals['duplicates']} duplicates skipped)"
            )
        )

    def _flush(self, source, rows, labels, totals, offset):
        status = EventStatus.HISTORICAL if labels is not None else EventStatus.RECEIVED
        try:
            result = services.events_ingest(source=source, rows=rows, status=status, labels=labels)
        except services.BatchInvalid as exc:
            lines = [f"CSV row {offset + e.index + 1}: {e.field}: {e.message}" for e in exc.errors[:20]]
            raise CommandError("invalid rows, nothing of this batch stored:\n" + "\n".join(lines)) from exc
        totals["accepted"] += result.accepted
        totals["duplicates"] += result.duplicates
