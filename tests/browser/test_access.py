"""Who may open which console page, as a browser sees it."""

from __future__ import annotations

import pytest

from reviews.models import ReviewItem
from tests.browser.helpers import item_url
from tests.conftest import PASSWORD
from tests.factories import ReviewItemFactory

pytestmark = pytest.mark.browser


def test_anonymous_is_sent_to_login_and_back_to_the_queue(alice, new_page):
    page = new_page()
    page.goto("/")
    assert page.url.endswith("/login/?next=/")
    assert page.get_by_role("heading", name="Log in").is_visible()

    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not the password")
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    assert page.locator(".messages li.error").inner_text() == "Your username and password did not match."

    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    assert page.url.endswith("/") and "/login/" not in page.url
    assert page.get_by_role("heading", name="Review queue").is_visible()


def test_user_without_a_role_gets_403_and_claims_nothing(mallory, login):
    item = ReviewItemFactory()
    page = login(mallory)
    for path in ("/", item_url(item.pk)):
        response = page.goto(path)
        assert response.status == 403, path
        assert page.get_by_role("heading", name="Access denied").is_visible()
        assert page.get_by_text("Your account mallory does not have the role this page needs.").is_visible()
        assert page.get_by_role("button", name="Log out").is_visible(), (
            "a user without a role must be able to log out from the 403 page"
        )
        assert page.get_by_role("heading", name="Review queue").count() == 0
        assert page.get_by_role("link", name="Queue").count() == 0, "no navigation to pages the user cannot open"
        assert page.locator("#decision-form").count() == 0
    # A valid CSRF token, so that the 403 comes from the role check and not from the CSRF check.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post("/next/", headers={"X-CSRFToken": token}, max_redirects=0)
    assert response.status == 403
    assert "CSRF" not in response.text()
    assert ReviewItem.objects.get(pk=item.pk).claimed_by is None


def test_reviewer_gets_403_on_models_and_no_admin_links(alice, login):
    page = login(alice)
    assert page.get_by_role("link", name="Models").count() == 0
    response = page.goto("/models/")
    assert response.status == 403
    assert page.get_by_role("heading", name="Access denied").is_visible()
    assert page.get_by_role("heading", name="Models").count() == 0


def test_admin_sees_the_champion_on_the_models_page(trained_source, carol, login):
    page = login(carol)
    with page.expect_navigation():
        page.get_by_role("link", name="Models").click()
    assert page.url.endswith("/models/")
    row = page.locator("tr", has=page.locator("td", has_text="nsl-kdd")).filter(has_text="champion")
    assert row.count() == 1
    assert "v1" in row.inner_text()
    assert "PR AUC" in row.inner_text()
    assert row.get_by_role("button", name="Roll back").is_visible()
    assert page.get_by_role("button", name="Retrain now").is_visible()
