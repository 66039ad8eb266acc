"""API rate limits per token: a runaway or compromised client cannot monopolise the web processes."""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.core.cache import caches
from rest_framework.authtoken.models import Token
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class TokenRateThrottle(SimpleRateThrottle):
    """SECAI_API_RATE requests per token (per session for console users, per address for anonymous
    requests), counted in the "shared" cache so that every web process sees the same counts.

    The rate is read per request rather than at import, so it can be changed by settings alone.
    If the shared cache is unreachable the request is let through: the database, not the cache,
    decides whether an event is accepted, and a Redis outage must not stop ingestion."""

    scope = "api"

    @property
    def cache(self):  # type: ignore[override]
        return caches["shared"]

    def get_rate(self) -> str | None:
        rate = settings.SECAI_API_RATE
        return None if rate in ("", "off", "none") else rate

    def __init__(self):
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate) if self.rate else (None, None)

    def get_cache_key(self, request, view) -> str:
        if isinstance(request.auth, Token):
            # a digest, not the key itself: cache keys are visible to whoever can read the cache
            ident = "token:" + hashlib.sha256(request.auth.key.encode()).hexdigest()[:32]
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"addr:{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        try:
            return super().allow_request(request, view)
        except Exception:  # the shared cache is down: fail open, say so in the log
            logger.warning("rate limit not applied: the shared cache is unreachable", exc_info=True)
            return True
