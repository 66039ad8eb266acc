"""Validation of submitted events against a source's attribute schema. Pure functions, no database:
every error names the row (index in the batch) and the field, so a client can fix its batch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

MAX_ID_LEN = 200
MAX_ENTITY_LEN = 200
MAX_CATEGORY_LEN = 200
MAX_TEXT_LEN = 10_000
MAX_ABS_NUMBER = 2**63 - 1  # what a 64-bit integer column downstream can hold
MAX_FUTURE = timedelta(days=1)  # clock skew we tolerate; anything later is a client bug


@dataclass
class FieldError:
    field: str
    message: str
    index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.index is not None:
            out = {"index": self.index, **out}
        return out


@dataclass
class CleanEvent:
    external_id: str
    entity: str
    occurred_at: datetime
    attributes: dict[str, Any]


def _bad_string(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


def _check_string(value: Any, field: str, max_len: int, errors: list[FieldError], required: bool = True) -> str | None:
    if not isinstance(value, str):
        errors.append(FieldError(field, "must be a string"))
        return None
    if required and not value.strip():
        errors.append(FieldError(field, "must not be empty"))
        return None
    if len(value) > max_len:
        errors.append(FieldError(field, f"must be at most {max_len} characters"))
        return None
    problem = _bad_string(value)
    if problem:
        errors.append(FieldError(field, problem))
        return None
    return value


def _check_attribute(name: str, kind: str, value: Any, errors: list[FieldError]) -> Any:
    field = f"attributes.{name}"
    if value is None:
        return None  # explicitly unknown: allowed, the model treats it as missing
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(FieldError(field, "must be a number"))
            return None
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(FieldError(field, "must be a finite number"))
            return None
        if abs(value) > MAX_ABS_NUMBER:
            errors.append(FieldError(field, "is out of range (beyond 64 bits)"))
            return None
        return value
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        errors.append(FieldError(field, "must be true or false"))
        return None
    if kind == "categorical":
        return _check_string(value, field, MAX_CATEGORY_LEN, errors, required=False)
    if kind == "text":
        return _check_string(value, field, MAX_TEXT_LEN, errors, required=False)
    errors.append(FieldError(field, f"has an unknown type {kind!r} in the source schema"))
    return None


def _check_timestamp(value: Any, errors: list[FieldError], now: datetime) -> datetime | None:
    if not isinstance(value, str):
        errors.append(FieldError("occurred_at", "must be an ISO 8601 string with a time-zone offset"))
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        errors.append(FieldError("occurred_at", "is not a valid ISO 8601 date-time"))
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        errors.append(FieldError("occurred_at", "must carry a time-zone offset (e.g. +00:00 or Z)"))
        return None
    if parsed > now + MAX_FUTURE:
        errors.append(FieldError("occurred_at", "is too far in the future"))
        return None
    if parsed < datetime(1970, 1, 1, tzinfo=UTC):
        errors.append(FieldError("occurred_at", "is before 1970"))
        return None
    return parsed


def validate_event(
    row: Any, schema: dict[str, str], now: datetime | None = None, in_batch: bool = False
) -> tuple[CleanEvent | None, list[FieldError]]:
    """Check one submitted event. Returns the cleaned event, or None and every error found."""
    now = now or timezone.now()
    errors: list[FieldError] = []
    if not isinstance(row, dict):
        return None, [FieldError("event", "must be a JSON object")]
    # A batch names its source once; an event inside it may not name another.
    allowed = (
        {"external_id", "occurred_at", "entity", "attributes"}
        if in_batch
        else {"external_id", "occurred_at", "entity", "attributes", "source"}
    )
    for key in row:
        if key not in allowed:
            errors.append(FieldError(str(key)[:100], "is not a known event field"))
    external_id = _check_string(row.get("external_id"), "external_id", MAX_ID_LEN, errors) if "external_id" in row else None
    if "external_id" not in row:
        errors.append(FieldError("external_id", "is required"))
    entity = _check_string(row.get("entity"), "entity", MAX_ENTITY_LEN, errors) if "entity" in row else None
    if "entity" not in row:
        errors.append(FieldError("entity", "is required"))
    occurred_at = _check_timestamp(row["occurred_at"], errors, now) if "occurred_at" in row else None
    if "occurred_at" not in row:
        errors.append(FieldError("occurred_at", "is required"))
    attributes = row.get("attributes")
    clean_attrs: dict[str, Any] = {}
    if not isinstance(attributes, dict):
        errors.append(FieldError("attributes", "is required and must be an object"))
    else:
        for name in attributes:
            if name not in schema:
                errors.append(FieldError(f"attributes.{str(name)[:100]}", "is not in the source's schema"))
        for name, kind in schema.items():
            if name not in attributes:
                errors.append(FieldError(f"attributes.{name}", "is missing (send null if unknown)"))
                continue
            clean_attrs[name] = _check_attribute(name, kind, attributes[name], errors)
    if errors:
        return None, errors
    assert external_id is not None and entity is not None and occurred_at is not None
    return CleanEvent(external_id=external_id, entity=entity, occurred_at=occurred_at, attributes=clean_attrs), []


def validate_batch(rows: list[Any], schema: dict[str, str]) -> tuple[list[CleanEvent], list[FieldError]]:
    """Validate every row; also refuse an external_id repeated inside the batch."""
    now = timezone.now()
    clean: list[CleanEvent] = []
    errors: list[FieldError] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        event, row_errors = validate_event(row, schema, now, in_batch=True)
        for err in row_errors:
            err.index = index
        errors.extend(row_errors)
        external_id = row.get("external_id") if isinstance(row, dict) else None
        if isinstance(external_id, str):
            first = seen.setdefault(external_id, index)
            if first != index:
                errors.append(FieldError("external_id", f"repeats the external_id of row {first}", index))
                continue
        if event is not None:
            clean.append(event)
    return clean, errors
