"""The Content-Security-Policy allows what the pages need and nothing more: no page logs a CSP
violation, and the Swagger UI still renders the API."""

from __future__ import annotations

import pytest

from tests.factories import ReviewItemFactory

pytestmark = pytest.mark.browser


def _violations(page) -> list[str]:
    found: list[str] = []
    page.on("console", lambda msg: found.append(msg.text) if "Content Security Policy" in msg.text else None)
    return found


def test_console_pages_run_under_the_policy_without_violations(alice, carol, login):
    item = ReviewItemFactory()
    page = login(carol)
    violations = _violations(page)
    for path in (
        "/",
        f"/items/{item.pk}/",
        "/clusters/",
        "/dashboard/",
        "/audit/",
        "/models/",
        "/admin/",
        "/admin/reviews/source/",
    ):
        page.goto(path)
        page.wait_for_load_state("load")
    assert violations == []
    # the console script still runs: "n" claims the next item
    page.goto("/")
    page.keyboard.press("n")
    page.wait_for_url(f"**/items/{item.pk}/")
    assert violations == []


def test_swagger_ui_renders_the_api_under_the_policy(alice, new_page):
    page = new_page()
    violations = _violations(page)
    page.goto("/api/v1/docs/")
    page.locator(".swagger-ui .opblock").first.wait_for()
    assert page.locator(".swagger-ui .opblock").count() > 20
    assert violations == []
