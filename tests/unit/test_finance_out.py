"""The finance_out flow's config and its pure parts: routes (one per payee, known partners
and folders), batches' periods, which batches have settled, and taking a batch in (a zip's
member names flattened, never climbing out)."""

from __future__ import annotations

import json
import os
import time
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pypdf import PdfReader

from consonance_sftp.adapters.store import open_store
from consonance_sftp.config import load_settings
from consonance_sftp.config.flows import FinanceOutFlow
from consonance_sftp.errors import ConfigError, ConsonanceSftpError
from consonance_sftp.flows import finance_out
from consonance_sftp.flows.finance_out import PayeeContract
from consonance_sftp.formats.finance.periods import period_dates, period_of
from consonance_sftp.formats.finance.statements import Payee
from consonance_sftp.models import Contract
from consonance_sftp.ports.finance import BatchRecord, Destination, StatementRecord
from tests.unit.test_config import MINIMAL, secrets_env, write  # noqa: F401 (fixture)

AGE_KEY = "age1" + "q" * 58


def _flow(**fields: object) -> FinanceOutFlow:
    return FinanceOutFlow.model_validate({"kind": "finance_out", **fields})


def _problems(tmp_path: Path, flow: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, MINIMAL + flow))
    return {p.path: p.message for p in caught.value.problems}


def test_a_payee_is_routed_once() -> None:
    with pytest.raises(ValueError, match="contact 501 is routed twice"):
        _flow(
            payees={"501": {"partner": "printer"}},
            agents={"curtis": {"partner": "printer", "payees": [501, 502]}},
        )


def test_the_currency_is_an_iso_code() -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        _flow(currency="pounds")


def test_payees_are_keyed_by_contact_id_and_the_pattern_names_one_contact() -> None:
    with pytest.raises(ValueError, match="contact ID"):
        _flow(payees={"Jane Doe": {"partner": "printer"}})
    with pytest.raises(ValueError, match="exactly one"):
        _flow(statement_pattern="statement_*.pdf")
    with pytest.raises(ValueError, match="exactly one"):
        _flow(statement_pattern="{contact}/{contact}.pdf")


def test_encryption_needs_its_key_and_refuses_a_malformed_one() -> None:
    with pytest.raises(ValueError, match="needs age_recipients"):
        _flow(payees={"501": {"partner": "printer", "encrypt": "age"}})
    with pytest.raises(ValueError, match="not an age public key"):
        _flow(payees={"501": {"partner": "printer", "age_recipients": ["age1short"]}})
    with pytest.raises(ValueError, match="needs pdf_password"):
        _flow(payees={"501": {"partner": "printer", "encrypt": "pdf_password"}})
    route = {"partner": "printer", "encrypt": "age", "age_recipients": [AGE_KEY]}
    ok = _flow(payees={"501": route})
    assert ok.route_of(501) is not None and ok.route_of(502) is None


def test_routes_name_known_partners_and_folders(tmp_path: Path, secrets_env: None) -> None:  # noqa: F811
    flow = """
[flows.royalties]
kind = "finance_out"
[flows.royalties.payees]
"501" = { partner = "printr" }
"502" = { partner = "printer", folder = "statements" }
[flows.royalties.agents.curtis]
partner = "agency"
payees = [503]
[flows.royalties.finance_copy]
partner = "printer"
folder = "nope"
"""
    found = _problems(tmp_path, flow)
    assert "unknown partner 'printr'" in found["flows.royalties.payees.501.partner"]
    assert "no folder 'statements'" in found["flows.royalties.payees.502.folder"]
    assert "unknown partner 'agency'" in found["flows.royalties.agents.curtis.partner"]
    assert "no folder 'nope'" in found["flows.royalties.finance_copy.folder"]


def test_a_finance_flow_with_routes_loads(tmp_path: Path, secrets_env: None) -> None:  # noqa: F811
    flow = """
[flows.royalties]
kind = "finance_out"
[flows.royalties.payees]
"501" = { partner = "printer" }
"""
    settings = load_settings(write(tmp_path, MINIMAL + flow))
    royalties = settings.flows["royalties"]
    assert isinstance(royalties, FinanceOutFlow) and royalties.partners == []
    assert royalties.exchanges_with() == ["printer"]  # what `config check` lists


