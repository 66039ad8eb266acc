"""Fixtures for the actions tests: a source with its built-in actions, an executor pointing at a
webhook receiver on 127.0.0.1 started by the test, and review items on that source."""

from __future__ import annotations

import pytest

from actions import services
from actions.models import ActionType, Executor
from tests.actions.receiver import Receiver, webhook_for
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory

SECRET = "test-secret-0123456789abcdef"


@pytest.fixture
def receiver():
    r = Receiver(secret=SECRET).start()
    yield r
    r.stop()


@pytest.fixture
def source(db):
    source = SourceFactory(name="idp")
    services.action_types_seed(source=source)
    return source


@pytest.fixture
def webhook(source, receiver) -> Executor:
    return webhook_for(source, receiver)


@pytest.fixture
def deny(source, webhook) -> ActionType:
    return ActionType.objects.get(source=source, name="deny")


@pytest.fixture
def make_item(source):
    def make(*, mode: str = "propose", entity: str = "user-1", action: str = "deny", **kw):
        event = EventFactory(source=source, entity=entity, proposed_action=action)
        return ReviewItemFactory(event=event, mode=mode, **kw)

    return make
