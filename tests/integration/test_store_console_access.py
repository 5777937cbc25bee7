"""The console's access records in the store, on SQLite and on the real PostgreSQL: migration
0014 on a database with a token made before it (the token gets the default lifetime), failed
logins counted in a sliding window that two stores on one database share, a throttled login
noted once per window however many processes refuse it, and a new password or a disabled user
ending every token and session in one transaction."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from consonance_sftp.adapters.store import SqlStore, open_store
from consonance_sftp.adapters.store.database import create_engine
from consonance_sftp.ports.users import ConsoleSession
from tests.fixtures.store import migrate_to, table_columns
from tests.threads import all_at_once

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)


class SetClock:
    """A clock that stands still until moved."""

    def __init__(self) -> None:
        self.t = T0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self.t

    def move(self, delta: timedelta) -> None:
        with self._lock:
            self.t += delta


@pytest.fixture
def clock() -> SetClock:
    return SetClock()


@pytest.fixture
def store(store_url: str, clock: SetClock) -> Iterator[SqlStore]:
    with open_store(store_url, clock=clock) as s:
        yield s


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_gives_an_older_token_the_default_lifetime(empty_url: str) -> None:
    migrate_to(empty_url, "0013")
    engine = create_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO console_users (name, role, password_hash, created_at, "
                    "created_by) VALUES ('otto', 'operator', '$2b$x', :t, 'ann')"
                ),
                {"t": T0},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO api_tokens (token_hash, user_name, label, created_at, "
                    "created_by) VALUES (:h, 'otto', 'old', :t, 'ann')"
                ),
                {"h": "a" * 64, "t": T0},
            )
    finally:
        engine.dispose()
    assert "expires_at" not in table_columns(empty_url, "api_tokens")

    with open_store(empty_url) as store:  # migrates 0013 -> head
        [token] = store.list_api_tokens("otto")
        assert token.expires_at == T0 + timedelta(days=90)
        assert (token.revoked_at, token.revoked_why) == (None, None)
        user = store.get_console_user("otto")
        assert user is not None and not user.disabled
        assert store.count_login_failures("otto", "10.0.0.1", window=WINDOW) == (0, 0)

    migrate_to(empty_url, "0013", down=True)
    assert "expires_at" not in table_columns(empty_url, "api_tokens")
    assert "disabled_at" not in table_columns(empty_url, "console_users")
    assert not {"login_failures", "login_refusals_noted"} & _tables(empty_url)
    migrate_to(empty_url, "head")
    assert {"expires_at", "revoked_why"} <= table_columns(empty_url, "api_tokens")


def test_failed_logins_slide_out_of_the_window(store: SqlStore, clock: SetClock) -> None:
    for _ in range(3):
        store.add_login_failure("otto", "10.0.0.1", window=WINDOW)
        clock.move(timedelta(minutes=5))
    # failures at 0, 5 and 10 minutes; now 15: the first has left the window
    assert store.count_login_failures("otto", "10.0.0.1", window=WINDOW) == (2, 2)
    assert store.count_login_failures("vera", "10.0.0.1", window=WINDOW) == (0, 2)
    assert store.count_login_failures("otto", "10.0.0.2", window=WINDOW) == (2, 0)
    store.clear_login_failures("otto")  # a success: the name starts again, the address not
    assert store.count_login_failures("otto", "10.0.0.1", window=WINDOW) == (0, 2)
    clock.move(WINDOW)
    assert store.count_login_failures("otto", "10.0.0.1", window=WINDOW) == (0, 0)
    store.add_login_failure("vera", "10.0.0.3", window=WINDOW)  # and the old rows are gone
    with store.engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM login_failures")).scalar()
    assert left == 2


def test_two_stores_on_one_database_share_the_counts(store_url: str, clock: SetClock) -> None:
    with open_store(store_url, clock=clock) as a, open_store(store_url, clock=clock) as b:
        a.add_login_failure("otto", "10.0.0.1", window=WINDOW)
        b.add_login_failure("otto", "10.0.0.1", window=WINDOW)
        assert a.count_login_failures("otto", "10.0.0.1", window=WINDOW) == (2, 2)
        assert b.count_login_failures("otto", "10.0.0.1", window=WINDOW) == (2, 2)
        # a throttled login is noted once per window, whichever store is first
        answers: list[bool] = []
        lock = threading.Lock()

        def note(s: SqlStore) -> None:
            said = s.note_login_refusal("otto", "10.0.0.1", window=WINDOW)
            with lock:
                answers.append(said)

        assert all_at_once(note, [(a,), (b,), (a,), (b,)]) == []
        assert sorted(answers) == [False, False, False, True]
        assert b.note_login_refusal("otto", "10.0.0.2", window=WINDOW) is True
        clock.move(WINDOW)
        assert a.note_login_refusal("otto", "10.0.0.1", window=WINDOW) is True


def _session(store: SqlStore, name: str, n: int) -> None:
    store.add_console_session(
        ConsoleSession(
            token_hash=f"{n:064x}",
            user_name=name,
            csrf_token="c",
            created_at=T0,
            expires_at=T0 + timedelta(hours=12),
        )
    )


def test_a_new_password_or_disabling_ends_every_token_and_session(store: SqlStore) -> None:
    for name in ("otto", "vera"):
        store.add_console_user(name, "operator", "$2b$old", by="ann")
    one = store.add_api_token("1" * 64, "otto", "a", by="ann", expires_at=T0 + WINDOW)
    two = store.add_api_token("2" * 64, "otto", "b", by="ann")
    store.revoke_api_token(one.id)
    three = store.add_api_token("3" * 64, "otto", "c", by="ann")
    other = store.add_api_token("4" * 64, "vera", "d", by="ann")
    _session(store, "otto", 1)
    _session(store, "otto", 2)
    _session(store, "vera", 3)

    changed = store.update_console_user("otto", role="admin", why="role only")
    assert changed is not None and changed[1].token_ids == [] and changed[1].sessions == 0
    assert store.get_console_session(f"{1:064x}") is not None

    changed = store.update_console_user("otto", password_hash="$2b$new", why="password changed")
    assert changed is not None
    user, ended = changed
    assert (user.role, user.password_hash) == ("admin", "$2b$new")
    assert (ended.token_ids, ended.sessions) == ([two.id, three.id], 2)
    tokens = {t.id: t for t in store.list_api_tokens("otto")}
    assert tokens[one.id].revoked_why == "revoked"  # revoked before, left as it was
    assert {tokens[i].revoked_why for i in (two.id, three.id)} == {"password changed"}
    assert store.get_api_token("2" * 64) is None
    assert store.get_console_session(f"{1:064x}") is None
    # another user's access is untouched
    assert store.get_api_token("4" * 64) == other
    assert store.get_console_session(f"{3:064x}") is not None

    disabled = store.update_console_user("vera", disabled=True, why="user disabled")
    assert disabled is not None
    assert disabled[0].disabled and disabled[1] == type(ended)(token_ids=[other.id], sessions=1)
    enabled = store.update_console_user("vera", disabled=False, why="")
    assert enabled is not None and not enabled[0].disabled
    assert store.get_api_token("4" * 64) is None  # enabling gives no token back

    assert store.remove_console_user("vera") is not None
    assert store.get_console_user("vera") is None and store.list_api_tokens("vera") == []
    assert store.remove_console_user("vera") is None
    assert store.update_console_user("nobody", disabled=True, why="x") is None
