"""Reading labelled or unlabelled event rows from CSV files (plain or gzipped) into the shape of the
REST API's events, for `import_events` and for the demo's live stream."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

BENIGN_VALUES = frozenset({"normal", "benign", "0", "false", "no", "legit", "legitimate"})


@dataclass
class CsvLayout:
    schema: dict[str, str]
    id_column: str | None = None
    entity_columns: tuple[str, ...] = ()
    time_column: str | None = None
    label_column: str | None = None
    start: datetime | None = None  # for files without a time column: synthetic, evenly spaced times
    spacing: timedelta = timedelta(seconds=1)
    id_prefix: str = "row"


def open_text(path: Path) -> io.TextIOBase:
    if str(path).endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def infer_schema(path: Path, exclude: set[str], sample: int = 5000) -> dict[str, str]:
    """numeric when every sampled value parses as a number (or is empty), otherwise categorical."""
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        columns = [c for c in (reader.fieldnames or []) if c not in exclude]
        numeric = {c: True for c in columns}
        for i, row in enumerate(reader):
            if i >= sample:
                break
            for c in columns:
                if numeric[c] and row[c] not in ("", None):
                    try:
                        float(row[c])
                    except ValueError:
                        numeric[c] = False
    return {c: ("numeric" if numeric[c] else "categorical") for c in columns}


def _typed(kind: str, raw: str | None) -> Any:
    if raw is None or raw == "":
        return None
    if kind == "numeric":
        try:
            value = float(raw)
        except ValueError:
            return raw  # left for validation to report, with the row number
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if kind == "boolean":
        return raw.strip().lower() in ("1", "true", "yes")
    return raw


def read_events(path: Path, layout: CsvLayout) -> Iterator[tuple[dict[str, Any], bool | None]]:
    """Yield (event, is_threat or None) per row, events shaped as the API expects them."""
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        for n, row in enumerate(reader):
            external_id = row[layout.id_column] if layout.id_column else f"{layout.id_prefix}-{n}"
            entity = ":".join(row[c] for c in layout.entity_columns) if layout.entity_columns else external_id
            if layout.time_column:
                occurred_at = row[layout.time_column]
            else:
                occurred_at = ((layout.start or datetime.now().astimezone()) + n * layout.spacing).isoformat()
            attributes = {name: _typed(kind, row.get(name)) for name, kind in layout.schema.items()}
            label = None
            if layout.label_column:
                label = row[layout.label_column].strip().lower() not in BENIGN_VALUES
            yield {"external_id": external_id, "entity": entity, "occurred_at": occurred_at, "attributes": attributes}, label


def nsl_kdd_layout(schema: dict[str, str], *, id_prefix: str, start: datetime, spacing: timedelta, labelled: bool) -> CsvLayout:
    """NSL-KDD has no subject or time: the entity is protocol:service and times are synthetic."""
    return CsvLayout(
        schema=schema,
        entity_columns=("protocol_type", "service"),
        label_column="label" if labelled else None,
        start=start,
        spacing=spacing,
        id_prefix=id_prefix,
    )
