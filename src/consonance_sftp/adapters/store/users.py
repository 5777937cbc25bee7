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
from consonance_sftp.adapters.store.schema import console_sessions, console_users
from consonance_sftp.errors import StoreError
from consonance_sftp.ports.clock import Clock
from consonance_sftp.ports.users import ConsoleSession, ConsoleUser


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
