"""Validation report page and its plots, the models page links, and who may see them."""

import pytest

from models_registry import plots
from tests.models_registry.helpers import constructed_report, fake_model, login, toy_source

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n"
KINDS = ["pr", "roc", "calibration", "confusion", "scores"]


@pytest.fixture
def reported():
    source = toy_source()
    fake_model(source, version=1, status="retired")
    model = fake_model(
        source,
        version=2,
        status="champion",
        report=constructed_report(),
        promoted_by="carol",
        status_reason="<b>not bold</b>",
        training_manifest={"labels": 10, "threat_labels": 3, "benign_labels": 7, "labels_by_origin": {"import": 10}},
        history=[{"at": "2026-01-01T00:00:00+00:00", "status": "champion", "by": "carol", "reason": "<script>x</script>"}],
    )
    return model


def test_report_page_shows_both_models_side_by_side_and_escapes(client, carol, reported):
    login(client, carol)
    resp = client.get(f"/models/{reported.pk}/report/")
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "champion v1" in html and "Gate decision: promote" in html
    assert html.count("/report/") >= len(KINDS)
    for kind in KINDS:
        assert f"/models/{reported.pk}/report/{kind}.png" in html
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html
    assert "<b>not bold</b>" not in html
    assert "Roll back" in html


@pytest.mark.parametrize("kind", KINDS)
def test_each_plot_renders_as_a_png(client, carol, reported, kind):
    login(client, carol)
    resp = client.get(f"/models/{reported.pk}/report/{kind}.png")
    assert resp.status_code == 200 and resp["Content-Type"] == "image/png"
    assert resp.content.startswith(PNG) and len(resp.content) > 10_000


def test_plots_without_curves_still_render_and_unknown_kind_is_404(client, carol):
    model = fake_model(toy_source(), report={"decision": "promote", "reason": "cold start"})
    login(client, carol)
    page = client.get(f"/models/{model.pk}/report/")
    assert page.status_code == 200 and b"No curve data" in page.content
    empty = client.get(f"/models/{model.pk}/report/pr.png")
    assert empty.status_code == 200 and empty.content.startswith(PNG)
    assert client.get(f"/models/{model.pk}/report/pie.png").status_code == 404
    assert client.get("/models/999999/report/").status_code == 404


def test_text_from_attribute_names_is_drawn_literally():
    # "$...$" would be parsed as mathtext (and an unbalanced one raises); it must be drawn as typed.
    png = plots.monitoring_attributes({"$\\frac{1}{0}$": 0.5, "<script>": 0.1, "x" * 200: 0.3, "$": 0.2}, 0.25)
    assert png.startswith(PNG) and len(png) > 5000
    assert plots.safe_text("a\nb" + "c" * 100, 10) == "a bcccccc…"


@pytest.mark.parametrize(
    ("status", "fields", "shown"),
    [
        ("training", {"finished_at": None, "sha256": ""}, "training"),
        ("rejected", {"status_reason": "refused: one class only"}, "refused: one class only"),
        ("failed", {"status_reason": "training failed: disk full", "error": "disk full\n\nTraceback ..."}, "disk full"),
    ],
)
def test_report_page_of_a_run_without_a_report_explains_itself(client, carol, status, fields, shown):
    model = fake_model(toy_source(), status=status, report={}, **fields)
    login(client, carol)
    resp = client.get(f"/models/{model.pk}/report/")
    assert resp.status_code == 200
    assert shown in resp.content.decode()


@pytest.mark.parametrize("persona", ["alice", "mallory", "ingest", None])
def test_report_and_plots_are_admin_only(client, request, persona, reported):
    user = request.getfixturevalue(persona) if persona else None
    if user is not None:
        login(client, user)
    expected = 403 if user else 302
    assert client.get(f"/models/{reported.pk}/report/").status_code == expected
    for kind in KINDS:
        assert client.get(f"/models/{reported.pk}/report/{kind}.png").status_code == expected


def test_models_page_links_every_new_page(client, carol, reported, django_assert_max_num_queries):
    toy_source("second")
    login(client, carol)
    with django_assert_max_num_queries(15):
        resp = client.get("/models/")
    html = resp.content.decode()
    for url in (
        f"/models/{reported.pk}/report/",
        "/models/sources/toy/settings/",
        "/models/sources/toy/monitoring/",
        "/models/sources/toy/tuning/",
        "/models/sources/toy/export.csv",
        "/models/sources/toy/export.parquet",
        "/models/sources/second/tuning/",
    ):
        assert url in html, url
    assert 'href="/models/monitoring/"' in html  # the navigation link


def test_api_list_leaves_out_curves_that_the_detail_has(api, alice, reported):
    listed = api(alice).get("/api/v1/models/", {"source": "toy"}).json()
    assert listed[0]["version"] == 2 and "curves" not in listed[0]["validation_report"]
    assert listed[0]["validation_report"]["decision"] == "promote"
    detail = api(alice).get(f"/api/v1/models/{reported.pk}/").json()
    assert set(detail["validation_report"]["curves"]) == {"candidate", "champion"}
    assert detail["history"][0]["by"] == "carol"


def test_promoting_a_gate_rejected_model_asks_first_and_both_reasons_stay_shown(client, carol):
    from models_registry.models import ModelVersion
    from reviews.models import AuditEntry

    source = toy_source()
    fake_model(source, version=1, status="champion", report={"decision": "promote", "reason": "cold start"})
    gate = "significantly worse PR AUC than the champion: 0.61 vs 0.74 (p=0.003)"
    model = fake_model(source, version=2, status="rejected", status_reason=gate, report={"decision": "reject", "reason": gate})
    login(client, carol)
    listed = client.get("/models/").content.decode()
    assert gate in listed

    # The first post only asks: it names the gate's decision and reason, and nothing changes yet.
    ask = client.post(f"/models/{model.pk}/promote/", {"reason": "new traffic pattern, checked by hand"})
    page = ask.content.decode()
    assert ask.status_code == 200 and "The validation gate rejected this model" in page and gate in page
    assert 'name="over_gate" value="yes"' in page and "new traffic pattern, checked by hand" in page
    model.refresh_from_db()
    assert model.status == "rejected" and not AuditEntry.objects.filter(verb="model.promote").exists()

    done = client.post(f"/models/{model.pk}/promote/", {"reason": "new traffic pattern, checked by hand", "over_gate": "yes"})
    assert done.status_code == 302
    model.refresh_from_db()
    assert model.status == "champion" and model.promoted_by == "carol"
    # The models list and the report show the gate's reason and the admin's, each for what it is.
    listed = client.get("/models/").content.decode()
    row = listed[listed.index(f'href="/models/{model.pk}/report/" title') :][:3000]
    assert "reject</strong>: " + gate in row.replace("&gt;", ">")
    assert "promoted by carol over the gate</strong>: new traffic pattern, checked by hand" in row
    report = client.get(f"/models/{model.pk}/report/").content.decode()
    assert "Gate decision: reject" in report and gate in report
    assert "Promoted by carol over the gate" in report and "new traffic pattern, checked by hand" in report
    assert ModelVersion.objects.get(source=source, version=1).status == "retired"


def test_promoting_a_model_the_gate_did_not_reject_needs_no_extra_step(client, carol):
    source = toy_source()
    model = fake_model(source, version=1, status="candidate", report={"decision": "promote", "reason": "cold start"})
    login(client, carol)
    assert client.post(f"/models/{model.pk}/promote/", {"reason": "go"}).status_code == 302
    model.refresh_from_db()
    assert model.status == "champion"
