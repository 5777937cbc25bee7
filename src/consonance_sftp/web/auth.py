"""Who is asking: sessions in cookies, roles, CSRF tokens, login throttling.

* The session cookie holds a random token (the store keeps only its SHA-256); it is HttpOnly,
  SameSite=Strict and, unless turned off for plain-http localhost, Secure with the ``__Host-``
  prefix (no Domain, Path=/, so no other host or path can set it).
* Every form carries the session's CSRF token (the login form a token of its own, paired with a
  cookie): a POST without the right one is refused (403).
* Failed logins are counted per user name and per client address within a window, in the
  shared database (every console process sees the same counts); past the limit the login is
  refused (429) without even checking the password.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from fastapi import HTTPException, Request

from consonance_sftp.app import console
from consonance_sftp.app.console import Store


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


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    """Failed logins per user name and per client address, within a sliding window.

    The limits live here; the counts live in the shared database (``login_failures``), so every
    console process on the same database (``web`` and ``serve --web`` side by side, several
    behind one proxy) sees the same counts, and a restart clears none."""

    per_user: int = 5
    per_client: int = 20
    window_s: float = 900.0

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_s)

    def blocked(self, store: Store, user: str, client: str) -> bool:
        by_user, by_client = store.count_login_failures(user, client, window=self.window)
        return by_user >= self.per_user or by_client >= self.per_client

    def first_refusal(self, store: Store, user: str, client: str) -> bool:
        """Is this the first throttled login of (user, client) in the window, in any process?
        Only that one goes on the audit trail: a flood of tries cannot flood the trail."""
        return store.note_login_refusal(user, client, window=self.window)

    def failed(self, store: Store, user: str, client: str) -> None:
        store.add_login_failure(user, client, window=self.window)

    def succeeded(self, store: Store, user: str) -> None:
        store.clear_login_failures(user)


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