@pytest.mark.parametrize(
    ("name", "period", "first", "last"),
    [
        ("2026H1", "2026H1", date(2026, 1, 1), date(2026, 6, 30)),
        ("royalties_2025_h2", "2025H2", date(2025, 7, 1), date(2025, 12, 31)),
        ("statements-2026-02", "2026-02", date(2026, 2, 1), date(2026, 2, 28)),
        ("Q3 2024", "2024", date(2024, 1, 1), date(2024, 12, 31)),
        ("2024Q3", "2024Q3", date(2024, 7, 1), date(2024, 9, 30)),
        ("2025q4", "2025Q4", date(2025, 10, 1), date(2025, 12, 31)),
        ("2024-02 statements", "2024-02", date(2024, 2, 1), date(2024, 2, 29)),
        ("batch 12345", None, None, None),
    ],
)
def test_a_batch_name_gives_its_period(
    name: str, period: str | None, first: date | None, last: date | None
) -> None:
    assert period_of(name) == period
    if period is not None:
        assert period_dates(period) == (first, last)


@pytest.mark.parametrize("period", ["2026H3", "2026Q5", "2026-13", "26H1"])
def test_a_malformed_period_is_refused(period: str) -> None:
    with pytest.raises(ValueError, match="period"):
        period_dates(period)


def test_only_settled_batches_and_whole_zips_are_taken(tmp_path: Path) -> None:
    now = time.time()
    old, fresh = tmp_path / "2026H1", tmp_path / "2026H2"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "statement_1.pdf").write_bytes(b"%PDF")
    os.utime(old / "statement_1.pdf", (now - 600, now - 600))
    os.utime(old, (now - 600, now - 600))
    with zipfile.ZipFile(tmp_path / "2025H2.zip", "w") as z:
        z.writestr("statement_2.pdf", b"%PDF")
    (tmp_path / "2025H1.zip").write_bytes(b"PK\x03\x04 cut short")
    (tmp_path / ".hidden").mkdir()
    for zipped in ("2025H2.zip", "2025H1.zip"):
        os.utime(tmp_path / zipped, (now - 600, now - 600))
    ready = finance_out.settled_batches(tmp_path, 60, now)
    assert [p.name for p in ready] == ["2025H2.zip", "2026H1"]


def test_a_zip_batch_is_flattened_and_taken_once(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    source = tmp_path / "2026H1.zip"
    with zipfile.ZipFile(source, "w") as z:
        z.writestr("statements/statement_2026H1_501.pdf", b"%PDF-1 one")
        z.writestr("statements/statement_2026H1_502.pdf", b"%PDF-1 two")
        z.writestr("__MACOSX/statements/._statement_2026H1_501.pdf", b"x")  # a Mac's zip
    batch = finance_out.take_batch(store, "royalties", source, tmp_path / "var")
    kept = sorted(p.name for p in Path(batch.source).iterdir())
    assert kept == ["statement_2026H1_501.pdf", "statement_2026H1_502.pdf"]
    assert Path(batch.source).is_relative_to(tmp_path / "var")
    assert batch.period == "2026H1"
    again = finance_out.take_batch(store, "royalties", source, tmp_path / "var")
    assert again.id == batch.id  # taken once
    store.close()


@pytest.mark.parametrize(
    ("member", "says"),
    [("../../evil_502.pdf", "outside"), ("/etc/statement_502.pdf", "absolute")],
)
def test_a_zip_that_climbs_out_is_refused_and_nothing_recorded(
    tmp_path: Path, member: str, says: str
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    source = tmp_path / "2026H1.zip"
    with zipfile.ZipFile(source, "w") as z:
        z.writestr("statement_2026H1_501.pdf", b"%PDF-1 one")
        z.writestr(member, b"%PDF-1 two")
    with pytest.raises(ConsonanceSftpError, match=r"2026H1\.zip is refused") as refused:
        finance_out.take_batch(store, "royalties", source, tmp_path / "var")
    assert says in str(refused.value)
    assert store.list_finance_batches() == []
    store.close()


def test_an_agent_gets_each_payee_in_its_own_folder_and_finance_a_copy() -> None:
    cfg = _flow(
        payees={"501": {"partner": "jane"}},
        agents={"curtis": {"partner": "agency", "payees": [503]}},
        finance_copy={"partner": "finance"},
    )

    def folder_of(partner: str, key: str) -> str:
        return f"/{partner}/{key}"

    ann = finance_out.destinations(cfg, Payee(503, "Ann Lée"), "2026H1", folder_of)
    assert ann is not None
    assert [(d.partner, d.folder, d.role) for d in ann] == [
        ("agency", "/agency/send/503-Ann-Lee", "agent:curtis"),
        ("finance", "/finance/send/2026H1", "finance"),
    ]
    jane = finance_out.destinations(cfg, Payee(501, "Jane Doe"), "2026H1", folder_of)
    assert jane is not None and jane[0] == Destination(
        partner="jane", folder="/jane/send", role="payee"
    )
    assert finance_out.destinations(cfg, Payee(502, "Rob Roe"), "2026H1", folder_of) is None


def _statement_pdf(path: Path, text: str) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for line in text.splitlines():
        pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))


