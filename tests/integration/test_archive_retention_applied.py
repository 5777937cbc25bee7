"""Retention applied (issue 17): a simulated year of nightly archives of an archive flow, each a
file in the flow's folder with its sidecar and a copy on a partner served by a real OpenSSH
server, each on the audit trail (``archive.written`` with its creation time; a full archive on
the 1st of each month, incrementals referring to it on the other days). The real removal
(``app.archive_retention.apply_retention``) then keeps exactly the expected set, here and on the
partner, writes one ``archive.deleted`` per archive removed, never removes the last verified one
nor the base of a kept incremental, and removes nothing while nothing is verified. Finally a real
run of the flow (``run_flow``, through its hook in ``app.dispatch``) applies it again."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from consonance_sftp.app import App
from consonance_sftp.app.archive_handler import list_archives
from consonance_sftp.app.archive_retention import apply_retention
from consonance_sftp.app.dispatch import folder_of, run_flow
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import ArchiveFlow
from consonance_sftp.formats.archive import sidecar_line
from consonance_sftp.models import AuditAction, DeliveryOutcome
from consonance_sftp.ports.delivery import DeliveryRecord
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.fixtures.consonance_sandbox import SandboxHandle, start_sandbox
from tests.settings import openssh_partner

pytestmark = [pytest.mark.asyncio, pytest.mark.sshd, pytest.mark.slow]

DAYS = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
NEW_YEAR = datetime(2027, 1, 1, 2, 30, tzinfo=UTC)


def bag(day: date) -> str:
    return f"nightly-{day:%Y%m%d}T023000Z"


@dataclass
class Year:
    app: App
    config: ArchiveFlow
    local: Path
    partner: Path
    sandbox: SandboxHandle


@pytest.fixture
def year(openssh: OpenSshServer, tmp_path: Path) -> Iterator[Year]:
    sandbox = start_sandbox(generate_catalogue(4, seed=5))
    token = tmp_path / "token"
    token.write_text(sandbox.token)
    local = tmp_path / "archives"
    partner = tmp_path / "vault"
    local.mkdir()
    partner.mkdir()
    raw: dict[str, Any] = {
        "state_dir": str(tmp_path / "var"),
        "consonance": {"base_url": sandbox.url, "token": {"file": str(token)}},
        "partners": {"vault": openssh_partner(openssh, {"send": str(partner)})},
        "flows": {
            "nightly": {
                "kind": "archive",
                "partners": ["vault"],
                "local_dir": str(local),
                "mode": "incremental",
                "full_every": 31,
                "keep_daily": 7,
                "keep_weekly": 4,
                "keep_monthly": 12,
                "keep_yearly": 3,
            }
        },
    }
    config_file = tmp_path / "consonance-sftp.toml"
    config_file.write_text(tomlkit.dumps(raw))
    app = App(Settings.model_validate(raw), config_file)
    config = app.settings.flows["nightly"]
    assert isinstance(config, ArchiveFlow)
    for day in DAYS:  # one archive a night, as the flow records them
        name = f"{bag(day)}.tar.zst"
        data = f"archive of {day}\n".encode()
        sha = hashlib.sha256(data).hexdigest()
        for folder in (local, partner):
            (folder / name).write_bytes(data)
            (folder / f"{name}.sha256").write_text(sidecar_line(sha, name))
        full = day.day == 1
        app.store.append_audit(
            "flow:archive",
            AuditAction.ARCHIVE_WRITTEN,
            f"archive:{name}",
            {
                "flow": "nightly",
                "path": str(local / name),
                "sha256": sha,
                "size": len(data),
                "files": 9,
                "payload_bytes": 100,
                "bag": bag(day),
                "created": datetime(day.year, day.month, day.day, 2, 30, tzinfo=UTC).isoformat(),
                "mode": "full" if full else "incremental",
                "assets": {},
                "referenced": 0 if full else 3,
                "referenced_bytes": 0 if full else 300,
                "bases": [] if full else [bag(day.replace(day=1))],
            },
        )
        app.store.record_delivery(  # and delivered that night, as the ledger says
            DeliveryRecord(
                flow="nightly",
                partner="vault",
                remote_path=name,
                sha256=sha,
                size=len(data),
                package=f"archive {name}",
                outcome=DeliveryOutcome.SENT,
            )
        )
    try:
        yield Year(app, config, local, partner, sandbox)
    finally:
        app.store.close()
        sandbox.stop()


def verified(app: App, day: date, *, ok: bool) -> None:
    app.store.append_audit(
        "user:drill",
        AuditAction.ARCHIVE_VERIFIED,
        f"archive:{bag(day)}.tar.zst",
        {"ok": ok, "files_verified": 9, "bytes_verified": 100, "sample": 1.0, "problems": []},
    )


def archives_in(folder: Path) -> set[date]:
    return {
        datetime.strptime(p.name.split("T", 1)[0], "nightly-%Y%m%d").date()
        for p in folder.glob("nightly-*.tar.zst")
    }


def sidecars_in(folder: Path) -> set[date]:
    return {
        datetime.strptime(p.name.split("T", 1)[0], "nightly-%Y%m%d").date()
        for p in folder.glob("nightly-*.sha256")
    }


# The calendar, worked out by hand (2026-12-31 is a Thursday): daily, the last 7 days; weekly
# (ISO weeks), the newest of the week of 28 December, then the Sundays 27, 20 and 13 December;
# monthly, the last day of each month; yearly, 2026, and with two slots left the oldest one
# (1 January). The last verified: 17 November. And the base of every kept incremental: the 1st
# of its month.
DAILY = {date(2026, 12, d) for d in (31, 30, 29, 28, 27, 26, 25)}
WEEKLY = {date(2026, 12, 20), date(2026, 12, 13)}
MONTH_ENDS = {
    (date(2026, m + 1, 1) if m < 12 else date(2027, 1, 1)) - timedelta(days=1) for m in range(1, 13)
}
FIRSTS = {date(2026, m, 1) for m in range(1, 13)}
LAST_VERIFIED = date(2026, 11, 17)
EXPECTED = DAILY | WEEKLY | MONTH_ENDS | FIRSTS | {LAST_VERIFIED}


async def test_a_year_of_nightly_archives_keeps_exactly_the_expected_set(year: Year) -> None:
    app, config = year.app, year.config
    assert len(EXPECTED) == 33

    def folder(partner: str) -> str:
        return folder_of(app, config, partner)

    # Nothing verified yet: nothing removed, anywhere.
    held = await apply_retention(app, "nightly", config, folder=folder, now=NEW_YEAR)
    assert held is not None and held.removed == [] and held.decision.note
    assert archives_in(year.local) == archives_in(year.partner) == set(DAYS)
    assert app.store.list_audit(action=AuditAction.ARCHIVE_DELETED, limit=None) == []

    # Drills: 10 June and 17 November pass; a later one of 20 December fails.
    verified(app, date(2026, 6, 10), ok=True)
    verified(app, LAST_VERIFIED, ok=True)
    verified(app, date(2026, 12, 20), ok=False)
    # One partner copy is already gone: its removal is "absent", not an error.
    (year.partner / f"{bag(date(2026, 3, 10))}.tar.zst").unlink()

    done = await apply_retention(app, "nightly", config, folder=folder, now=NEW_YEAR)

    assert done is not None and done.incomplete == []
    assert len(done.removed) == 365 - 33
    assert archives_in(year.local) == EXPECTED
    assert sidecars_in(year.local) == EXPECTED
    assert archives_in(year.partner) == EXPECTED
    assert sidecars_in(year.partner) == EXPECTED
    reasons = {ref.id: why for ref, why in done.decision.keep}
    assert reasons[bag(LAST_VERIFIED)] == ["last verified"]
    assert reasons[bag(date(2026, 8, 1))] == [f"base of {bag(date(2026, 8, 31))}"]
    assert "base of" in " ".join(reasons[bag(date(2026, 11, 1))])
    assert date(2026, 6, 10) not in archives_in(year.local)  # an older verified one goes

    deleted = app.store.list_audit(action=AuditAction.ARCHIVE_DELETED, limit=None)
    assert len(deleted) == 365 - 33
    by_subject = {e.subject: e.details for e in deleted}
    march = by_subject[f"archive:{bag(date(2026, 3, 10))}.tar.zst"]
    assert march["reason"] == "retention: matched no rule" and march["complete"] is True
    assert march["partners"] == {
        "vault": {
            f"{bag(date(2026, 3, 10))}.tar.zst": "absent",
            f"{bag(date(2026, 3, 10))}.tar.zst.sha256": "removed",
        }
    }
    assert all(e.actor == "flow:archive" for e in deleted)
    assert app.store.verify_audit().ok
    listed = {e.name for e in list_archives(app.store, flow="nightly")}
    assert listed == {f"{bag(d)}.tar.zst" for d in EXPECTED}

    # Applied again: nothing more to remove.
    again = await apply_retention(app, "nightly", config, folder=folder, now=NEW_YEAR)
    assert again is not None and again.removed == [] and len(again.decision.keep) == 33

    # A real run on New Year's night writes and delivers its archive, then its retention
    # (the hook in app.dispatch.run_flow) drops 25 December out of the daily slots and
    # 31 January 2026 out of the monthly ones (its base, 1 January, stays: the oldest).
    async with DeliveryRunner(app, executor=True, quiet=True) as runner:
        outcome = await run_flow(app, "nightly", trigger="test", runner=runner, now=NEW_YEAR)
    assert outcome.results and not [r for r in outcome.results.values() if "error" in r]
    after = EXPECTED - {date(2026, 12, 25), date(2026, 1, 31)} | {date(2027, 1, 1)}
    assert archives_in(year.local) == after
    assert archives_in(year.partner) == after
    assert len(app.store.list_audit(action=AuditAction.ARCHIVE_DELETED, limit=None)) == 365 - 31


async def test_no_retention_configured_keeps_everything(year: Year) -> None:
    config = year.config.model_copy(
        update={"keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, "keep_yearly": 0}
    )
    verified(year.app, LAST_VERIFIED, ok=True)

    done = await apply_retention(
        year.app, "nightly", config, folder=lambda p: folder_of(year.app, config, p), now=NEW_YEAR
    )

    assert done is None
    assert archives_in(year.local) == archives_in(year.partner) == set(DAYS)
