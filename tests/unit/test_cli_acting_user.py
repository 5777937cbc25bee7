"""Who an act is recorded for when no ``--by`` is given: the login name, found even in a bare
container that sets no ``$USER`` (the audit trail said ``unknown`` there)."""

from __future__ import annotations

import os
import pwd

import pytest

from consonance_sftp.cli.main import acting_user


def test_by_wins() -> None:
    assert acting_user("eve") == "eve"


def test_the_user_variable_names_the_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "ana")
    assert acting_user() == "ana"


def test_with_no_variable_the_account_names_the_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)

    assert acting_user() == pwd.getpwuid(os.getuid()).pw_name != "unknown"
