"""Event data comes from outside (any REST client can send any string): it must render as text."""

from __future__ import annotations

import pytest

from tests.browser.helpers import claim_next, fill_decision, messages_of, submit_decision
from tests.factories import EventFactory, ReviewItemFactory

pytestmark = pytest.mark.browser

SCRIPT = "<script>window.__xss=1</script>"
IMG = '"><img src=x onerror=window.__xss=1>'


def assert_no_script_ran(page) -> None:
    page.wait_for_load_state("load")  # an injected <img src=x> would have failed to load, and fired onerror, by now
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("img").count() == 0


def test_hostile_event_data_renders_as_text_on_queue_and_item_pages(alice, login):
    event = EventFactory(
        external_id=f"ext{IMG}",
        entity=f"{SCRIPT}{IMG}",
        attributes={"bytes": 10, "proto": IMG, "admin": False, "note": SCRIPT, IMG: SCRIPT},
        explanation=[
            {"attribute": "note", "typical": SCRIPT, "contribution": 0.25},
            {"attribute": "proto", "typical": IMG, "contribution": -0.1},
        ],
    )
    item = ReviewItemFactory(event=event)

    page = login(alice)
    assert_no_script_ran(page)
    row = page.locator("#queue tbody tr")
    assert row.count() == 1
    assert row.locator("td").nth(3).inner_text() == event.entity
    assert row.locator("td").nth(5).inner_text() == event.external_id

    assert claim_next(page) == item.pk
    assert_no_script_ran(page)
    attributes = dict(
        zip(page.locator("#attributes th").all_inner_texts(), page.locator("#attributes td").all_inner_texts(), strict=True)
    )
    assert attributes["note"] == SCRIPT
    assert attributes["proto"] == IMG
    assert attributes[IMG] == SCRIPT
    explanation = page.locator(".card", has_text="Why this score").inner_text()
    assert SCRIPT in explanation and IMG in explanation
    assert page.get_by_text(event.entity, exact=True).first.is_visible()

    # The success message repeats the external id: messages are escaped too.
    fill_decision(page, verdict="Approve", reason="confirmed attack")
    submit_decision(page)
    assert_no_script_ran(page)
    assert messages_of(page, "success") == [f"Approved: item {item.pk} ({event.external_id}) is decided."]


def test_long_unbroken_values_wrap_and_keep_the_decision_panel_on_screen(alice, login):
    # A text attribute may hold 10,000 characters and an entity 200, with no space to break at.
    event = EventFactory(
        entity="x" * 200,
        external_id="y" * 200,
        attributes={"bytes": 10, "proto": "z" * 200, "admin": False, "note": "w" * 10_000},
    )
    item = ReviewItemFactory(event=event)
    page = login(alice)
    for url in ("/", f"/items/{item.pk}/"):
        page.goto(url)
        width = page.evaluate("document.documentElement.clientWidth")
        assert page.evaluate("document.documentElement.scrollWidth") <= width, url
    card = page.locator("#decision-card").bounding_box()
    assert card["x"] + card["width"] <= page.viewport_size["width"]
    assert page.locator("#score").is_visible()


def test_hostile_notes_and_reason_labels_render_as_text(alice, carol, login):
    from reviews import services
    from reviews.models import ReasonCode

    ReasonCode.objects.create(code="odd", label=f"odd {IMG}", applies_to="both", order=1)
    decided = ReviewItemFactory(event=EventFactory(entity=SCRIPT))
    services.verdict_submit(item=decided, reviewer=alice, verdict="overturn", reason="odd", note=f"{SCRIPT}\n{IMG}")
    open_item = ReviewItemFactory(event=EventFactory(source=decided.source, entity=SCRIPT))

    page = login(alice)
    page.goto(f"/items/{decided.pk}/")
    assert_no_script_ran(page)
    verdicts = page.locator(".card").filter(has=page.get_by_role("heading", name="Verdicts", exact=True)).inner_text()
    assert SCRIPT in verdicts and IMG in verdicts and f"odd {IMG}" in verdicts
    page.goto(f"/items/{open_item.pk}/")
    assert_no_script_ran(page)
    assert page.locator("#id_reason option", has_text="odd").inner_text() == f"odd {IMG}"

    admin = login(carol)
    for path in ("/audit/", "/admin/reviews/reasoncode/", "/admin/reviews/verdict/"):
        admin.goto(path)
        admin.wait_for_load_state("load")
        assert admin.evaluate("typeof window.__xss") == "undefined", path
        assert admin.locator("img[src=x]").count() == 0, path
