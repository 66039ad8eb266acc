"""The OpenAPI schema fuzzed by schemathesis against the WSGI application, as an admin (who may call
every operation) and as a reviewer, and the operations of API clients also as an API client: no
request, however malformed, gets a 500, every answer has a documented status code and content type
and matches its documented schema (errors included).

Bounded: a fixed number of examples per operation, no deadline (the machine is shared)."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reviews import services
from secai.wsgi import application
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 12
# Operations whose main caller is an API client (a client system submitting events and forwarding
# appeals); the admin and the reviewer get no further than the permission check on some of them.
CLIENT_OPERATIONS = {
    ("POST", "/api/v1/events/"),
    ("POST", "/api/v1/appeals/"),
    ("GET", "/api/v1/appeals/"),
    ("GET", "/api/v1/appeals/{id}/"),
}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# Loaded at collection (the schema view needs no database), so that every operation is a test of
# its own.
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    # The WSGI handler closes database connections at the end of each request; inside the test's
    # transaction that would close the test's own connection (Django's test client does the same).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_world(alice, carol, ingest):
    """Objects with small ids, so generated ids sometimes hit real rows."""
    source = SourceFactory(name="fuzz")
    source.api_clients.add(ingest)
    items = [ReviewItemFactory(event=EventFactory(source=source)) for _ in range(3)]
    services.verdict_submit(item=items[0], reviewer=alice, verdict="approve", reason="confirmed_attack")
    return {"carol": carol, "alice": alice, "ingest": ingest}


@pytest.fixture
def token_headers(fuzz_world):
    return {p: {"Authorization": f"Token {Token.objects.get_or_create(user=fuzz_world[p])[0].key}"} for p in fuzz_world}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_api_answers_every_generated_request_within_its_contract(case, token_headers):
    personas = ["carol", "alice"]  # each request as an admin, then as a reviewer
    if (case.method.upper(), case.operation.path) in CLIENT_OPERATIONS:
        personas.append("ingest")
    for persona in personas:
        case.call_and_validate(headers=token_headers[persona], checks=CHECKS)
