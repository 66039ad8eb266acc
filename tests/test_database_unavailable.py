"""A database that cannot be reached answers 503 with Retry-After on every page, JSON under /api/.
(tests/integration/test_faults.py stops a real PostgreSQL under a running gunicorn.)"""

import json

import pytest
from django.db import InterfaceError, OperationalError
from django.test import RequestFactory

from secai.http import ApiErrorMiddleware


@pytest.mark.parametrize("error", [OperationalError("connection refused"), InterfaceError("connection already closed")])
def test_api_answers_503_json_with_retry_after(error):
    middleware = ApiErrorMiddleware(lambda request: None)
    response = middleware.process_exception(RequestFactory().post("/api/v1/events/"), error)
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    assert json.loads(response.content) == {
        "errors": [{"field": "non_field_errors", "message": "the database is unavailable; retry shortly"}]
    }


def test_console_pages_answer_503_text():
    response = ApiErrorMiddleware(lambda request: None).process_exception(RequestFactory().get("/queue/"), OperationalError("x"))
    assert response.status_code == 503 and response["Content-Type"].startswith("text/plain")
    assert b"database is briefly unavailable" in response.content and response["Retry-After"]


def test_other_errors_are_not_taken_for_an_outage():
    middleware = ApiErrorMiddleware(lambda request: None)
    assert middleware.process_exception(RequestFactory().get("/queue/"), ValueError("bug")) is None
    assert middleware.process_exception(RequestFactory().get("/api/v1/events/"), ValueError("bug")).status_code == 500


def test_every_api_operation_documents_the_503(client):
    # Clients learn from the schema that a 503 is worth retrying; the schema fuzzer holds the
    # answers to what the schema says.
    schema = client.get("/api/v1/schema/?format=json").json()
    operations = [
        (m, p, op) for p, ops in schema["paths"].items() for m, op in ops.items() if m in ("get", "post", "patch", "delete")
    ]
    assert operations
    undocumented = [(m, p) for m, p, op in operations if "503" not in op["responses"]]
    assert not undocumented
    assert schema["paths"]["/api/v1/events/"]["post"]["responses"]["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Errors"
    }
