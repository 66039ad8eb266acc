"""The event validator: every bad field is reported with its row and name; good rows pass."""

import math

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from reviews.validation import validate_batch, validate_event

SCHEMA = {"bytes": "numeric", "proto": "categorical", "admin": "boolean", "note": "text"}


def good(**over):
    row = {
        "external_id": "e1",
        "entity": "10.0.0.1",
        "occurred_at": "2026-11-30T10:00:00+01:00",
        "attributes": {"bytes": 12, "proto": "tcp", "admin": False, "note": "hi"},
    }
    row.update(over)
    return row


def fields(errors):
    return {(e.index, e.field) for e in errors}


def test_a_good_row_is_cleaned():
    event, errors = validate_event(good(), SCHEMA)
    assert errors == []
    assert event.occurred_at.utcoffset().total_seconds() == 3600
    assert event.attributes == {"bytes": 12, "proto": "tcp", "admin": False, "note": "hi"}


def test_batch_reports_every_bad_row_by_index_and_field():
    rows = [
        good(external_id="a"),
        good(external_id="b", occurred_at="2026-11-30T10:00:00"),  # no offset
        good(external_id="c", attributes={"bytes": "12", "proto": "tcp", "admin": False, "note": ""}),
        good(external_id="d", attributes={"bytes": 1, "proto": "tcp", "admin": False}),  # missing note
        good(external_id="e", attributes={"bytes": 1, "proto": "tcp", "admin": False, "note": "", "evil": 1}),
        good(external_id="a"),  # repeats row 0
    ]
    clean, errors = validate_batch(rows, SCHEMA)
    assert fields(errors) == {
        (1, "occurred_at"),
        (2, "attributes.bytes"),
        (3, "attributes.note"),
        (4, "attributes.evil"),
        (5, "external_id"),
    }


def test_hostile_values_are_refused():
    cases = {
        "attributes.bytes": {"bytes": float("nan")},
        "attributes.proto": {"proto": "tcp\x00"},
        "attributes.note": {"note": "\ud800"},
        "attributes.admin": {"admin": "yes"},
    }
    for field_name, override in cases.items():
        attrs = {"bytes": 1, "proto": "tcp", "admin": False, "note": "", **override}
        _, errors = validate_event(good(attributes=attrs), SCHEMA)
        assert [e.field for e in errors] == [field_name], field_name


def test_numbers_beyond_64_bits_and_far_future_times_are_refused():
    _, errors = validate_event(good(attributes={"bytes": 2**70, "proto": "tcp", "admin": False, "note": ""}), SCHEMA)
    assert [e.field for e in errors] == ["attributes.bytes"]
    _, errors = validate_event(good(occurred_at="2999-01-01T00:00:00Z"), SCHEMA)
    assert [e.field for e in errors] == ["occurred_at"]


def test_null_attribute_means_unknown_and_is_allowed():
    event, errors = validate_event(good(attributes={"bytes": None, "proto": None, "admin": None, "note": None}), SCHEMA)
    assert errors == [] and event.attributes["bytes"] is None


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)


@hsettings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["bytes", "proto", "admin", "note", "other"]), json_scalars),
    st.one_of(st.text(max_size=40), json_scalars),
)
def test_validator_never_crashes_and_accepts_only_clean_values(attrs, occurred):
    event, errors = validate_event(good(attributes=attrs, occurred_at=occurred), SCHEMA)
    assert (event is None) == bool(errors)
    if event is not None:
        assert set(event.attributes) == set(SCHEMA)
        b = event.attributes["bytes"]
        assert b is None or (not isinstance(b, bool) and math.isfinite(b) and abs(b) < 2**63)
        assert event.attributes["admin"] in (None, True, False)
        for key in ("proto", "note"):
            value = event.attributes[key]
            assert value is None or ("\x00" not in value and value.encode("utf-8"))
        assert event.occurred_at.tzinfo is not None
