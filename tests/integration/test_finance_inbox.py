"""Statement batches from an SFTP inbox: finance uploads a zip per batch to a partner's folder
on a real OpenSSH server; a run of the finance_out flow fetches each new, finished zip into its
statements folder and takes it in like a dropped one, once."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from consonance_sftp.app import App
from consonance_sftp.app.dispatch import run_flow
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.sandbox.consonance.statements import (
    statement_catalogue,
    statement_payees,
    write_statements,
)
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.fixtures.consonance_sandbox import start_sandbox
from tests.settings import openssh_partner

pytestmark = pytest.mark.sshd


async def test_a_zip_on_the_finance_inbox_is_fetched_and_taken_once(
    openssh: OpenSshServer, tmp_path: Path
) -> None:
    catalogue = statement_catalogue(4, seed=2)
    payees = statement_payees(catalogue, 4)
    sandbox = start_sandbox(catalogue)
    try:
        exported = tmp_path / "export"
        write_statements(catalogue, exported, payees=4, period="2026H1")
        inbox = tmp_path / "finance-inbox"
        inbox.mkdir()
        with zipfile.ZipFile(inbox / "royalties_2026H1.zip", "w") as z:
            for pdf in sorted(exported.iterdir()):
                z.write(pdf, pdf.name)
        (inbox / "notes.txt").write_text("not a batch")
        token = tmp_path / "token"
        token.write_text(sandbox.token)
        agency = tmp_path / "agency"
        agency.mkdir()
        raw: dict[str, Any] = {
            "state_dir": str(tmp_path / "var"),
            "consonance": {"base_url": sandbox.url, "token": {"file": str(token)}},
            "partners": {
                "finance-hub": openssh_partner(
                    openssh, {"receive": str(inbox)}, transfer={"stable_interval": 0.2}
                ),
                "agency": openssh_partner(openssh, {"send": str(agency)}),
            },
            "flows": {
                "royalties": {
                    "kind": "finance_out",
                    "statements_from": {"partner": "finance-hub"},
                    "statement_pattern": "statement_*_{contact}.pdf",
                    "settle_seconds": 0,
                    "agents": {"a": {"partner": "agency", "payees": [p.id for p in payees]}},
                }
            },
        }
        app = App(Settings.model_validate(raw), tmp_path / "consonance-sftp.toml")
        async with DeliveryRunner(app, executor=True, quiet=True) as runner:
            await run_flow(app, "royalties", trigger="test", runner=runner)
            await run_flow(app, "royalties", trigger="test", runner=runner)
        batches = app.store.list_finance_batches(flow="royalties")
        assert [(b.name, b.period) for b in batches] == [("royalties_2026H1", "2026H1")]
        states = {s.file_name: s.state for s in app.store.list_statements(batches[0].id)}
        assert states == {f"statement_2026H1_{p.id}.pdf": "resolved" for p in payees}
        assert (inbox / "royalties_2026H1.zip").exists()  # finance's own copy is left alone
        assert not list(agency.iterdir())  # nothing is sent before approval
        app.store.close()
    finally:
        sandbox.stop()


async def test_a_held_statement_is_resolved_once_the_config_routes_its_payee(
    openssh: OpenSshServer, tmp_path: Path
) -> None:
    catalogue = statement_catalogue(3, seed=4)
    payees = statement_payees(catalogue, 3)
    sandbox = start_sandbox(catalogue)
    try:
        write_statements(catalogue, tmp_path / "statements" / "2026H1", payees=3, period="2026H1")
        token = tmp_path / "token"
        token.write_text(sandbox.token)
        agency = tmp_path / "agency"
        agency.mkdir()
        flow: dict[str, Any] = {
            "kind": "finance_out",
            "statements": str(tmp_path / "statements"),
            "statement_pattern": "statement_*_{contact}.pdf",
            "settle_seconds": 0,
            "agents": {"a": {"partner": "agency", "payees": [payees[0].id]}},
        }
        raw: dict[str, Any] = {
            "state_dir": str(tmp_path / "var"),
            "consonance": {"base_url": sandbox.url, "token": {"file": str(token)}},
            "partners": {"agency": openssh_partner(openssh, {"send": str(agency)})},
            "flows": {"royalties": flow},
        }

        async def run() -> dict[int | None, str]:
            app = App(Settings.model_validate(raw), tmp_path / "consonance-sftp.toml")
            async with DeliveryRunner(app, executor=True, quiet=True) as runner:
                await run_flow(app, "royalties", trigger="test", runner=runner)
            (batch,) = app.store.list_finance_batches()
            states = {s.payee_id: s.state for s in app.store.list_statements(batch.id)}
            app.store.close()
            return states

        first = await run()
        assert first == {payees[0].id: "resolved", payees[1].id: "held", payees[2].id: "held"}
        # The agency now represents a second payee: the next run resolves that one only.
        flow["agents"]["a"]["payees"].append(payees[1].id)
        second = await run()
        assert second == {payees[0].id: "resolved", payees[1].id: "resolved", payees[2].id: "held"}
    finally:
        sandbox.stop()
