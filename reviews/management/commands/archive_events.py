"""Retention: export events whose work is done to a file, then delete them from the database."""

from datetime import UTC, datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reviews.archive import ARCHIVABLE
from reviews.models import Source
from reviews.services import ServiceError, events_archive


def _moment(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"--before: {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time with an offset") from exc
    if value.tzinfo is None:
        if len(text) > 10:
            raise CommandError("--before: give the time with an offset (2026-01-01T00:00:00+00:00), or a date")
        value = value.replace(tzinfo=UTC)  # a date is midnight UTC
    return value


class Command(BaseCommand):
    help = (
        "Write the events received before --before whose work is done (cleared, decided) to --out as JSON Lines "
        "(gzipped if the name ends in .gz), with their review items, verdicts and labels, and delete them. "
        "Each chunk is on disk before it is deleted. Their labels leave the training data with them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--before", required=True, help="received before this date (midnight UTC) or ISO 8601 time")
        parser.add_argument("--out", required=True, help="archive file to create (an existing file is never overwritten)")
        parser.add_argument("--source", help="only this source (default: all)")
        parser.add_argument(
            "--status",
            default="cleared,decided",
            help=f"comma-separated statuses to archive, among {', '.join(ARCHIVABLE)} (default: cleared,decided)",
        )
        parser.add_argument("--batch-size", type=int, default=1000, help="events per transaction (default 1000)")
        parser.add_argument("--dry-run", action="store_true", help="count what would be archived; write and delete nothing")

    def handle(self, *args, **opts):
        before = _moment(opts["before"])
        source = None
        if opts["source"]:
            source = Source.objects.filter(name=opts["source"]).first()
            if source is None:
                raise CommandError(f"unknown source {opts['source']!r}")
        out = Path(opts["out"])
        if not opts["dry_run"] and out.exists() and out.is_file():
            raise CommandError(f"{out} exists; an archive is never overwritten")
        if opts["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        statuses = tuple(s.strip() for s in opts["status"].split(",") if s.strip())
        try:
            result = events_archive(
                before=before,
                out=None if opts["dry_run"] else out,
                statuses=statuses,
                source=source,
                batch_size=opts["batch_size"],
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        except OSError as exc:
            raise CommandError(f"could not write {out}: {exc}; nothing of the failed chunk was deleted") from exc
        verb = "would archive" if opts["dry_run"] else "archived"
        per_source = ", ".join(f"{name}: {n}" for name, n in sorted(result.by_source.items())) or "none"
        self.stdout.write(f"{verb} {result.events} events ({per_source})")
        if not opts["dry_run"]:
            self.stdout.write(f"deleted with them: {result.review_items} review items, {result.labels} labels; file: {out}")
