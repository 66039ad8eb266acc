"""Properties of the event validator, for any JSON a client could send: it never raises; a batch
either validates whole or yields errors that each name a row of the batch and a field; every bad
row is named; and valid rows round-trip (validate, serialise as the database would, validate
again: the same events)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from reviews.validation import MAX_ABS_NUMBER, MAX_CATEGORY_LEN, validate_batch, validate_event

EVENT_FIELDS = {"external_id", "entity", "occurred_at", "attributes"}
PROFILE = hsettings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any JSON value, including what json.loads accepts but the API must refuse: NaN and infinities,
# NUL characters, lone surrogates (JSON's \ud800 escapes), integers far beyond 64 bits.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "\x00", "\ud800", "2026-11-30T10:00:00Z", "2026-11-30T10:00:00", "tcp"]),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8
)
attribute_names = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)
schemas = st.dictionaries(attribute_names, st.sampled_from(["numeric", "categorical", "boolean", "text"]), min_size=1, max_size=5)

clean_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40)


def valid_value(kind: str):
    if kind == "numeric":
        return st.one_of(
            st.none(),
            st.integers(min_value=-MAX_ABS_NUMBER, max_value=MAX_ABS_NUMBER),
            st.floats(allow_nan=False, allow_infinity=False, min_value=-1e18, max_value=1e18),
        )
    if kind == "boolean":
        return st.one_of(st.none(), st.booleans())
    if kind == "categorical":
        return st.one_of(st.none(), clean_text.map(lambda s: s[:MAX_CATEGORY_LEN]))
    return st.one_of(st.none(), clean_text)


@st.composite
def valid_rows(draw, schema: dict[str, str], index: int):
    offset = draw(st.integers(min_value=-14 * 60, max_value=14 * 60))
    when = draw(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2026, 11, 30)))
    tz = UTC if offset == 0 else timezone(timedelta(minutes=offset))
    return {
        "external_id": draw(clean_text.filter(lambda s: s.strip())) + f"#{index}",
        "entity": draw(clean_text.filter(lambda s: s.strip())),
        "occurred_at": when.replace(tzinfo=tz).isoformat(),
        "attributes": {name: draw(valid_value(kind)) for name, kind in schema.items()},
    }


@st.composite
def batches(draw):
    """A schema and a batch mixing valid rows, valid rows with one field replaced by any JSON
    value, and arbitrary JSON values in place of a row."""
    schema = draw(schemas)
    rows = []
    for i in range(draw(st.integers(min_value=1, max_value=6))):
        choice = draw(st.integers(min_value=0, max_value=3))
        row = draw(valid_rows(schema, i))
        if choice == 1:
            field = draw(st.sampled_from([*sorted(EVENT_FIELDS), "source", "extra"]))
            row[field] = draw(json_values)
        elif choice == 2:
            name = draw(st.sampled_from([*sorted(schema), "unknown_attr"]))
            row["attributes"][name] = draw(json_values)
        elif choice == 3:
            row = draw(json_values)
        rows.append(row)
    return schema, rows


def _field_names(schema, row) -> set[str]:
    """The fields an error about this row may name."""
    names = set(EVENT_FIELDS) | {"event"} | {f"attributes.{n}" for n in schema}
    if isinstance(row, dict):
        names |= {str(k)[:100] for k in row}
        if isinstance(row.get("attributes"), dict):
            names |= {f"attributes.{str(k)[:100]}" for k in row["attributes"]}
    return names


@PROFILE
@given(batches())
def test_a_batch_validates_whole_or_every_error_names_a_row_and_a_field(batch):
    schema, rows = batch
    clean, errors = validate_batch(rows, schema)
    if not errors:
        assert len(clean) == len(rows)
        return
    for error in errors:
        assert error.index is not None and 0 <= error.index < len(rows)
        assert error.field in _field_names(schema, rows[error.index]), (error, rows[error.index])
        assert error.message
        json.dumps(error.as_dict(), ensure_ascii=False)  # what the API will render
    # every row the validator refuses on its own is named
    named = {e.index for e in errors}
    for i, row in enumerate(rows):
        _, alone = validate_event(row, schema, in_batch=True)
        if alone:
            assert i in named


@PROFILE
@given(st.data())
def test_valid_rows_are_accepted_unchanged_and_round_trip(data):
    schema = data.draw(schemas)
    rows = [data.draw(valid_rows(schema, i)) for i in range(data.draw(st.integers(min_value=1, max_value=5)))]
    clean, errors = validate_batch(rows, schema)
    assert errors == [], [e.as_dict() for e in errors]
    for row, event in zip(rows, clean, strict=True):
        assert event.external_id == row["external_id"] and event.entity == row["entity"]
        assert event.occurred_at == datetime.fromisoformat(row["occurred_at"])
        assert event.attributes == row["attributes"]
    # as stored (JSON attributes, ISO times) and sent again: the same events
    again = [
        {
            "external_id": e.external_id,
            "entity": e.entity,
            "occurred_at": e.occurred_at.isoformat(),
            "attributes": json.loads(json.dumps(e.attributes)),
        }
        for e in clean
    ]
    clean2, errors2 = validate_batch(again, schema)
    assert errors2 == [] and clean2 == clean


@PROFILE
@given(json_values)
def test_any_json_as_a_whole_batch_body_never_raises(value):
    rows = value if isinstance(value, list) else [value]
    clean, errors = validate_batch(rows, {"x": "numeric"})
    assert bool(errors) != (len(clean) == len(rows)) or not rows
    for event in clean:
        x = event.attributes["x"]
        assert x is None or (not isinstance(x, bool) and math.isfinite(x) and abs(x) <= MAX_ABS_NUMBER)