def _records(tmp_path: Path) -> tuple[BatchRecord, StatementRecord, Destination]:
    original = tmp_path / "statement_2026H1_501.pdf"
    _statement_pdf(original, "Payee: Jane Doe\nContact ID: 501\nISBN 9781900200011 Home 12 units")
    batch = BatchRecord(
        id=1,
        flow="royalties",
        name="2026H1",
        source=str(tmp_path),
        period="2026H1",
        received_at=datetime(2026, 7, 3, tzinfo=UTC),
    )
    statement = StatementRecord(
        id=7,
        batch_id=1,
        file_name=original.name,
        original_path=str(original),
        sha256="0" * 64,
        size=original.stat().st_size,
        state="approved",
        reason=None,
        payee_id=501,
        payee_name="Jane Doe",
        destinations=(),
    )
    return batch, statement, Destination(partner="jane", folder="/in", role="payee")


def test_a_destination_gets_the_pdf_and_its_companions_made_once(tmp_path: Path) -> None:
    batch, statement, where = _records(tmp_path)
    cfg = _flow(payees={"501": {"partner": "jane"}}, publisher="Meridian Press", currency="GBP")
    contract = PayeeContract(
        Contract(id=3001, contract_name="Doe: Ash", work_id=9, guaranteed_royalty_value=5000.0),
        "Ash",
    )
    now = datetime(2026, 7, 31, tzinfo=UTC)

    def made() -> list[finance_out.Prepared]:
        return finance_out.prepare(
            cfg,
            batch,
            statement,
            where,
            state_dir=tmp_path / "var",
            contracts=[contract],
            publisher="Meridian Press",
            now=now,
        )

    files = made()
    assert [f.name for f in files] == [
        "statement_2026H1_501.csv",
        "statement_2026H1_501.json",
        "statement_2026H1_501.pdf",
    ]
    facts = json.loads(files[1].local.read_bytes())
    flat = json.dumps(facts)
    assert "9781900200011" in flat and "Doe: Ash" in flat and "Meridian Press" in flat
    assert "2026-01-01" in flat and "2026-06-30" in flat
    assert "GBP" in flat and "5000" in flat  # the advance, in the account's currency
    assert files[2].local.read_bytes() == Path(statement.original_path).read_bytes()
    assert made() == files  # the same bytes at every attempt


def test_a_password_destination_gets_a_protected_pdf_and_no_companion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JANE_PDF_PASSWORD", "correct horse")
    batch, statement, where = _records(tmp_path)
    route = {
        "partner": "jane",
        "encrypt": "pdf_password",
        "pdf_password": {"env": "JANE_PDF_PASSWORD"},
    }
    cfg = _flow(payees={"501": route})
    files = finance_out.prepare(
        cfg,
        batch,
        statement,
        where,
        state_dir=tmp_path / "var",
        contracts=[],
        publisher="Meridian Press",
        now=datetime(2026, 7, 31, tzinfo=UTC),
    )
    assert [f.name for f in files] == ["statement_2026H1_501.pdf"]
    reader = PdfReader(files[0].local)
    assert reader.is_encrypted
    assert reader.decrypt("wrong") == 0
    assert reader.decrypt("correct horse") != 0
    assert "Contact ID: 501" in reader.pages[0].extract_text()
