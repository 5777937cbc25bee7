"""formats.finance.companion: the statement's CSV/JSON companion, BISG field names, only known
data, the same bytes every time."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import date

from consonance_sftp.formats.finance.companion import (
    CONTRACT_FIELDS,
    CSV_COLUMNS,
    FIELDS,
    STATEMENT_FIELDS,
    StatementFacts,
    companion_csv,
    companion_json,
    isbns_in_text,
)
from consonance_sftp.models import Contract

SHA = "AB" * 32

GARDEN = Contract(
    id=1207, contract_name="Doe & Roe: The Shared Garden", guaranteed_royalty_value=5000.0
)
SOLO = Contract(id=880, contract_name="Doe: Night Trains", guaranteed_royalty_value=None)

FACTS = StatementFacts(
    file_name="statement_2024H1_501.pdf",
    sha256=SHA,
    payee_contact_id=501,
    payee_name="Zoë Doe",
    licensor="Snowbooks Ltd",
    statement_date=date(2024, 8, 15),
    period_start=date(2024, 1, 1),
    period_end=date(2024, 6, 30),
    contracts=(GARDEN, SOLO),
    titles={1207: "The Shared Garden, a tale", 880: "Night Trains"},
    currency="GBP",
    isbns=("9783161484100", "9780306406157"),
)


def rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_fields_constant_is_consistent() -> None:
    names = [f.name for f in FIELDS]
    assert len(set(names)) == len(names)
    assert CSV_COLUMNS == STATEMENT_FIELDS + CONTRACT_FIELDS
    assert set(CSV_COLUMNS) == set(names)
    assert all(f.description.endswith(".") and f.name[0].isupper() for f in FIELDS)
    # The draft's fields carry its row; our own additions say they are extensions.
    rows_by_name = {f.name: f.draft_row for f in FIELDS}
    assert rows_by_name["RoyaltyStatementDate"] == 26
    assert rows_by_name["StatementFileSHA256"] is None


def test_json_holds_the_known_fields() -> None:
    record = json.loads(companion_json(FACTS))
    assert record == {
        "RoyaltyStatementDate": "2024-08-15",
        "RoyaltyPeriodStartDate": "2024-01-01",
        "RoyaltyPeriodEndDate": "2024-06-30",
        "LicensorName": "Snowbooks Ltd",
        "BeneficiaryName": "Zoë Doe",
        "BeneficiaryContactID": "501",
        "ISBN": ["9780306406157", "9783161484100"],
        "StatementFileName": "statement_2024H1_501.pdf",
        "StatementFileSHA256": "ab" * 32,
        "Contracts": [
            {
                "LicensorContractID": "880",
                "LicensorContractName": "Doe: Night Trains",
                "OriginalTitle": "Night Trains",
            },
            {
                "LicensorContractID": "1207",
                "LicensorContractName": "Doe & Roe: The Shared Garden",
                "OriginalTitle": "The Shared Garden, a tale",
                "OriginalAdvanceAmount": "5000.00",
                "OriginalAdvanceCurrency": "GBP",
            },
        ],
    }


def test_json_is_deterministic_and_sorted() -> None:
    shuffled = replace(FACTS, contracts=(SOLO, GARDEN), isbns=tuple(reversed(FACTS.isbns)))
    data = companion_json(FACTS)
    assert data == companion_json(shuffled)
    keys = list(json.loads(data))
    assert keys == sorted(keys)
    assert "Zoë".encode() in data  # UTF-8, not \u escapes


def test_csv_one_row_per_contract_with_fixed_columns() -> None:
    data = companion_csv(FACTS)
    assert data.startswith(",".join(CSV_COLUMNS).encode() + b"\r\n")
    got = rows(data)
    assert [r["LicensorContractID"] for r in got] == ["880", "1207"]
    for r in got:  # the statement's fields on every row
        assert r["BeneficiaryName"] == "Zoë Doe"
        assert r["BeneficiaryContactID"] == "501"
        assert r["ISBN"] == "9780306406157;9783161484100"
        assert r["StatementFileSHA256"] == "ab" * 32
    assert got[1]["OriginalTitle"] == "The Shared Garden, a tale"  # the comma is quoted
    assert (got[1]["OriginalAdvanceAmount"], got[1]["OriginalAdvanceCurrency"]) == (
        "5000.00",
        "GBP",
    )
    # No advance, so no currency either.
    assert (got[0]["OriginalAdvanceAmount"], got[0]["OriginalAdvanceCurrency"]) == ("", "")
    assert companion_csv(replace(FACTS, contracts=(SOLO, GARDEN))) == data


def test_only_what_exists_is_filled() -> None:
    bare = StatementFacts(
        file_name="statement_x_502.pdf", sha256=SHA, payee_contact_id=502, payee_name="R. Roe"
    )
    assert json.loads(companion_json(bare)) == {
        "BeneficiaryName": "R. Roe",
        "BeneficiaryContactID": "502",
        "StatementFileName": "statement_x_502.pdf",
        "StatementFileSHA256": "ab" * 32,
    }
    (row,) = rows(companion_csv(bare))
    assert row["BeneficiaryContactID"] == "502"
    assert all(row[c] == "" for c in CONTRACT_FIELDS)
    assert row["RoyaltyStatementDate"] == row["ISBN"] == row["LicensorName"] == ""


def test_advance_without_currency_and_awkward_amounts() -> None:
    odd = Contract(id=9, contract_name="X", guaranteed_royalty_value=1234.5)
    zero = Contract(id=10, contract_name="Y", guaranteed_royalty_value=0.0)
    nan = Contract(id=11, contract_name="Z", guaranteed_royalty_value=float("nan"))
    facts = replace(FACTS, contracts=(odd, zero, nan), currency=None, titles={})
    by_id = {c["LicensorContractID"]: c for c in json.loads(companion_json(facts))["Contracts"]}
    assert by_id["9"] == {
        "LicensorContractID": "9",
        "LicensorContractName": "X",
        "OriginalAdvanceAmount": "1234.50",
    }
    assert by_id["10"]["OriginalAdvanceAmount"] == "0.00"  # zero is data, not absence
    assert "OriginalAdvanceAmount" not in by_id["11"]


def test_isbns_in_text() -> None:
    text = (
        "Royalty statement\n9780306406157 Hardback 12.99\n"
        "ISBN 978-3-16-148410-0 ebook\n"
        "979 10 90636 07 1 audio\n"
        "9780306406158 (bad check digit)\n"
        "Amount 97803064061570.00 (too long)\n"
        "again 9780306406157\n"
        "ISBN-10 0306406152 is not an ISBN-13\n"
    )
    assert isbns_in_text(text) == ("9780306406157", "9783161484100", "9791090636071")
    assert isbns_in_text("no numbers here") == ()
