"""The finance_out flow's reports end to end: a run renders the rights report and the contract
export from the Consonance sandbox's contracts (read over HTTP) and delivers them, through the
engine, to a rights partner on a real OpenSSH server. What arrives is checked field by field
against the contracts and works read back through the client."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from openpyxl import load_workbook
from pypdf import PdfReader

from consonance_sftp.app import App
from consonance_sftp.app.dispatch import run_flow
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.formats.finance_reports import CONTRACT_COLUMNS, RIGHTS_COLUMNS
from consonance_sftp.models import Contract, Work
from consonance_sftp.sandbox.consonance.statements import statement_catalogue
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.fixtures.consonance_sandbox import SandboxHandle, start_sandbox
from tests.settings import openssh_partner

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.sshd]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def delivered(
    openssh: OpenSshServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Path, SandboxHandle]]:
    root = tmp_path_factory.mktemp("finance-reports")
    sandbox = start_sandbox(statement_catalogue(12, seed=3))
    token = root / "token"
    token.write_text(sandbox.token)
    inbox = root / "rights-partner"
    inbox.mkdir()
    raw: dict[str, Any] = {
        "state_dir": str(root / "var"),
        "consonance": {"base_url": sandbox.url, "token": {"file": str(token)}},
        "partners": {"rights": openssh_partner(openssh, {"send": str(inbox)})},
        "flows": {
            "rights-reports": {
                "kind": "finance_out",
                "partners": ["rights"],
                "reports": ["rights", "contracts"],
                "report_formats": ["csv", "xlsx", "pdf"],
                "publisher": "Meridian Press",
            }
        },
    }
    app = App(Settings.model_validate(raw), root / "consonance-sftp.toml")
    async with DeliveryRunner(app, executor=True, quiet=True) as runner:
        outcome = await run_flow(app, "rights-reports", trigger="test", runner=runner)
    assert not [r for r in outcome.results.values() if "error" in r], outcome.results
    app.store.close()
    try:
        yield inbox, sandbox
    finally:
        sandbox.stop()


async def _read_back(sandbox: SandboxHandle) -> tuple[list[Contract], dict[int, Work]]:
    async with sandbox.client() as api:
        contracts = [c async for c in api.iter_contracts()]
        works = {w.id: w async for w in api.iter_works()}
    return contracts, works


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def _day(value: date | None) -> str:
    return value.isoformat() if value else ""


def _number(text: str) -> float | None:
    return float(text) if text else None


def _one(inbox: Path, pattern: str) -> Path:
    found = sorted(inbox.glob(pattern))
    assert len(found) == 1, (pattern, sorted(p.name for p in inbox.iterdir()))
    return found[0]


async def test_the_contract_export_is_the_contracts_field_by_field(
    delivered: tuple[Path, SandboxHandle],
) -> None:
    inbox, sandbox = delivered
    contracts, works = await _read_back(sandbox)
    assert contracts
    labels = dict(CONTRACT_COLUMNS)
    rows = {int(r[labels["contract_id"]]): r for r in _csv(_one(inbox, "contracts_*.csv"))}
    assert set(rows) == {c.id for c in contracts}
    for c in contracts:
        row = rows[c.id]
        work = works[c.work_id] if c.work_id is not None else None
        assert row[labels["contract_name"]] == c.contract_name
        assert row[labels["work_id"]] == (str(c.work_id) if c.work_id is not None else "")
        assert row[labels["title"]] == (work.title if work else "")
        assert row[labels["publisher"]] == "Meridian Press"
        for contribution in work.contributions if work else ():
            assert f"contact {contribution.contributor.id}" in row[labels["contributors"]]
        for field in (
            "signed_date",
            "ms_delivery_date",
            "revised_ms_delivery_date",
            "actual_ms_delivery_date",
            "ms_proofs_date",
            "pub_before_date",
            "review_date",
            "terminated_date",
        ):
            assert row[labels[field]] == _day(getattr(c, field)), (c.id, field)
        for field in ("term", "copyright_year", "author_discount", "remainder_rate"):
            assert row[labels[field]] == (getattr(c, field) or ""), (c.id, field)
        for field in ("flat_fee_value", "guaranteed_royalty_value", "remainder_rate_over_cost"):
            assert _number(row[labels[field]]) == getattr(c, field), (c.id, field)
        rights = row[labels["licensed_rights"]]
        for right in c.licensed_rights:
            assert (right.right_type or "") in rights
    book = load_workbook(_one(inbox, "contracts_*.xlsx"), read_only=True)
    sheet = book.worksheets[0]
    values = list(sheet.iter_rows(values_only=True))
    book.close()
    header = values[0]
    signed_at = header.index(labels["signed_date"])
    by_id = {int(v[0]): v for v in values[1:] if v[0] is not None}
    for c in contracts:
        cell = by_id[c.id][signed_at]
        assert (cell.date() if cell is not None else None) == c.signed_date  # a real date


async def test_the_rights_report_lists_every_licensed_right(
    delivered: tuple[Path, SandboxHandle],
) -> None:
    inbox, sandbox = delivered
    contracts, _ = await _read_back(sandbox)
    labels = dict(RIGHTS_COLUMNS)
    rows = _csv(_one(inbox, "rights_*.csv"))
    expected = {
        (c.id, r.right_type or "", r.author_cut) for c in contracts for r in c.licensed_rights
    }
    got = {
        (
            int(r[labels["contract_id"]]),
            r[labels["right_type"]],
            _number(r[labels["author_cut"]]),
        )
        for r in rows
    }
    assert got == expected and len(rows) == len(expected)
    by_contract = {c.id: c for c in contracts}
    for r in rows:
        c = by_contract[int(r[labels["contract_id"]])]
        assert r[labels["contract_name"]] == c.contract_name
        assert r[labels["term"]] == (c.term or "")
        assert r[labels["signed_date"]] == _day(c.signed_date)
        assert r[labels["status"]] in ("held", "expired", "terminated", "unknown")
    text = "\n".join(p.extract_text() for p in PdfReader(_one(inbox, "rights_*.pdf")).pages)
    flat = " ".join(text.split())
    for c in contracts:
        for right in c.licensed_rights:
            assert (right.right_type or "") in flat
