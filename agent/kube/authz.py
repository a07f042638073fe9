"""Kubernetes authorization of scrapers (--web.kubernetes-auth), in process.

A scraper presents its service-account token as `Authorization: Bearer`; the agent asks
the API server who it is (TokenReview) and whether that user may GET the path
(SubjectAccessReview with nonResourceAttributes, so an RBAC rule `nonResourceURLs:
["/metrics"], verbs: ["get"]` grants it, as Prometheus' own ClusterRole does). This is the
check kube-rbac-proxy made as a sidecar and controller-runtime's metrics server now makes
in process (filters.WithAuthenticationAndAuthorization); here it costs no extra container.

Outcomes are cached by a SHA-256 of the token and the path: an allowed answer for
`allow_ttl`, a refusal for `deny_ttl` (a token just granted its role is not refused for
long), at most `max_entries` of them. At most `max_concurrent` reviews run at once, so a
flood of made-up tokens costs the API server a bounded rate of calls; past it the server
answers 503.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Optional

from .apiserver import KubeClient, KubeError

log = logging.getLogger(__name__)

TOKEN_REVIEW = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 - an API path, not a secret
ACCESS_REVIEW = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
MAX_TOKEN_CHARS = 16 * 1024


class KubeAuthorizer:
    def __init__(self, client: KubeClient, *, allow_ttl: float = 60.0, deny_ttl: float = 10.0,
                 max_entries: int = 1024, max_concurrent: int = 2, timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.allow_ttl, self.deny_ttl = allow_ttl, deny_ttl
        self.max_entries = max_entries
        self.timeout = timeout
        self._clock = clock
        self._cache: collections.OrderedDict[bytes, tuple[int, str, float]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self.reviews = 0

    @staticmethod
    def _key(token: str, path: str) -> bytes:
        return hashlib.sha256(f"{path}\0{token}".encode("utf-8", "replace")).digest()

    def cached(self, token: str, path: str) -> Optional[tuple[int, str]]:
        """(status, reason) when a fresh answer is cached; None otherwise."""
        key = self._key(token, path)
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            status, reason, expires = hit
            if expires <= self._clock():
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return status, reason

    def review(self, token: str, path: str) -> tuple[int, str]:
        """(200, "") when the token's user may GET `path`; (401 | 403, reason) when not;
        (503, reason) when the API server cannot answer (not cached). Blocking."""
        cached = self.cached(token, path)
        if cached is not None:
            return cached
        if len(token) > MAX_TOKEN_CHARS:
            return self._remember(token, path, 401, "bearer token too long")
        if not self._slots.acquire(blocking=False):
            return 503, "too many authorization reviews in flight"
        try:
            status, reason = self._ask(token, path)
        except KubeError as exc:
            log.warning("web: Kubernetes authorization unavailable: %s", exc)
            return 503, "authorization unavailable"
        finally:
            self._slots.release()
        return self._remember(token, path, status, reason)

    def _ask(self, token: str, path: str) -> tuple[int, str]:
        self.reviews += 1
        tr = self.client.post_json(TOKEN_REVIEW, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                                  "spec": {"token": token}}, timeout=self.timeout)
        status: dict[str, Any] = tr.get("status") or {}
        if not status.get("authenticated"):
            return 401, "bearer token not authenticated"
        user: dict[str, Any] = status.get("user") or {}
        sar = self.client.post_json(ACCESS_REVIEW, {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user.get("username", ""), "uid": user.get("uid", ""),
                     "groups": list(user.get("groups") or []), "extra": dict(user.get("extra") or {}),
                     "nonResourceAttributes": {"path": path, "verb": "get"}}}, timeout=self.timeout)
        decision: dict[str, Any] = sar.get("status") or {}
        name = str(user.get("username", "?"))[:120]
        if decision.get("allowed"):
            return 200, ""
        return 403, f"{name} may not get {path}"

    def _remember(self, token: str, path: str, status: int, reason: str) -> tuple[int, str]:
        ttl = self.allow_ttl if status == 200 else self.deny_ttl
        with self._lock:
            self._cache[self._key(token, path)] = (status, reason, self._clock() + ttl)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return status, reason
