"""Who is asking: sessions in cookies, roles, CSRF tokens, login throttling.

* The session cookie holds a random token (the store keeps only its SHA-256); it is HttpOnly,
  SameSite=Strict and, unless turned off for plain-http localhost, Secure with the ``__Host-``
  prefix (no Domain, Path=/, so no other host or path can set it).
* Every form carries the session's CSRF token (the login form a token of its own, paired with a
  cookie): a POST without the right one is refused (403).
* Failed logins are counted per user name and per client address within a window; past the
  limit the login is refused (429) without even checking the password.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from fastapi import HTTPException, Request

from consonance_sftp.app import console


@dataclass(frozen=True, slots=True)
class Viewer:
    """The logged-in user of a request."""

    name: str
    role: str
    csrf_token: str
    token: str  # the session cookie's token

    def can(self, needed: str) -> bool:
        return console.can(self.role, needed)


class LoginRequired(Exception):
    """No live session: a page redirects to the login form, an action is refused."""


class LoginThrottle:
    """Failed logins per user name and per client address, within a sliding window."""

    def __init__(self, *, per_user: int = 5, per_client: int = 20, window_s: float = 900.0) -> None:
        self.per_user = per_user
        self.per_client = per_client
        self.window_s = window_s
        self._fails: dict[str, deque[float]] = {}
        self._told: dict[tuple[str, str], float] = {}  # throttled logins already on the trail
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def blocked(self, user: str, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return (
                len(self._recent(f"u:{user}", now)) >= self.per_user
                or len(self._recent(f"c:{client}", now)) >= self.per_client
            )

    def first_refusal(self, user: str, client: str) -> bool:
        """Is this the first throttled login of (user, client) in the window? Only that one
        goes on the audit trail: a flood of tries cannot flood the trail."""
        now = time.monotonic()
        with self._lock:
            told = self._told.get((user, client))
            if told is not None and told > now - self.window_s:
                return False
            self._told[(user, client)] = now
            return True

    def failed(self, user: str, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(f"u:{user}", now).append(now)
            self._recent(f"c:{client}", now).append(now)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._fails.pop(f"u:{user}", None)


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    secure: bool = True

    @property
    def session_name(self) -> str:
        return "__Host-consonance-session" if self.secure else "consonance-session"

    @property
    def login_csrf_name(self) -> str:
        return "__Host-consonance-login" if self.secure else "consonance-login"


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def check_csrf(viewer: Viewer, token: str | None) -> None:
    if not same_token(token, viewer.csrf_token):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")


def require(viewer: Viewer, needed: str) -> None:
    if not viewer.can(needed):
        raise HTTPException(403, f"this needs the {needed} role; you are a {viewer.role}")
