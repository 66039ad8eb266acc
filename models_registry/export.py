"""Export of a source's labelled events for data scientists, as CSV or Parquet: the event, its
attributes flattened into one column each, the label, where it came from, and the verdict behind it.

CSV cells that a spreadsheet would run as a formula are neutralised with a leading apostrophe
(OWASP's advice on CSV injection): attribute values, entities and even attribute names come from
outside. Parquet columns are typed and never evaluated, so values are written as they are."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from models_registry import selectors
from reviews.models import Source

# A cell starting with one of these is a formula (or starts one after a separator) in Excel,
# LibreOffice or Google Sheets; the full-width forms are normalised to them by some of them.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
ATTRIBUTE_PREFIX = "attributes."
HEAD = ["event_id", "external_id", "entity", "occurred_at"]
TAIL = [
    "label",
    "is_threat",
    "origin",
    "weight",
    "reviewer",
    "verdict",
    "reason",
    "verdict_at",
    "label_updated_at",
    "score",
    "model_version",
]
BATCH = 5000


def neutralise(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def columns(source: Source) -> list[str]:
    return [*HEAD, *(ATTRIBUTE_PREFIX + name for name in source.schema), *TAIL]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def rows(source: Source) -> Iterator[list[Any]]:
    """Every labelled event of the source, oldest first, as a list per row in columns() order."""
    names = list(source.schema)
    for r in selectors.labelled_export_rows(source=source).iterator(chunk_size=BATCH):
        attributes = r["attributes"] or {}
        yield [
            r["event_id"],
            r["external_id"],
            r["entity"],
            _iso(r["occurred_at"]),
            *(attributes.get(name) for name in names),
            "threat" if r["is_threat"] else "benign",
            bool(r["is_threat"]),
            r["origin"],
            r["weight"],
            r["reviewer"],
            r["verdict_value"],
            r["reason"],
            _iso(r["verdict_at"]),
            _iso(r["created_at"]),
            r["score"],
            r["model_version"],
        ]


class _Line:
    """A file-like object whose write returns the line, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


def csv_lines(source: Source) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow([neutralise(c) for c in columns(source)])
    for row in rows(source):
        yield writer.writerow([neutralise("" if v is None else v) for v in row])


def _arrow_type(kind: str) -> pa.DataType:
    return {"numeric": pa.float64(), "boolean": pa.bool_()}.get(kind, pa.string())


def _coerce(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "numeric":
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if kind == "boolean":
        return bool(value)
    return str(value)


def parquet_schema(source: Source) -> pa.Schema:
    fields = [
        pa.field("event_id", pa.int64()),
        pa.field("external_id", pa.string()),
        pa.field("entity", pa.string()),
        pa.field("occurred_at", pa.timestamp("us", tz="UTC")),
        *(pa.field(ATTRIBUTE_PREFIX + name, _arrow_type(kind)) for name, kind in source.schema.items()),
        pa.field("label", pa.string()),
        pa.field("is_threat", pa.bool_()),
        pa.field("origin", pa.string()),
        pa.field("weight", pa.float64()),
        pa.field("reviewer", pa.string()),
        pa.field("verdict", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("verdict_at", pa.timestamp("us", tz="UTC")),
        pa.field("label_updated_at", pa.timestamp("us", tz="UTC")),
        pa.field("score", pa.float64()),
        pa.field("model_version", pa.int64()),
    ]
    return pa.schema(fields)


def parquet_write(source: Source, fh: IO[bytes]) -> int:
    """Write the export to fh in row groups of BATCH rows; return the number of rows."""
    schema = parquet_schema(source)
    kinds = list(source.schema.values())
    n_head, n_attr = len(HEAD), len(kinds)
    timestamp_columns = {3, n_head + n_attr + 7, n_head + n_attr + 8}
    written = 0
    with pq.ParquetWriter(fh, schema, compression="zstd") as writer:
        batch: list[list[Any]] = []

        def flush() -> None:
            columns_data = list(zip(*batch, strict=True))
            arrays = []
            for i, f in enumerate(schema):
                values = list(columns_data[i])
                if i in timestamp_columns:
                    values = [datetime.fromisoformat(v) if v else None for v in values]
                elif n_head <= i < n_head + n_attr:
                    values = [_coerce(kinds[i - n_head], v) for v in values]
                arrays.append(pa.array(values, type=f.type))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))

        for row in rows(source):
            batch.append(row)
            if len(batch) >= BATCH:
                flush()
                written += len(batch)
                batch = []
        if batch:
            flush()
            written += len(batch)
        if written == 0:
            writer.write_table(schema.empty_table())
    return written
