"""HTTP plumbing below the API views: a JSON parser that refuses what the database and the
renderer cannot take back, and a middleware that keeps /api/ errors in the API's JSON shape."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from rest_framework.parsers import JSONParser

logger = logging.getLogger(__name__)


def clean_text(text: str) -> str:
    """Error messages may echo client input; a lone surrogate in it cannot be encoded as UTF-8
    and would turn a 400 into a 500, so it is replaced."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _find_bad_unicode(value: Any, path: str = "") -> str | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{clean_text(str(key))}" if path else clean_text(str(key))
            if _find_bad_unicode(str(key), here) or _find_bad_unicode(item, here):
                return here
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _find_bad_unicode(item, f"{path}[{i}]")
            if found:
                return found
    return None


class StrictJSONParser(JSONParser):
    """JSON that the database and the renderer can take back: strings must be valid Unicode (no
    lone surrogates, which JSON escapes allow) and nesting must stay within Python's limits."""

    def parse(self, stream, media_type=None, parser_context=None):
        from rest_framework.exceptions import ParseError

        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            where = _find_bad_unicode(data) or "body"
            raise ParseError(f"invalid Unicode (a lone surrogate) at {where}") from exc
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc
        return data


# How long a client should wait before retrying while the database is unreachable; a restart
# or failover takes seconds, and the connection health checks reconnect on the next request.
RETRY_AFTER_SECONDS = 5


class ApiErrorMiddleware:
    """Under /api/, answers that Django itself produces (an unknown URL, a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE, an unexpected exception) come in the API's JSON error shape
    instead of an HTML page. A database that cannot be reached is a 503 with Retry-After, on
    every page: the request changed nothing (its transaction never committed), so retrying it is
    safe, and an ingestion client that retries a batch gets its events reported as duplicates."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            message = {404: "not found", 405: "method not allowed", 413: "request body too large"}.get(
                response.status_code, "request failed"
            )
            return JsonResponse({"errors": [{"field": "non_field_errors", "message": message}]}, status=response.status_code)
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.warning("database unavailable on %s: %s", request.path, exception)
            if request.path.startswith("/api/"):
                response = JsonResponse(
                    {"errors": [{"field": "non_field_errors", "message": "the database is unavailable; retry shortly"}]},
                    status=503,
                )
            else:
                response = HttpResponse("The database is briefly unavailable; retry in a few seconds.\n", status=503)
                response["Content-Type"] = "text/plain; charset=utf-8"
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"errors": [{"field": "body", "message": "request body too large"}]}, status=413)
        logger.exception("unhandled error on %s", request.path)
        return JsonResponse(
            {"errors": [{"field": "non_field_errors", "message": "internal error; it has been logged"}]}, status=500
        )
