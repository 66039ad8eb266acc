"""The archive file of `manage.py archive_events`: JSON Lines, one event per line with its review
item, verdicts and label, gzipped when the name ends in .gz. Each chunk is written whole (a gzip
member of its own) and flushed to disk before the events it holds are deleted."""

from __future__ import annotations

import gzip
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from reviews.models import Event

# Statuses an event may be archived in: its work is done. 'received' and 'queued' events are
# waiting for a worker or a reviewer and are never archived.
ARCHIVABLE = ("cleared", "decided", "historical")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def event_record(event: Event) -> dict[str, Any]:
    """Everything stored about an event, as plain JSON. `event` comes with its source, model
    version, review item (with verdicts and reviewers) and label prefetched."""
    item = getattr(event, "review_item", None)
    label = getattr(event, "label", None)
    return {
        "id": event.pk,
        "source": event.source.name,
        "external_id": event.external_id,
        "entity": event.entity,
        "occurred_at": _iso(event.occurred_at),
        "received_at": _iso(event.received_at),
        "attributes": event.attributes,
        "status": event.status,
        "score": event.score,
        "model_version": event.model_version.version if event.model_version else None,
        "proposed_action": event.proposed_action,
        "explanation": event.explanation,
        "scored_at": _iso(event.scored_at),
        "review": None
        if item is None
        else {
            "id": item.pk,
            "kind": item.kind,
            "state": item.state,
            "proposed_action": item.proposed_action,
            "score": item.score,
            "required_verdicts": item.required_verdicts,
            "created_at": _iso(item.created_at),
            "decided_at": _iso(item.decided_at),
            "verdicts": [
                {
                    "reviewer": v.reviewer.get_username(),
                    "verdict": v.verdict,
                    "reason": v.reason,
                    "note": v.note,
                    "created_at": _iso(v.created_at),
                    "undone_at": _iso(v.undone_at),
                }
                for v in item.verdicts.all()
            ],
        },
        "label": None if label is None else {"is_threat": label.is_threat, "origin": label.origin, "weight": label.weight},
    }


class ArchiveFile:
    """Append-only writer. A regular file must not exist yet (an archive is never overwritten);
    a device or pipe (/dev/stdout) is written as it is."""

    def __init__(self, path: Path):
        self.path = path
        self.gzipped = path.suffix == ".gz"
        exists_as_other = path.exists() and not path.is_file()
        flags = os.O_WRONLY | (os.O_APPEND if exists_as_other else os.O_CREAT | os.O_EXCL)
        self.fd = os.open(path, flags, 0o600)
        self.seekable = path.is_file()

    def size(self) -> int:
        return os.lseek(self.fd, 0, os.SEEK_END) if self.seekable else 0

    def write_chunk(self, records: list[dict[str, Any]]) -> None:
        """Write the records and flush them to disk (raises OSError on a full disk)."""
        data = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records).encode()
        if self.gzipped:
            data = gzip.compress(data, mtime=0)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        if self.seekable:
            os.fsync(self.fd)

    def truncate(self, offset: int) -> None:
        """Take back what was written after offset (a chunk whose deletion did not commit)."""
        if self.seekable:
            os.ftruncate(self.fd, offset)
            os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)
