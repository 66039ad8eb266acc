"""Export of labelled data: CSV with formula cells neutralised, typed Parquet, who may export."""

import csv
import io
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from models_registry import export
from reviews.choices import EventStatus, ItemKind, LabelOrigin, VerdictChoice
from reviews.models import AuditEntry, Event, Label, ReviewItem, Verdict
from reviews.services import source_create
from tests.models_registry.helpers import login

pytestmark = pytest.mark.django_db

EVIL_SCHEMA = {"=cmd|' /C calc'!A0": "categorical", "bytes": "numeric", "admin": "boolean", "note": "text"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        (-2.5, -2.5),  # a number is a number, not a formula
        (None, None),
    ],
)
def test_neutralise(value, expected):
    assert export.neutralise(value) == expected


@pytest.fixture
def evil_source(alice):
    source = source_create(name="evil", schema=dict(EVIL_SCHEMA))
    evil_attr = next(iter(EVIL_SCHEMA))
    imported = Event.objects.create(
        source=source,
        external_id='=HYPERLINK("http://x")',
        entity="@admin",
        occurred_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
        attributes={evil_attr: "=2+5", "bytes": -12.5, "admin": True, "note": "+danger"},
        status=EventStatus.HISTORICAL,
    )
    Label.objects.create(event=imported, is_threat=True, origin=LabelOrigin.IMPORT)
    decided = Event.objects.create(
        source=source,
        external_id="ok-1",
        entity="host-1",
        occurred_at=datetime(2026, 3, 2, 12, tzinfo=UTC),
        attributes={evil_attr: "tcp", "bytes": 100, "admin": False, "note": None},
        status=EventStatus.DECIDED,
        score=0.91,
    )
    item = ReviewItem.objects.create(
        event=decided, source=source, proposed_action="deny", score=0.91, priority=2.9, kind=ItemKind.FLAGGED, state="decided"
    )
    verdict = Verdict.objects.create(item=item, reviewer=alice, verdict=VerdictChoice.OVERTURN, reason="known_benign")
    Label.objects.create(event=decided, is_threat=False, origin=LabelOrigin.VERDICT, verdict=verdict)
    Event.objects.create(  # unlabelled: not exported
        source=source, external_id="x", entity="e", occurred_at=datetime(2026, 3, 3, tzinfo=UTC), attributes={}, status="cleared"
    )
    return source


def test_csv_neutralises_formulas_in_values_and_header(evil_source):
    text = "".join(export.csv_lines(evil_source))
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    assert header[:4] == ["event_id", "external_id", "entity", "occurred_at"]
    assert "attributes.=cmd|' /C calc'!A0" in header
    assert len(rows) == 3  # header + two labelled events, oldest first
    first = dict(zip(header, rows[1], strict=True))
    assert first["external_id"] == '\'=HYPERLINK("http://x")'
    assert first["entity"] == "'@admin"
    assert first["attributes.=cmd|' /C calc'!A0"] == "'=2+5"
    assert first["attributes.note"] == "'+danger"
    assert first["attributes.bytes"] == "-12.5"  # numbers are left alone
    assert first["label"] == "threat" and first["origin"] == "import" and first["reviewer"] == ""
    second = dict(zip(header, rows[2], strict=True))
    assert second["label"] == "benign" and second["origin"] == "verdict"
    assert second["reviewer"] == "alice" and second["verdict"] == "overturn" and second["reason"] == "known_benign"
    assert second["verdict_at"].startswith("20") and second["score"] == "0.91"
    for row in rows:
        for cell in row:
            if cell.startswith(("=", "+", "-", "@", "\t", "\r")):
                float(cell)  # only a plain number may start like that


def test_parquet_is_typed_and_complete(evil_source, tmp_path):
    path = tmp_path / "out.parquet"
    with open(path, "wb") as fh:
        assert export.parquet_write(evil_source, fh) == 2
    table = pq.read_table(path)
    assert table.column_names == export.columns(evil_source)
    data = table.to_pylist()
    assert data[0]["attributes.bytes"] == -12.5 and data[0]["attributes.admin"] is True
    assert data[0]["attributes.=cmd|' /C calc'!A0"] == "=2+5"  # typed columns are never evaluated: kept as is
    assert data[0]["occurred_at"] == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert data[1]["reviewer"] == "alice" and data[1]["is_threat"] is False
    assert str(table.schema.field("attributes.bytes").type) == "double"


def test_admin_exports_from_console_and_api_and_it_is_audited(client, api, carol, evil_source):
    login(client, carol)
    resp = client.get("/models/sources/evil/export.csv")
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/csv")
    assert 'attachment; filename="evil-labelled-' in resp["Content-Disposition"]
    body = b"".join(resp.streaming_content).decode()
    assert "'=2+5" in body
    parquet = client.get("/models/sources/evil/export.parquet")
    assert parquet.status_code == 200 and parquet["Content-Type"] == "application/vnd.apache.parquet"
    raw = b"".join(parquet.streaming_content)
    assert raw[:4] == b"PAR1" and pq.read_table(io.BytesIO(raw)).num_rows == 2
    via_api = api(carol).get("/api/v1/sources/evil/labelled-data.csv", HTTP_ACCEPT="text/csv")
    assert via_api.status_code == 200 and b"'@admin" in b"".join(via_api.streaming_content)
    assert api(carol).get("/api/v1/sources/evil/labelled-data.parquet").status_code == 200
    assert api(carol).get("/api/v1/sources/evil/labelled-data.xlsx").status_code == 404
    assert client.get("/models/sources/evil/export.xlsx").status_code == 404
    assert AuditEntry.objects.filter(verb="labels.export", actor=carol).count() == 4


@pytest.mark.parametrize("persona", ["alice", "mallory", "ingest", None])
def test_nobody_else_exports(client, api, request, persona, evil_source):
    user = request.getfixturevalue(persona) if persona else None
    if user is not None:
        login(client, user)
    console = client.get("/models/sources/evil/export.csv")
    assert console.status_code == (403 if user else 302)
    assert api(user).get("/api/v1/sources/evil/labelled-data.csv").status_code == (403 if user else 401)
    assert not AuditEntry.objects.filter(verb="labels.export").exists()
