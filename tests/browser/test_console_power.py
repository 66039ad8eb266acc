"""The all-day flows: keyboard only, bulk decisions with a confirmation, four-eyes, undo."""

from reviews.models import Label, ReviewItem, Verdict
from tests.browser.helpers import item_id_of
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory


def test_keyboard_only_claim_decide_undo_and_next(alice, login):
    first = ReviewItemFactory(priority=3.9)
    second = ReviewItemFactory(priority=3.1)
    page = login(alice)
    with page.expect_navigation():
        page.keyboard.press("n")  # claim next from the queue
    assert item_id_of(page) == first.pk
    page.keyboard.press("o")  # overturn
    page.keyboard.press("1")  # first reason that fits an overturn
    assert page.locator("#id_reason").input_value() == "known_benign"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert item_id_of(page) == second.pk  # moved on to the next item
    assert Verdict.objects.get(item=first).reason == "known_benign"
    # "u" on the next item's page takes back the verdict just given, without going back to it.
    assert page.locator("#undo-form").inner_text().startswith(f"Undo my verdict on item #{first.pk}")
    with page.expect_navigation():
        page.keyboard.press("u")
    assert item_id_of(page) == first.pk
    assert page.get_by_text("Your verdict on item").is_visible()
    assert not Label.objects.filter(event=first.event).exists()
    page.keyboard.press("a")
    page.keyboard.press("1")
    assert page.locator("#id_reason").input_value() == "confirmed_attack"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert Label.objects.get(event=first.event).is_threat is True


def test_bulk_decision_over_a_filter_confirms_the_count(alice, login):
    src = SourceFactory()
    noisy = [ReviewItemFactory(event=EventFactory(source=src, entity="backup-host")) for _ in range(4)]
    other = ReviewItemFactory(event=EventFactory(source=src, entity="laptop-12"))
    page = login(alice)
    page.goto("/?entity=backup-host")
    assert page.locator("#queue-count").inner_text().startswith("4 items")
    page.locator(".bulk-form select[name=verdict]").select_option("overturn")
    with page.expect_navigation():
        page.locator("#bulk-start").click()
    assert "4 items will be overturned" in page.locator("#bulk-count").inner_text()
    assert not Verdict.objects.exists()  # nothing changes before the confirmation
    offered = page.locator("#bulk-confirm-form select[name=reason] option:not([hidden])").all_inner_texts()
    assert "known benign activity" in offered and "confirmed attack" not in offered  # only reasons for an overturn
    page.get_by_label("Reason").select_option("known_benign")
    with page.expect_navigation():
        page.locator("#bulk-confirm").click()
    assert page.get_by_text("Bulk overturn: 4 item(s) decided").is_visible()
    assert set(Verdict.objects.values_list("item_id", flat=True)) == {i.pk for i in noisy}
    assert ReviewItem.objects.get(pk=other.pk).state == "open"


def test_four_eyes_second_opinion_in_two_browsers(alice, bob, login):
    item = ReviewItemFactory(required_verdicts=2)
    a = login(alice)
    a.goto(f"/items/{item.pk}/")
    assert "four-eyes: 0 of 2" in a.locator("#four-eyes").inner_text()
    a.get_by_role("radio", name="Approve").check()
    a.get_by_label("Reason").select_option("confirmed_attack")
    with a.expect_navigation():
        a.get_by_role("button", name="Submit and take next").click()
    assert a.get_by_text("recorded as the first opinion").is_visible()
    assert not Label.objects.exists()
    b = login(bob)
    b.goto(f"/items/{item.pk}/")
    assert "four-eyes: 1 of 2" in b.locator("#four-eyes").inner_text()
    b.get_by_role("radio", name="Approve").check()
    b.get_by_label("Reason").select_option("policy_violation")
    with b.expect_navigation():
        b.get_by_role("button", name="Submit and take next").click()
    assert b.get_by_text(f"item {item.pk}").first.is_visible()
    item.refresh_from_db()
    assert item.state == "decided" and Label.objects.get(event=item.event).is_threat is True


def test_enter_on_a_focused_button_does_that_buttons_action_not_the_decision(alice, login):
    first = ReviewItemFactory(priority=3.9)
    ReviewItemFactory(priority=3.1)
    page = login(alice)
    with page.expect_navigation():
        page.keyboard.press("n")
    assert item_id_of(page) == first.pk
    page.keyboard.press("o")
    page.keyboard.press("1")
    page.get_by_role("button", name="Release claim").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert not Verdict.objects.exists()  # the decision form was not submitted
    released = ReviewItem.objects.get(pk=first.pk)
    assert released.state == "open" and released.claimed_by_id is None
    # Enter on a focused link follows the link; the decision form is not submitted either.
    with page.expect_navigation():
        page.keyboard.press("n")
    page.keyboard.press("a")
    page.keyboard.press("1")
    link = page.locator("a[href='/']").first
    link.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/") and "/items/" not in page.url
    assert not Verdict.objects.exists()
    # With focus inside the decision form, Enter still decides.
    with page.expect_navigation():
        page.keyboard.press("n")
    decided = item_id_of(page)
    page.keyboard.press("a")
    page.keyboard.press("1")
    page.get_by_role("radio", name="Approve").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert Verdict.objects.get().item_id == decided
