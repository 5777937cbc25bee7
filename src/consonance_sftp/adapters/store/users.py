"""The web console's users and sessions in ``SqlStore`` (``ports.users.ConsoleUsers``).

Mixed into ``SqlStore`` (adapters/store/sql_store.py). Passwords never reach the store: the app
hashes them (bcrypt) and a session is kept by the SHA-256 of its cookie's token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from consonance_sftp.adapters.store.base import (
    Tables,
    from_db_time_required,
    to_db_time,
    translate_errors,
)
from consonance_sftp.adapters.store.schema import api_tokens, console_sessions, console_users
from consonance_sftp.errors import StoreError
from consonance_sftp.ports.clock import Clock
from consonance_sftp.ports.users import ApiToken, ConsoleSession, ConsoleUser


def _user(row: sa.Row[Any]) -> ConsoleUser:
    m = row._mapping
    return ConsoleUser(
        name=m["name"],
        role=m["role"],
        password_hash=m["password_hash"],
        created_at=from_db_time_required(m["created_at"]),
        created_by=m["created_by"],
    )


def _session(row: sa.Row[Any]) -> ConsoleSession:
    m = row._mapping
    return ConsoleSession(
        token_hash=m["token_hash"],
        user_name=m["user_name"],
        csrf_token=m["csrf_token"],
        created_at=from_db_time_required(m["created_at"]),
        expires_at=from_db_time_required(m["expires_at"]),
    )


def _token(row: sa.Row[Any]) -> ApiToken:
    m = row._mapping
    revoked = m["revoked_at"]
    return ApiToken(
        id=m["id"],
        token_hash=m["token_hash"],
        user_name=m["user_name"],
        label=m["label"],
        created_at=from_db_time_required(m["created_at"]),
        created_by=m["created_by"],
        revoked_at=None if revoked is None else from_db_time_required(revoked),
    )


class ConsoleUserTables(Tables):
    """Users and sessions of the web console."""

    clock: Clock

    def _users_now(self) -> datetime:
        now = to_db_time(self.clock.now())
        assert now is not None
        return now

    @translate_errors("adding a console user")
    def add_console_user(
        self, name: str, role: str, password_hash: str, *, by: str, replace: bool = False
    ) -> ConsoleUser:
        c = console_users.c
        with self.write() as conn:
            found = conn.execute(sa.select(console_users).where(c.name == name)).first()
            if found is not None and not replace:
                raise StoreError(
                    f"a console user named {name!r} exists already",
                    hint="Pass --replace to set a new role and password.",
                )
            if found is not None:
                conn.execute(
                    console_users.update()
                    .where(c.name == name)
                    .values(role=role, password_hash=password_hash)
                )
                # A new password ends every session of the old one.
                conn.execute(console_sessions.delete().where(console_sessions.c.user_name == name))
            else:
                conn.execute(
                    console_users.insert().values(
                        name=name,
                        role=role,
                        password_hash=password_hash,
                        created_at=self._users_now(),
                        created_by=by,
                    )
                )
            row = conn.execute(sa.select(console_users).where(c.name == name)).one()
        return _user(row)

    @translate_errors("reading a console user")
    def get_console_user(self, name: str) -> ConsoleUser | None:
        with self.read() as conn:
            row = conn.execute(sa.select(console_users).where(console_users.c.name == name)).first()
        return None if row is None else _user(row)

    @translate_errors("listing console users")
    def list_console_users(self) -> list[ConsoleUser]:
        with self.read() as conn:
            rows = conn.execute(sa.select(console_users).order_by(console_users.c.name)).all()
        return [_user(r) for r in rows]

    @translate_errors("opening a console session")
    def add_console_session(self, session: ConsoleSession) -> None:
        with self.write() as conn:
            # Expired sessions go when a new one comes: the table never grows without bound.
            conn.execute(
                console_sessions.delete().where(console_sessions.c.expires_at < self._users_now())
            )
            conn.execute(
                console_sessions.insert().values(
                    token_hash=session.token_hash,
                    user_name=session.user_name,
                    csrf_token=session.csrf_token,
                    created_at=to_db_time(session.created_at),
                    expires_at=to_db_time(session.expires_at),
                )
            )

    @translate_errors("reading a console session")
    def get_console_session(self, token_hash: str) -> ConsoleSession | None:
        s = console_sessions.c
        with self.read() as conn:
            row = conn.execute(
                sa.select(console_sessions).where(
                    s.token_hash == token_hash, s.expires_at > self._users_now()
                )
            ).first()
        return None if row is None else _session(row)

    @translate_errors("closing a console session")
    def delete_console_session(self, token_hash: str) -> None:
        with self.write() as conn:
            conn.execute(
                console_sessions.delete().where(console_sessions.c.token_hash == token_hash)
            )

    @translate_errors("adding an API token")
    def add_api_token(self, token_hash: str, user_name: str, label: str, *, by: str) -> ApiToken:
        with self.write() as conn:
            found = conn.execute(
                sa.select(console_users.c.name).where(console_users.c.name == user_name)
            ).first()
            if found is None:
                raise StoreError(f"no console user named {user_name!r}")
            conn.execute(
                api_tokens.insert().values(
                    token_hash=token_hash,
                    user_name=user_name,
                    label=label,
                    created_at=self._users_now(),
                    created_by=by,
                )
            )
            row = conn.execute(
                sa.select(api_tokens).where(api_tokens.c.token_hash == token_hash)
            ).one()
        return _token(row)

    @translate_errors("reading an API token")
    def get_api_token(self, token_hash: str) -> ApiToken | None:
        t = api_tokens.c
        with self.read() as conn:
            row = conn.execute(
                sa.select(api_tokens).where(t.token_hash == token_hash, t.revoked_at.is_(None))
            ).first()
        return None if row is None else _token(row)

    @translate_errors("listing API tokens")
    def list_api_tokens(self, user_name: str | None = None) -> list[ApiToken]:
        query = sa.select(api_tokens).order_by(api_tokens.c.id)
        if user_name is not None:
            query = query.where(api_tokens.c.user_name == user_name)
        with self.read() as conn:
            rows = conn.execute(query).all()
        return [_token(r) for r in rows]

    @translate_errors("revoking an API token")
    def revoke_api_token(self, token_id: int) -> ApiToken | None:
        t = api_tokens.c
        with self.write() as conn:
            conn.execute(
                api_tokens.update()
                .where(t.id == token_id, t.revoked_at.is_(None))
                .values(revoked_at=self._users_now())
            )
            row = conn.execute(sa.select(api_tokens).where(t.id == token_id)).first()
        return None if row is None else _token(row)
