"""HTTP plumbing below the API views: a JSON parser that refuses what the database and the
renderer cannot take back, and a middleware that keeps /api/ errors in the API's JSON shape."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
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


class ApiErrorMiddleware:
    """Under /api/, answers that Django itself produces (an unknown URL, a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE, an unexpected exception) come in the API's JSON error shape
    instead of an HTML page."""

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
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"errors": [{"field": "body", "message": "request body too large"}]}, status=413)
        logger.exception("unhandled error on %s", request.path)
        return JsonResponse(
            {"errors": [{"field": "non_field_errors", "message": "internal error; it has been logged"}]}, status=500
        )
