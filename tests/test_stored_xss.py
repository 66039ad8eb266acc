"""Stored XSS: attribute names and values, entities, external ids, reviewers' notes and reason
labels (admin-edited) are rendered as text on every page that shows them, in the PNG plots (which
also must not fail on text that matplotlib would parse as maths) and in the JSON the audit page
pretty-prints. The browser test (tests/browser/test_xss.py) checks that no script runs."""

from __future__ import annotations

import html

import pytest
from django.test import Client

from models_registry import monitoring
from reviews import services
from reviews.models import ReasonCode
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory
from tests.models_registry.helpers import fake_model

pytestmark = pytest.mark.django_db

SCRIPT = "<script>window.__xss=1</script>"
IMG = '"><img src=x onerror=alert(1)>'
MATH = r"$\frac{1}{0}$ $\undefinedcommand{x}$"
PAYLOADS = (SCRIPT, IMG)


def assert_escaped(body: bytes, where: str, *, expect_visible: tuple[str, ...] = ()):
    text = body.decode()
    for payload in PAYLOADS:
        assert payload not in text, (where, payload)
    for payload in expect_visible:
        assert html.escape(payload, quote=True) in text or html.escape(payload, quote=False) in text, (where, payload)


@pytest.fixture
def hostile(alice, bob, carol):
    evil_attr = f"a{IMG}"
    source = SourceFactory(
        name="evil",
        schema={"bytes": "numeric", "proto": "categorical", evil_attr: "text", MATH: "numeric"},
        reviewers=[alice, bob],
    )
    ReasonCode.objects.create(code="evil_reason", label=f"label {SCRIPT}", applies_to="both", order=1)
    attributes = {"bytes": 10, "proto": IMG, evil_attr: SCRIPT, MATH: 1.0}
    items = []
    for i in range(4):  # two decided, two identical open ones (a cluster)
        event = EventFactory(
            source=source,
            external_id=f"x{i}{IMG}",
            entity=f"{SCRIPT}",
            attributes=dict(attributes),
            explanation=[{"attribute": evil_attr, "typical": SCRIPT, "contribution": 0.3}],
        )
        items.append(ReviewItemFactory(event=event))
    services.verdict_submit(item=items[0], reviewer=alice, verdict="overturn", reason="evil_reason", note=f"note {SCRIPT}\n{IMG}")
    services.verdict_submit(item=items[1], reviewer=bob, verdict="approve", reason="evil_reason", note=IMG)
    model = fake_model(source, status="champion", report={"decision": "promote", "reason": SCRIPT})
    return {"source": source, "items": items, "model": model, "evil_attr": evil_attr}


def test_console_pages_render_hostile_text_escaped(hostile, alice, carol):
    reviewer, admin = Client(), Client()
    reviewer.force_login(alice)
    admin.force_login(carol)
    item = hostile["items"][2]  # its page shows the others as history and similar verdicts
    pages = {
        "queue": (reviewer, "/?state=all", (SCRIPT,)),
        "item": (reviewer, f"/items/{item.pk}/", (SCRIPT, IMG, f"label {SCRIPT}")),
        "decided item": (reviewer, f"/items/{hostile['items'][0].pk}/", (f"note {SCRIPT}",)),
        "clusters": (reviewer, "/clusters/", (SCRIPT,)),
        "bulk confirmation": (reviewer, None, (SCRIPT,)),
        "audit": (admin, "/audit/", ()),
        "dashboard": (admin, "/dashboard/", ()),
        "models": (admin, "/models/", ()),
        "report": (admin, f"/models/{hostile['model'].pk}/report/", (SCRIPT,)),
        "monitoring": (admin, "/models/sources/evil/monitoring/", ()),
        "tuning": (admin, "/models/sources/evil/tuning/", ()),
    }
    monitoring.monitoring_snapshot_create(source=hostile["source"])
    for where, (client, path, visible) in pages.items():
        resp = client.post("/bulk/", {"verdict": "overturn", "entity": SCRIPT}) if path is None else client.get(path)
        assert resp.status_code == 200, where
        assert_escaped(resp.content, where, expect_visible=visible)


def test_the_audit_pages_pretty_json_is_escaped(hostile, carol):
    client = Client()
    client.force_login(carol)
    body = client.get("/audit/?verb=item.decide").content.decode()
    assert "evil_reason" in body
    services.source_create(name="s-json", schema={f"k{SCRIPT}": "numeric"}, actor=carol)
    body = client.get("/audit/?verb=source.create").content
    assert_escaped(body, "audit", expect_visible=(f"k{SCRIPT}",))


def test_json_answers_are_json_and_never_sniffed_as_html(hostile, api, alice):
    resp = api(alice).get(f"/api/v1/review-items/{hostile['items'][2].pk}/")
    assert resp["Content-Type"] == "application/json"
    assert resp.json()["event"]["entity"] == SCRIPT  # data, as sent; escaping is the renderer's job
    assert resp["X-Content-Type-Options"] == "nosniff"


def test_plots_with_hostile_and_math_like_text_render(hostile, carol):
    client = Client()
    client.force_login(carol)
    monitoring.monitoring_snapshot_create(source=hostile["source"])
    paths = [
        f"/dashboard/plots/{name}.png?source=evil"
        for name in ("queue", "decisions", "overturn-daily", "overturn-models", "scores")
    ]
    paths += [f"/models/sources/evil/monitoring/{kind}.png" for kind in ("psi", "overturns", "attributes", "scores")]
    paths += [f"/models/{hostile['model'].pk}/report/{kind}.png" for kind in ("pr", "roc", "calibration", "scores", "confusion")]
    for path in paths:
        resp = client.get(path)
        assert resp.status_code in (200, 404), path
        if resp.status_code == 200:
            assert resp["Content-Type"] == "image/png" and resp.content.startswith(b"\x89PNG"), path


def test_the_admin_escapes_hostile_reason_labels_and_entities(hostile, carol):
    client = Client()
    client.force_login(carol)
    for path in ("/admin/reviews/reasoncode/", "/admin/reviews/event/", "/admin/reviews/verdict/", "/admin/reviews/auditentry/"):
        resp = client.get(path)
        assert resp.status_code == 200, path
        assert_escaped(resp.content, path)
