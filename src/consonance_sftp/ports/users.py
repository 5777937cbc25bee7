"""The web console's people: local users with a role, and their login sessions.

A user has a name, a role (``viewer`` reads, ``operator`` also acts, ``admin`` also manages
users) and a password hash (bcrypt; the store never sees a password). A session is known by the
SHA-256 of its cookie's token (the token itself is never stored) and carries the CSRF token its
forms must echo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleUser:
    name: str
    role: str
    password_hash: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleSession:
    token_hash: str  # SHA-256 (hex) of the cookie's token
    user_name: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """A JSON API token of a user: kept by its SHA-256; the token is shown once, when made."""

    id: int
    token_hash: str
    user_name: str
    label: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None


class ConsoleUsers(Protocol):
    """Users and sessions of the web console (``adapters.store.users``)."""

    def add_console_user(
        self, name: str, role: str, password_hash: str, *, by: str, replace: bool = False
    ) -> ConsoleUser:
        """Add a user (``replace``: or set the role and password of an existing one); raises
        ``StoreError`` for a name already taken without ``replace``."""
        ...

    def get_console_user(self, name: str) -> ConsoleUser | None: ...

    def list_console_users(self) -> list[ConsoleUser]: ...

    def add_console_session(self, session: ConsoleSession) -> None: ...

    def get_console_session(self, token_hash: str) -> ConsoleSession | None:
        """The session, or None when unknown or expired."""
        ...

    def delete_console_session(self, token_hash: str) -> None: ...

    def add_api_token(self, token_hash: str, user_name: str, label: str, *, by: str) -> ApiToken:
        """Store a new token (its hash) for an existing user."""
        ...

    def get_api_token(self, token_hash: str) -> ApiToken | None:
        """The token, or None when unknown or revoked."""
        ...

    def list_api_tokens(self, user_name: str | None = None) -> list[ApiToken]: ...

    def revoke_api_token(self, token_id: int) -> ApiToken | None:
        """Revoke a token (from now on it is refused); None when there is no such token."""
        ...
