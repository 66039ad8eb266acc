"""The model report's History card at common desktop widths: the gate's reason reads as text,
not a column a few letters wide."""

import pytest

from tests.models_registry.helpers import fake_model, toy_source

REASON = (
    "gate: PR AUC 0.91 against a minimum of 0.80; false-positive rate at the review threshold 0.03 "
    "against a maximum of 0.05; promoted to champion over v1"
)


@pytest.mark.parametrize("width", [1400, 1920])
def test_history_reasons_get_the_width_of_the_card(carol, login, width):
    source = toy_source()
    model = fake_model(
        source,
        status="champion",
        history=[
            {"at": "2026-01-05T10:00:00+00:00", "status": "candidate", "by": "training", "reason": "trained"},
            {"at": "2026-01-05T10:05:00+00:00", "status": "champion", "by": "system:gate", "reason": REASON},
        ],
    )
    page = login(carol)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"/models/{model.pk}/report/")
    card = page.locator(".card", has=page.get_by_role("heading", name="History"))
    reason = card.locator("td", has_text="promoted to champion")
    card_box, reason_box = card.bounding_box(), reason.bounding_box()
    # The reason cell spans (nearly) the card's width and no word is broken.
    assert reason_box["width"] > 0.8 * (card_box["width"] - 40), (reason_box, card_box)
    assert reason_box["width"] > 200
    words = page.evaluate(
        """(td) => { const r = document.createRange(); const node = td.firstChild; const text = node.textContent;
        let i = text.indexOf('false-positive'); r.setStart(node, i); r.setEnd(node, i + 'false-positive'.length);
        return r.getClientRects().length; }""",
        reason.element_handle(),
    )
    assert words == 1  # "false-positive" sits on one line
