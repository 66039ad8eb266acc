"""HTTP plumbing below the API views: a JSON parser that refuses what the database and the
renderer cannot take back, and a middleware that keeps /api/ errors in the API's JSON shape."""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any
from urllib.parse import unquote_plus

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from rest_framework.parsers import JSONParser

logger = logging.getLogger(__name__)


def clean_text(text: str) -> str:
    """Error messages may echo client input; a lone surrogate in it cannot be encoded as UTF-8
    and would turn a 400 into a 500, so it is replaced."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _first(value: Any, hit, path: str = "") -> tuple[str, Any] | None:
    """(path, value) of the first value, or dict key, in a parsed JSON body for which hit() is
    true, e.g. ("events[3].attributes.bytes", NaN); None when there is none."""
    if hit(value):
        return path or "body", value
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{clean_text(str(key))}" if path else clean_text(str(key))
            found = (here, key) if hit(key) else _first(item, hit, here)
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _first(item, hit, f"{path}[{i}]")
            if found:
                return found
    return None


def _bad_unicode(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _NonFinite:
    """Stands for a NaN or Infinity literal while the body is read again to say where it is."""

    def __init__(self, literal: str):
        self.literal = literal


class StrictJSONParser(JSONParser):
    """JSON that the database and the renderer can take back: strings must be valid Unicode (no
    lone surrogates, which JSON escapes allow), no NaN or Infinity (not JSON, though Python's
    reader takes them), and nesting within Python's limits. A refusal names where it is, e.g.
    events[3].attributes.bytes."""

    def parse(self, stream, media_type=None, parser_context=None):
        from rest_framework.exceptions import ParseError

        body = stream.read() if stream is not None else b""
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc
        except ParseError:
            where = self._non_finite_at(body, parser_context)
            if where is None:
                raise
            raise ParseError(f"{where[1]} at {where[0]} is not a number: JSON has no NaN or Infinity") from None
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            where = (_first(data, _bad_unicode) or ("body", None))[0]
            raise ParseError(f"invalid Unicode (a lone surrogate) at {where}") from exc
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc
        return data

    @staticmethod
    def _non_finite_at(body: bytes, parser_context) -> tuple[str, str] | None:
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            found = _first(json.loads(body.decode(encoding), parse_constant=_NonFinite), lambda v: isinstance(v, _NonFinite))
            return (found[0], found[1].literal) if found else None
        except (ValueError, RecursionError):
            return None


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


# Query parameters under which clients (or libraries) put credentials. A token in a URL ends up in
# access logs, proxy logs, browser history and Referer headers, so none is accepted there.
CREDENTIAL_PARAMS = frozenset(
    {"token", "auth_token", "access_token", "api_key", "apikey", "key", "auth", "authorization", "bearer", "password"}
)
_CREDENTIAL_VALUE = re.compile(r"^\s*(token|bearer|basic)\s+\S", re.IGNORECASE)


def credentials_in_query(query: dict) -> bool:
    return any(
        name.lower() in CREDENTIAL_PARAMS or any(_CREDENTIAL_VALUE.match(v) for v in query.getlist(name)) for name in query
    )


class CredentialsInUrlMiddleware:
    """Refuses, with a 400 that does not repeat it, any request carrying a credential in its query
    string, on the API and the console alike: tokens are accepted only in the Authorization header.
    The request is refused even when it also has a valid header, so a client that leaks its token
    into URLs finds out at once."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.GET and credentials_in_query(request.GET):
            return JsonResponse(
                {
                    "errors": [
                        {
                            "field": "query",
                            "message": "credentials are not accepted in the URL; send the token in the "
                            "Authorization header (Authorization: Token <key>) and revoke a token that was sent in a URL",
                        }
                    ]
                },
                status=400,
            )
        return self.get_response(request)


class NulInQueryMiddleware:
    """Refuses, with a 400 naming the parameter, any request whose query string holds a NUL
    character, on the API and the console alike. PostgreSQL cannot compare text with NUL: a
    filter such as ?source=%00 fails the query itself (a DataError, so a 500) instead of matching
    nothing, and no parameter of this application can legitimately hold one."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        bad = [name for name, values in request.GET.lists() if "\x00" in name or any("\x00" in v for v in values)]
        if bad:
            names = [name.replace("\x00", "\\x00")[:100] for name in bad]
            if not request.path.startswith("/api/"):
                return HttpResponse(
                    "A query parameter holds a NUL character.\n", status=400, content_type="text/plain; charset=utf-8"
                )
            return JsonResponse(
                {"errors": [{"field": name, "message": "must not contain NUL characters"} for name in names]}, status=400
            )
        return self.get_response(request)


_REQUEST_LINE_QUERY = re.compile(r"([?&])([^=&\s\"]+)=([^&\s\"]*)")


def redact_query(text: str) -> str:
    def replace(match: re.Match) -> str:
        name, value = match.group(2), match.group(3)
        if name.lower() in CREDENTIAL_PARAMS or _CREDENTIAL_VALUE.match(unquote_plus(value)):
            return f"{match.group(1)}{name}=[redacted]"
        return match.group(0)

    return _REQUEST_LINE_QUERY.sub(replace, text)


class RedactCredentialsFilter(logging.Filter):
    """Blanks credential values in logged request lines (runserver logs the whole line, query included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(redact_query(a) if isinstance(a, str) and "?" in a else a for a in record.args)
        if isinstance(record.msg, str) and "?" in record.msg:
            record.msg = redact_query(record.msg)
        return True


# Scripts only from this site (no inline script anywhere in the console); inline style attributes
# are allowed, images may be data: URIs (the tuning page's plots). No framing, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware:
    """A second line against stored XSS: even if some attribute value slipped past escaping,
    the browser would not run an inline script or a handler attribute."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


def client_address(request) -> str | None:
    """The client's address: REMOTE_ADDR, or behind SECAI_PROXY_COUNT proxies the X-Forwarded-For
    entry that many places from the right. Entries further left were written by the client and
    prove nothing."""
    from django.conf import settings

    proxies = settings.SECAI_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies > 0 and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.META.get("REMOTE_ADDR")
