"""The web console's people: local users with a role, and their login sessions.

A user has a name, a role (``viewer`` reads, ``operator`` also acts, ``admin`` also manages
users) and a password hash (bcrypt; the store never sees a password). A session is known by the
SHA-256 of its cookie's token (the token itself is never stored) and carries the CSRF token its
forms must echo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleUser:
    name: str
    role: str
    password_hash: str
    created_at: datetime
    created_by: str
    disabled_at: datetime | None = None  # disabled users cannot log in and hold no token

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


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
    expires_at: datetime | None = None  # None: never (only when asked for explicitly)
    revoked_why: str | None = None  # "revoked", "password changed", "user disabled", ...

    def state(self, now: datetime) -> str:
        """``live``, ``expired`` or ``revoked`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "live"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessEnded:
    """What ending a user's access did: the API tokens it revoked, the sessions it closed."""

    token_ids: list[int]
    sessions: int


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

    def update_console_user(
        self,
        name: str,
        *,
        role: str | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
        why: str,
    ) -> tuple[ConsoleUser, AccessEnded] | None:
        """Change a user's role, password or disabled state (what is not None). A new password
        or disabling also ends the user's access in the same transaction: every live API token
        revoked (``revoked_why=why``), every session closed. None when there is no such user."""
        ...

    def remove_console_user(self, name: str) -> AccessEnded | None:
        """Delete a user with its sessions and tokens; None when there is no such user."""
        ...

    def add_api_token(
        self,
        token_hash: str,
        user_name: str,
        label: str,
        *,
        by: str,
        expires_at: datetime | None = None,
    ) -> ApiToken:
        """Store a new token (its hash) for an existing user, live until ``expires_at``."""
        ...

    def get_api_token(self, token_hash: str) -> ApiToken | None:
        """The token, or None when unknown or revoked (an expired one is returned: the caller
        says it expired)."""
        ...

    def list_api_tokens(self, user_name: str | None = None) -> list[ApiToken]: ...

    def revoke_api_token(self, token_id: int) -> ApiToken | None:
        """Revoke a token (from now on it is refused); None when there is no such token."""
        ...

    # Failed logins, counted in the shared database so every console process sees them.

    def add_login_failure(self, user_name: str, client: str, *, window: timedelta) -> None:
        """Count a failed login against the user name and the client's address; failures
        older than ``window`` are deleted (the throttle no longer counts them)."""
        ...

    def count_login_failures(
        self, user_name: str, client: str, *, window: timedelta
    ) -> tuple[int, int]:
        """Failed logins within the last ``window``: (for the user name, from the client's
        address)."""
        ...

    def clear_login_failures(self, user_name: str) -> None:
        """A successful login: the user name's count starts again (the client's stays)."""
        ...

    def note_login_refusal(self, user_name: str, client: str, *, window: timedelta) -> bool:
        """True for the first throttled login of (user name, client) within ``window`` (then
        it is noted: every later one in the window answers False, in any process)."""
        ...
