"""One error shape for the whole API: {"errors": [{"index"?, "field", "message"}]}, whatever went
wrong: a bad field, a body that is not JSON, an unknown URL, a body over the size limit, a bug."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from reviews.services import BatchInvalid, ServiceError
from secai.http import clean_text as _clean


def _flatten(detail: Any, field: str = "non_field_errors", index: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = str(key) if field == "non_field_errors" else f"{field}.{key}"
            out.extend(_flatten(value, name, index))
    elif isinstance(detail, list):
        for value in detail:
            out.extend(_flatten(value, field, index))
    else:
        entry: dict[str, Any] = {"field": field, "message": str(detail)}
        if index is not None:
            entry = {"index": index, **entry}
        out.append(entry)
    return out


def _clean_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _clean(v) if isinstance(v, str) else v for k, v in e.items()} for e in errors]


def error_response(errors: list[dict[str, Any]], status_code: int) -> Response:
    return Response({"errors": _clean_errors(errors)}, status=status_code)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, BatchInvalid):
        return error_response([e.as_dict() for e in exc.errors], status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ServiceError):
        return error_response([{"field": exc.field, "message": exc.message}], exc.status_code)
    if isinstance(exc, DjangoValidationError):
        return error_response(
            _flatten(exc.message_dict if hasattr(exc, "error_dict") else exc.messages), status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(detail)
    elif isinstance(detail, dict) and "detail" in detail:
        errors = [{"field": "non_field_errors", "message": str(detail["detail"])}]
    else:
        errors = _flatten(detail)
    response.data = {"errors": _clean_errors(errors)}
    return response


def takes_no_body(view_method):
    """For operations that take no input: a body is still parsed, so a malformed one is a 400
    (or a 413, 415) like everywhere else, and a well-formed one with content is refused instead of
    being silently ignored."""

    @functools.wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        data = request.data
        if not (isinstance(data, Mapping) and len(data) == 0):
            raise exceptions.ValidationError({"body": "this operation takes no body (send none, or {})"})
        return view_method(self, request, *args, **kwargs)

    return wrapper
