"""The web console's users and sessions in ``SqlStore`` (``ports.users.ConsoleUsers``).

Mixed into ``SqlStore`` (adapters/store/sql_store.py). Passwords never reach the store: the app
hashes them (bcrypt) and a session is kept by the SHA-256 of its cookie's token.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from consonance_sftp.adapters.store.base import (
    Tables,
    from_db_time,
    from_db_time_required,
    to_db_time,
    translate_errors,
)
from consonance_sftp.adapters.store.schema import (
    api_tokens,
    console_sessions,
    console_users,
    login_failures,
    login_refusals_noted,
)
from consonance_sftp.errors import StoreError
from consonance_sftp.ports.clock import Clock
from consonance_sftp.ports.users import AccessEnded, ApiToken, ConsoleSession, ConsoleUser


def _user(row: sa.Row[Any]) -> ConsoleUser:
    m = row._mapping
    return ConsoleUser(
        name=m["name"],
        role=m["role"],
        password_hash=m["password_hash"],
        created_at=from_db_time_required(m["created_at"]),
        created_by=m["created_by"],
        disabled_at=from_db_time(m["disabled_at"]),
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
        expires_at=from_db_time(m["expires_at"]),
        revoked_why=m["revoked_why"],
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
                # A new password ends every session and every API token of the old one.
                self._end_access(conn, name, "password changed")
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

    def _end_access(self, conn: sa.Connection, name: str, why: str) -> AccessEnded:
        """Revoke the user's live API tokens and close its sessions (inside ``conn``'s
        transaction)."""
        t = api_tokens.c
        live = t.user_name == name, t.revoked_at.is_(None)
        ids = [r[0] for r in conn.execute(sa.select(t.id).where(*live).order_by(t.id)).all()]
        if ids:
            conn.execute(
                api_tokens.update()
                .where(t.id.in_(ids))
                .values(revoked_at=self._users_now(), revoked_why=why[:100])
            )
        closed = conn.execute(
            console_sessions.delete().where(console_sessions.c.user_name == name)
        ).rowcount
        return AccessEnded(token_ids=ids, sessions=max(closed or 0, 0))

    @translate_errors("changing a console user")
    def update_console_user(
        self,
        name: str,
        *,
        role: str | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
        why: str,
    ) -> tuple[ConsoleUser, AccessEnded] | None:
        c = console_users.c
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = role
        if password_hash is not None:
            values["password_hash"] = password_hash
        if disabled is not None:
            values["disabled_at"] = self._users_now() if disabled else None
        with self.write() as conn:
            found = conn.execute(sa.select(console_users).where(c.name == name)).first()
            if found is None:
                return None
            if disabled and found._mapping["disabled_at"] is not None:
                values.pop("disabled_at")  # disabled already: keep since when
            if values:
                conn.execute(console_users.update().where(c.name == name).values(**values))
            ended = (
                self._end_access(conn, name, why)
                if password_hash is not None or disabled
                else AccessEnded(token_ids=[], sessions=0)
            )
            row = conn.execute(sa.select(console_users).where(c.name == name)).one()
        return _user(row), ended

    @translate_errors("removing a console user")
    def remove_console_user(self, name: str) -> AccessEnded | None:
        with self.write() as conn:
            found = conn.execute(
                sa.select(console_users.c.name).where(console_users.c.name == name)
            ).first()
            if found is None:
                return None
            ended = self._end_access(conn, name, "user removed")
            conn.execute(api_tokens.delete().where(api_tokens.c.user_name == name))
            conn.execute(console_users.delete().where(console_users.c.name == name))
        return ended

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
    def add_api_token(
        self,
        token_hash: str,
        user_name: str,
        label: str,
        *,
        by: str,
        expires_at: datetime | None = None,
    ) -> ApiToken:
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
                    expires_at=to_db_time(expires_at),
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
                .values(revoked_at=self._users_now(), revoked_why="revoked")
            )
            row = conn.execute(sa.select(api_tokens).where(t.id == token_id)).first()
        return None if row is None else _token(row)

    # --- failed logins (web.auth.LoginThrottle) ---------------------------------------------

    @translate_errors("counting a failed login")
    def add_login_failure(self, user_name: str, client: str, *, window: timedelta) -> None:
        now = self._users_now()
        with self.write() as conn:
            conn.execute(login_failures.delete().where(login_failures.c.failed_at <= now - window))
            conn.execute(
                login_failures.insert(),
                [
                    {"scope": "user", "name": user_name[:300], "failed_at": now},
                    {"scope": "client", "name": client[:300], "failed_at": now},
                ],
            )

    @translate_errors("counting failed logins")
    def count_login_failures(
        self, user_name: str, client: str, *, window: timedelta
    ) -> tuple[int, int]:
        f = login_failures.c
        after = self._users_now() - window

        def count(scope: str, name: str) -> sa.ScalarSelect[Any]:
            return (
                sa.select(sa.func.count())
                .select_from(login_failures)
                .where(f.scope == scope, f.name == name[:300], f.failed_at > after)
                .scalar_subquery()
            )

        with self.read() as conn:
            row = conn.execute(sa.select(count("user", user_name), count("client", client))).one()
        return int(row[0]), int(row[1])

    @translate_errors("clearing failed logins")
    def clear_login_failures(self, user_name: str) -> None:
        f = login_failures.c
        with self.write() as conn:
            conn.execute(
                login_failures.delete().where(f.scope == "user", f.name == user_name[:300])
            )

    @translate_errors("noting a throttled login")
    def note_login_refusal(self, user_name: str, client: str, *, window: timedelta) -> bool:
        n = login_refusals_noted.c
        now = self._users_now()
        with self.write() as conn:
            # Notes whose window is over go (for every pair: the table stays small).
            conn.execute(login_refusals_noted.delete().where(n.noted_at <= now - window))
        try:
            with self.write() as conn:
                conn.execute(
                    login_refusals_noted.insert().values(
                        user_name=user_name[:100], client=client[:200], noted_at=now
                    )
                )
        except sa.exc.IntegrityError:
            return False  # noted already in this window, by this process or another
        return True
