"""The one module that talks to the outside world: signs a stored body and POSTs it, or writes it
to the log for the log-only executor. Everything else passes plain rows to `send`.

SSRF: the URLs are set by admins only and must be http(s); the worker does not follow redirects
(a 3xx is a failure), reads at most a few kilobytes of the answer, and gives up after the
executor's timeout. It does not refuse private addresses, because receivers on the local network
are the normal case; deployments restrict where the `actions` workers may connect (README)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from actions.choices import DeliveryKind, ExecutorKind

logger = logging.getLogger("secai.actions")

SIGNATURE_HEADER = "X-SecAI-Signature"
USER_AGENT = "SecAI-Review-webhook/1"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does (used by the tests' receiver): constant-time comparison."""
    return hmac.compare_digest(sign(secret, body), signature or "")


def url_problem(url: str) -> str | None:
    """Why an outbound URL is refused, or None. Only absolute http(s) URLs without credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username or parts.password:
        return "must not carry credentials (the signature authenticates the call)"
    if any(ord(c) < 33 for c in url):
        return "must not contain spaces or control characters"
    return None


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    error: str = ""


def send(delivery) -> Outcome:
    """Send one delivery once. Never raises: every failure is an Outcome the caller records."""
    executor, subscription = delivery.executor, delivery.subscription
    if executor is not None and executor.kind == ExecutorKind.LOG:
        verb = "reversed" if delivery.kind == DeliveryKind.REVERSE else "executed"
        logger.info("action %s by log-only executor %s [%s]: %s", verb, executor.name, delivery.idempotency_key, delivery.body)
        return Outcome(ok=True)
    if executor is not None:
        url = executor.reversal_url if delivery.kind == DeliveryKind.REVERSE else executor.url
        secret, timeout = executor.secret, executor.timeout_seconds
    elif subscription is not None:
        url, secret, timeout = subscription.url, subscription.secret, subscription.timeout_seconds
    else:
        return Outcome(ok=False, error="the delivery has no executor or subscription")
    problem = url_problem(url or "")
    if problem:
        return Outcome(ok=False, error=f"URL {problem}")
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": delivery.idempotency_key,
        SIGNATURE_HEADER: sign(secret, body),
        "X-SecAI-Delivery": str(delivery.pk),
        "X-SecAI-Attempt": str(delivery.attempts),
        "X-SecAI-Kind": delivery.topic or delivery.kind,
    }
    try:
        with requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True) as resp:
            answer = resp.raw.read(2048, decode_content=True) or b""
            status = resp.status_code
    except requests.RequestException as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= status < 300:
        return Outcome(ok=True, status=status)
    return Outcome(ok=False, status=status, error=answer.decode("utf-8", "replace")[:500])
