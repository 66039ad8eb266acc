"""Playwright fixtures for the browser tests: one headless Debian chromium per session, a fresh
browser context (cookies, session) per persona per test, all against pytest-django's live_server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Playwright's sync API runs an asyncio event loop in the test thread; Django would otherwise
# refuse ORM calls from the test body ("You cannot call this from an async context").
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.test import Client  # noqa: E402

from reviews.roles import ROLE_GROUPS  # noqa: E402
from tests.conftest import PASSWORD  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Short enough that a broken page fails fast, long enough for a loaded 2-core CI machine.
TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) to run the browser tests"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()
    pw.stop()


@pytest.fixture(autouse=True)
def _role_groups(transactional_db) -> None:
    """live_server needs a transactional database, which is flushed after each test and with it the
    role groups that a data migration created; the persona fixtures look them up by name."""
    for name in ROLE_GROUPS:
        Group.objects.get_or_create(name=name)


@pytest.fixture
def new_page(browser, live_server) -> Iterator[Callable]:
    """new_page() -> an anonymous page in its own browser context, with base_url set to the live server."""
    contexts = []

    def make():
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1300, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def login(new_page, live_server) -> Callable:
    """login(user) -> a page in a fresh context, logged in as user, on the queue.

    By default the session is made server-side and handed to the browser as a cookie (fast);
    form=True logs in through the login page as a person would."""

    def make(user: User, *, form: bool = False):
        page = new_page()
        if form:
            page.goto("/login/")
            page.get_by_label("Username").fill(user.get_username())
            page.get_by_label("Password").fill(PASSWORD)
            with page.expect_navigation():
                page.get_by_role("button", name="Log in").click()
        else:
            client = Client()
            client.force_login(user)
            session = client.cookies[settings.SESSION_COOKIE_NAME].value
            page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}])
            page.goto("/")
        assert "/login/" not in page.url, f"login as {user} failed"
        return page

    return make
