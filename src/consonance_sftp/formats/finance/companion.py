"""The machine-readable companion of a royalty statement: CSV and JSON beside the PDF, so an
agent reconciles instead of retyping (issue 16).

The fields follow the BISG Translation Rights Royalty Statement Standard (Rights Committee,
draft proposed field list, October 2024). BISG's official numeric field identifiers are not
available to us, so each field is named by a stable CamelCase identifier made from the draft's
field name (``RoyaltyStatementDate`` for "Royalty Statement Date"); ``FIELDS`` also gives the
row number the field has in that public draft, where it has one, as a cross-reference only
(it is not an official identifier and may change). Fields the draft does not have are marked
as extensions (``draft_row`` None): the Consonance contact ID, the contract name, and the
statement file's name and SHA-256, which tie the companion to the exact PDF it describes.

Only fields for which there is data are filled: the statement's dates and period (as the
caller knows them), the payee (beneficiary), the publisher (licensor), each contract's ID,
name, work title and advance (Consonance's ``guaranteedRoyaltyValue``; its currency is not in
Consonance, so only when the caller gives one), and the ISBN-13s the statement's own text
quotes (checked digits). The rest of the draft (earnings, reserves, balances, remittance...)
is in the PDF only, which is generated inside Consonance and not readable as data.

Output is deterministic: the same facts give the same bytes. JSON: UTF-8, sorted keys, two
spaces of indent, absent fields left out, contract fields in a ``Contracts`` list (by contract
ID), ISBNs a sorted list. CSV: UTF-8, RFC 4180 (CRLF), the fixed columns of ``CSV_COLUMNS``,
one row per contract (one row when there is none), every row repeating the statement's
fields, ISBNs joined with ``;``, absent fields empty.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

from stdnum import isbn as stdnum_isbn

from consonance_sftp.models import Contract


@dataclass(frozen=True, slots=True)
class CompanionField:
    """One field of the companion, for the docs: its identifier, whether it is given once per
    statement or once per contract, its row in the BISG draft (None: our extension), and what
    it holds."""

    name: str
    level: Literal["statement", "contract"]
    draft_row: int | None
    description: str


FIELDS: tuple[CompanionField, ...] = (
    CompanionField(
        "RoyaltyStatementDate", "statement", 26, "Date the statement was generated (ISO 8601)."
    ),
    CompanionField(
        "RoyaltyPeriodStartDate", "statement", 27, "First day of the royalty period (ISO 8601)."
    ),
    CompanionField(
        "RoyaltyPeriodEndDate", "statement", 28, "Last day of the royalty period (ISO 8601)."
    ),
    CompanionField("LicensorName", "statement", 18, "The publisher (the rights holder)."),
    CompanionField(
        "BeneficiaryName", "statement", 19, "The payee: the final recipient of the payment."
    ),
    CompanionField("BeneficiaryContactID", "statement", None, "The payee's Consonance contact ID."),
    CompanionField(
        "ISBN", "statement", None, "The valid ISBN-13s the statement's text quotes, sorted."
    ),
    CompanionField(
        "StatementFileName", "statement", None, "The statement PDF this companion describes."
    ),
    CompanionField(
        "StatementFileSHA256", "statement", None, "The SHA-256 of that PDF (lower-case hex)."
    ),
    CompanionField(
        "LicensorContractID", "contract", 2, "The publisher's contract ID (Consonance)."
    ),
    CompanionField("LicensorContractName", "contract", None, "The contract's name in Consonance."),
    CompanionField(
        "OriginalTitle", "contract", 14, "Title of the contract's work, as the publisher has it."
    ),
    CompanionField(
        "OriginalAdvanceAmount",
        "contract",
        16,
        "The advance (Consonance guaranteedRoyaltyValue), two decimals.",
    ),
    CompanionField("OriginalAdvanceCurrency", "contract", 17, "The advance's currency (ISO 4217)."),
)

STATEMENT_FIELDS = tuple(f.name for f in FIELDS if f.level == "statement")
CONTRACT_FIELDS = tuple(f.name for f in FIELDS if f.level == "contract")
CSV_COLUMNS = STATEMENT_FIELDS + CONTRACT_FIELDS


@dataclass(frozen=True, kw_only=True)
class StatementFacts:
    """What is known about one statement, from the batch, the resolution and Consonance."""

    file_name: str
    sha256: str
    payee_contact_id: int
    payee_name: str
    licensor: str | None = None  # the publisher's name
    statement_date: date | None = None
    period_start: date | None = None
    period_end: date | None = None
    contracts: tuple[Contract, ...] = ()  # the payee's contracts this statement covers
    titles: Mapping[int, str] = field(default_factory=dict)  # work title by contract ID
    currency: str | None = None  # the advances' currency; Consonance stores none
    isbns: tuple[str, ...] = ()  # from ``isbns_in_text(statement text)``


# 978/979, then ten more digits, single hyphens or spaces allowed between digits.
_ISBN13_CANDIDATE = re.compile(r"(?<!\d)(97[89](?:[- ]?\d){10})(?!\d)")


def isbns_in_text(text: str) -> tuple[str, ...]:
    """The valid ISBN-13s in ``text`` (plain or hyphenated), compact, sorted, each once.
    Thirteen digits that fail the check digit are not an ISBN and are left out."""
    found = set()
    for match in _ISBN13_CANDIDATE.finditer(text):
        number = stdnum_isbn.compact(match.group(1))
        if len(number) == 13 and stdnum_isbn.is_valid(number):
            found.add(number)
    return tuple(sorted(found))


def _money(value: float | None) -> str | None:
    if value is None or not math.isfinite(value):
        return None
    return str(Decimal(repr(value)).quantize(Decimal("0.01")))


def _contract_record(facts: StatementFacts, contract: Contract) -> dict[str, str]:
    advance = _money(contract.guaranteed_royalty_value)
    values = {
        "LicensorContractID": str(contract.id),
        "LicensorContractName": contract.contract_name or None,
        "OriginalTitle": facts.titles.get(contract.id),
        "OriginalAdvanceAmount": advance,
        "OriginalAdvanceCurrency": facts.currency if advance is not None else None,
    }
    return {k: v for k, v in values.items() if v}


def _statement_record(facts: StatementFacts) -> dict[str, str]:
    values = {
        "RoyaltyStatementDate": facts.statement_date.isoformat() if facts.statement_date else None,
        "RoyaltyPeriodStartDate": facts.period_start.isoformat() if facts.period_start else None,
        "RoyaltyPeriodEndDate": facts.period_end.isoformat() if facts.period_end else None,
        "LicensorName": facts.licensor,
        "BeneficiaryName": facts.payee_name,
        "BeneficiaryContactID": str(facts.payee_contact_id),
        "StatementFileName": facts.file_name,
        "StatementFileSHA256": facts.sha256.lower(),
    }
    return {k: v for k, v in values.items() if v}


def _contracts(facts: StatementFacts) -> list[Contract]:
    return sorted(facts.contracts, key=lambda c: c.id)


def _isbns(facts: StatementFacts) -> list[str]:
    return sorted(set(facts.isbns))


def companion_json(facts: StatementFacts) -> bytes:
    """The companion as JSON: the statement's fields, ``ISBN`` (a list) and ``Contracts``
    (a list of each contract's fields), only what is known, sorted keys, UTF-8."""
    record: dict[str, object] = dict(_statement_record(facts))
    if facts.isbns:
        record["ISBN"] = _isbns(facts)
    contracts = [_contract_record(facts, c) for c in _contracts(facts)]
    if contracts:
        record["Contracts"] = contracts
    text = json.dumps(record, ensure_ascii=False, indent=2, sort_keys=True)
    return (text + "\n").encode("utf-8")


def companion_csv(facts: StatementFacts) -> bytes:
    """The companion as CSV: ``CSV_COLUMNS``, one row per contract (one row if none)."""
    statement = _statement_record(facts)
    if facts.isbns:
        statement["ISBN"] = ";".join(_isbns(facts))
    rows = [_contract_record(facts, c) for c in _contracts(facts)] or [{}]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for contract in rows:
        merged = {**statement, **contract}
        writer.writerow([merged.get(name, "") for name in CSV_COLUMNS])
    return out.getvalue().encode("utf-8")
