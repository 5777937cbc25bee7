"""Royalty-statement batches like the ones a finance team exports from Consonance, for the demo
and for tests of the ``finance_out`` flow.

Consonance computes royalties and renders statements itself; none of it is in the API, so the
service receives statement PDFs as files (one per payee and period). This module writes such a
batch from a sandbox catalogue: one PDF per payee, named ``statement_<period>_<contact id>.pdf``,
laid out like an author statement (publisher, "Royalty statement", the period, ``Payee:`` and
``Contact ID:``, then each contract with its title, its products' ISBNs, lines of units, rate
and royalty, the advance, the balance and the payment due). Payees are the person contacts who
are authors (``A01``) of a work with a contract. A co-authored contract appears on each
co-author's statement with their share, and its name names both authors ("Doe & Roe: Title"):
a payee's statement may name another payee, only never in a ``Payee:`` or ``Contact ID:`` line.

Three deliberately bad files test the flow's refusals: ``two_payees`` (one file holding two
payees' statements), ``unknown_payee`` (named for a contact ID that is no contact) and
``no_text_layer`` (a scanned-looking statement: an image, no text to read).

Everything is deterministic for a seed: the same catalogue, period and seed give the same
files, byte for byte (the PDF dates are the statement date).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import NamedTuple

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from PIL import Image, ImageDraw, ImageFont

from consonance_sftp.formats.finance.periods import period_dates as period_dates
from consonance_sftp.models import (
    Contact,
    Contract,
    Contribution,
    LicensedRight,
    Price,
    Product,
    Work,
)
from consonance_sftp.sandbox.consonance.catalogue import Catalogue
from consonance_sftp.sandbox.consonance.generator import (
    FIRST,
    IMPRINTS,
    LAST,
    WORDS,
    contract_terms,
    generate_catalogue,
    isbn13,
)

DEFAULT_PERIOD = "2026H1"
FILE_NAME = "statement_{period}_{contact_id}.pdf"
PUBLISHER_ADDRESS = "120 Harbour Road, London E14 9XX"
_PENNY = Decimal("0.01")


class Payee(NamedTuple):
    """Who a written file is for: the contact ID its name carries and the payee's name."""

    contact_id: int
    name: str


# --- periods ----------------------------------------------------------------------------------


def _long(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


# --- who is paid for what ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Share:
    work: Work
    contract: Contract
    authors: tuple[Contact, ...]  # every author of the work, the payee among them


def _authors(work: Work, catalogue: Catalogue) -> tuple[Contact, ...]:
    seen: dict[int, Contact] = {}
    for c in sorted(work.contributions, key=lambda c: c.sequence_number):
        contact = catalogue.contacts.get(c.contributor.id, c.contributor)
        if c.role == "A01" and not contact.is_organisation:
            seen.setdefault(contact.id, contact)
    return tuple(seen.values())


def _shares(catalogue: Catalogue) -> dict[int, list[_Share]]:
    """Each payee's contracts, in work order."""
    out: dict[int, list[_Share]] = {}
    for work_id in sorted(catalogue.works):
        work = catalogue.works[work_id]
        authors = _authors(work, catalogue)
        for contract_id in work.contract_ids:
            contract = catalogue.contracts.get(contract_id)
            if contract is None:
                continue
            for author in authors:
                out.setdefault(author.id, []).append(_Share(work, contract, authors))
    return out


def statement_payees(catalogue: Catalogue, payees: int | None = None) -> list[Contact]:
    """The first ``payees`` payees by contact ID (all of them with None)."""
    ids = sorted(_shares(catalogue))
    if payees is not None:
        if payees > len(ids):
            raise ValueError(
                f"the catalogue has {len(ids)} payees, not {payees}: "
                "ensure_payees() adds authors, works and contracts"
            )
        ids = ids[:payees]
    return [catalogue.contacts[i] for i in ids]


def _co_authored(catalogue: Catalogue) -> Contract | None:
    for work in catalogue.works.values():
        if len(_authors(work, catalogue)) < 2:
            continue
        for contract_id in work.contract_ids:
            contract = catalogue.contracts.get(contract_id)
            if contract is not None and " & " in contract.contract_name:
                return contract
    return None


# --- adding payees ----------------------------------------------------------------------------


def _stamp(day: date) -> datetime:
    return datetime.combine(day, time(9, 30), tzinfo=UTC)


def _new_work(
    catalogue: Catalogue,
    r: random.Random,
    authors: Sequence[Contact],
    *,
    seed: int,
    today: date,
    title: str | None = None,
    contract_name: str | None = None,
) -> tuple[Work, Contract]:
    """A published work by ``authors`` (paperback and ebook, sometimes a hardback), with a
    contract whose money terms and rights come from the generator's ``contract_terms``."""
    work_id = catalogue.new_id()
    title = title or " ".join(r.sample(WORDS, r.randint(1, 3)))
    pub = today - timedelta(days=r.randint(200, 1500))
    updated = _stamp(today - timedelta(days=3))
    forms = [("BC", "PhysicalBookProduct", Decimal("9.99")), ("DG", "ElectronicBookProduct", None)]
    if r.random() < 0.3:
        forms.insert(0, ("BB", "PhysicalBookProduct", Decimal("18.99")))
    products = []
    for form, typename, rrp in forms:
        product_id = catalogue.new_id()
        amount = rrp if rrp is not None else Decimal("5.99")
        products.append(
            Product(
                id=product_id,
                work_id=work_id,
                typename=typename,
                isbn13=isbn13(product_id),
                title=title,
                product_form=form,
                publishing_status="04",
                publication_date=pub,
                prices=(
                    Price(
                        id=catalogue.new_id(),
                        amount=amount,
                        currency="GBP",
                        price_type="02",
                        qualifier="05",
                        territories=("GB",),
                    ),
                ),
                for_sale_countries=("GB", "IE", "US", "CA", "AU", "NZ"),
                language="eng",
                updated_at=updated,
            )
        )
    contributions = tuple(
        Contribution(id=catalogue.new_id(), contributor=a, role="A01", sequence_number=i + 1)
        for i, a in enumerate(authors)
    )
    names = " and ".join(a.name for a in authors)
    contract = Contract(
        id=catalogue.new_id(),
        contract_name=contract_name or f"{names}: {title}",
        work_id=work_id,
        signed_date=pub - timedelta(days=r.randint(400, 900)),
        ms_delivery_date=pub - timedelta(days=300),
        licensed_rights=(
            LicensedRight(id=catalogue.new_id(), right_type="World English", author_cut=50.0),
        ),
    )
    contract = contract_terms(contract, catalogue.new_id, seed=seed, pub=pub, today=today)
    work = Work(
        id=work_id,
        title=title,
        imprint=IMPRINTS[0],
        project_stage="Published",
        work_type=r.choice(("Fiction", "Non-fiction")),
        contributions=contributions,
        products=tuple(products),
        contract_ids=(contract.id,),
        updated_at=updated,
    )
    return work, contract


def ensure_payees(
    catalogue: Catalogue,
    payees: int,
    *,
    seed: int = 1,
    co_authored: bool = True,
    today: date | None = None,
) -> list[Contact]:
    """Make ``catalogue`` have at least ``payees`` payees, adding person contacts, each with a
    work and its contract; with ``co_authored``, also a work by the first two payees whose
    contract names both ("Doe & Roe: Title"), unless there is one already. Changes the
    catalogue in place; returns the contacts added. Deterministic for the same catalogue."""
    today = today or datetime.now(UTC).date()
    r = random.Random(f"statement-payees-{seed}")
    have = len(_shares(catalogue))
    added: list[Contact] = []
    works: list[Work] = []
    contracts: list[Contract] = []
    for _ in range(max(0, payees - have)):
        first, last = r.choice(FIRST), r.choice(LAST)
        contact = Contact(
            id=catalogue.new_id(),
            name=f"{first} {last}",
            key_names=last,
            names_before_key=first,
            biographical_note=f"{first} {last} writes from a shed at the end of the garden.",
            emails=(f"{first.lower()}.{last.lower()}.{len(added) + 1}@example.com",),
        )
        work, contract = _new_work(catalogue, r, [contact], seed=seed, today=today)
        added.append(contact)
        works.append(work)
        contracts.append(contract)
    catalogue.add_records(works=works, contacts=added, contracts=contracts)
    if co_authored and _co_authored(catalogue) is None:
        pair = statement_payees(catalogue)[:2]
        if len(pair) == 2:
            title_words = " ".join(r.sample(WORDS, 2))
            surnames = " & ".join(p.key_names or p.name for p in pair)
            work, contract = _new_work(
                catalogue,
                r,
                pair,
                seed=seed,
                today=today,
                title=title_words,
                contract_name=f"{surnames}: {title_words}",
            )
            catalogue.add_records(works=[work], contracts=[contract])
    return added


def statement_catalogue(payees: int = 50, *, seed: int = 1, today: date | None = None) -> Catalogue:
    """A generated catalogue (``seed``) with at least ``payees`` payees and one co-authored
    contract named for both authors: what ``write_statements`` needs for a batch of N."""
    catalogue = generate_catalogue(seed=seed, works=max(12, payees // 2), today=today)
    ensure_payees(catalogue, payees, seed=seed, today=today)
    return catalogue


# --- the statement ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Line:
    isbn: str
    channel: str
    units: int
    basis: str
    price: Decimal
    rate: Decimal  # percent
    royalty: Decimal


@dataclass(frozen=True, slots=True)
class _Block:
    share: _Share
    percent: Decimal  # the payee's share of the contract's royalties
    lines: tuple[_Line, ...]
    advance: Decimal | None
    flat_fee: Decimal | None
    earned_before: Decimal
    earned_now: Decimal
    opening: Decimal
    closing: Decimal
    due: Decimal


@dataclass(frozen=True, slots=True)
class _Statement:
    publisher: str
    period: str
    start: date
    end: date
    issued: date
    pay_by: date
    payee: Contact
    blocks: tuple[_Block, ...]

    @property
    def total_due(self) -> Decimal:
        return sum((b.due for b in self.blocks), Decimal(0))


def _money(value: Decimal) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}\u00a3{abs(value):,.2f}"


def _gbp(product: Product) -> Decimal:
    price = next((p.amount for p in product.prices if p.currency == "GBP"), None)
    if price is not None:
        return price
    return {"BB": Decimal("18.99"), "BC": Decimal("9.99")}.get(
        product.product_form or "", Decimal("5.99")
    )


# (channel, basis, share of RRP the basis is, royalty rate %) per product form
_CHANNELS: dict[str, tuple[tuple[str, str, Decimal, Decimal], ...]] = {
    "BB": (
        ("Home", "RRP", Decimal(1), Decimal(10)),
        ("Export", "Net receipts", Decimal("0.45"), Decimal(10)),
    ),
    "BC": (
        ("Home", "RRP", Decimal(1), Decimal("7.5")),
        ("Export", "Net receipts", Decimal("0.45"), Decimal(10)),
    ),
    "DG": (("Ebook", "Net receipts", Decimal("0.6"), Decimal(25)),),
    "AJ": (("Audio download", "Net receipts", Decimal("0.5"), Decimal(20)),),
}


def _block(share: _Share, r: random.Random) -> _Block:
    percent = (Decimal(100) / len(share.authors)).quantize(_PENNY)
    fraction = percent / 100
    flat = share.contract.flat_fee_value
    lines: list[_Line] = []
    if flat is None:
        for product in share.work.products:
            if not product.isbn13:
                continue
            rrp = _gbp(product)
            for channel, basis, factor, rate in _CHANNELS.get(product.product_form or "", ()):
                units = r.randint(-5, 60) if channel == "Export" else r.randint(0, 900)
                price = (rrp * factor).quantize(_PENNY, ROUND_HALF_UP)
                royalty = (units * price * rate / 100 * fraction).quantize(_PENNY, ROUND_HALF_UP)
                lines.append(_Line(product.isbn13, channel, units, basis, price, rate, royalty))
    advance = share.contract.guaranteed_royalty_value
    advance_share = (
        (Decimal(str(advance)) * fraction).quantize(_PENNY) if advance is not None else None
    )
    earned_now = sum((ln.royalty for ln in lines), Decimal(0))
    base = advance_share or Decimal(0)
    earned_before = (base * Decimal(r.randint(20, 130)) / 100).quantize(_PENNY)
    opening = min(Decimal(0), earned_before - base)  # unearned advance still to recoup
    closing = opening + earned_now
    return _Block(
        share=share,
        percent=percent,
        lines=tuple(lines),
        advance=advance_share,
        flat_fee=Decimal(str(flat)).quantize(_PENNY) if flat is not None else None,
        earned_before=earned_before,
        earned_now=earned_now,
        opening=opening,
        closing=closing,
        due=max(Decimal(0), closing),
    )


def _statement(
    payee: Contact,
    shares: Sequence[_Share],
    *,
    period: str,
    seed: int,
    publisher: str | None,
) -> _Statement:
    start, end = period_dates(period)
    blocks = tuple(
        _block(s, random.Random(f"statement-{seed}-{period}-{payee.id}-{s.contract.id}"))
        for s in shares
    )
    imprint = next((s.work.imprint for s in shares if s.work.imprint), IMPRINTS[0])
    return _Statement(
        publisher=publisher or imprint.name,
        period=period,
        start=start,
        end=end,
        issued=end + timedelta(days=31),
        pay_by=end + timedelta(days=92),
        payee=payee,
        blocks=blocks,
    )


# --- rendering --------------------------------------------------------------------------------


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _new_pdf(statement: _Statement) -> FPDF:
    pdf = FPDF(unit="mm", format="A4")
    pdf.set_creation_date(datetime.combine(statement.issued, time(8, 0), tzinfo=UTC))
    pdf.set_producer("Consonance")
    pdf.set_title(_latin1(f"Royalty statement {statement.period}"))
    pdf.set_author(_latin1(statement.publisher))
    pdf.set_auto_page_break(auto=True, margin=15)
    return pdf


def _line(pdf: FPDF, text: str, *, size: float = 10, style: str = "", height: float = 5.5) -> None:
    pdf.set_font("Helvetica", style, size)
    pdf.cell(0, height, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _render(pdf: FPDF, st: _Statement) -> None:
    pdf.add_page()
    _line(pdf, st.publisher, size=16, style="B", height=8)
    _line(pdf, PUBLISHER_ADDRESS, size=9)
    pdf.ln(4)
    _line(pdf, "Royalty statement", size=14, style="B", height=8)
    _line(pdf, f"Period: {_long(st.start)} to {_long(st.end)} ({st.period})")
    _line(pdf, f"Statement date: {_long(st.issued)}")
    pdf.ln(3)
    _line(pdf, f"Payee: {st.payee.name}", style="B")
    _line(pdf, f"Contact ID: {st.payee.id}")
    if st.payee.emails:
        _line(pdf, f"Email: {st.payee.emails[0]}")
    widths = (38, 30, 16, 30, 26, 14, 26)
    for block in st.blocks:
        contract, work = block.share.contract, block.share.work
        pdf.ln(4)
        _line(pdf, f"Contract: {contract.contract_name}", style="B")
        _line(pdf, f"Contract ID: {contract.id}    Title: {work.title}")
        isbns = ", ".join(p.isbn13 for p in work.products if p.isbn13)
        _line(pdf, f"ISBNs: {isbns}", size=9)
        if len(block.share.authors) > 1:
            _line(pdf, f"Your share of this contract: {block.percent}%", size=9)
        if block.flat_fee is not None:
            _line(pdf, f"Flat fee contract ({_money(block.flat_fee)} paid): no royalties accrue")
            continue
        pdf.set_font("Helvetica", "B", 8)
        for width, head in zip(
            widths,
            ("ISBN", "Channel", "Units", "Basis", "Price", "Rate", "Royalty"),
            strict=True,
        ):
            pdf.cell(width, 5, head, border="B")
        pdf.ln(5)
        pdf.set_font("Helvetica", "", 8)
        for ln in block.lines:
            cells = (
                ln.isbn,
                ln.channel,
                str(ln.units),
                ln.basis,
                _money(ln.price),
                f"{ln.rate}%",
                _money(ln.royalty),
            )
            for width, text in zip(widths, cells, strict=True):
                pdf.cell(width, 4.5, _latin1(text))
            pdf.ln(4.5)
        pdf.ln(1)
        if block.advance is not None:
            _line(pdf, f"Advance (guaranteed royalty): {_money(block.advance)}", size=9)
        _line(pdf, f"Earned to last statement: {_money(block.earned_before)}", size=9)
        _line(pdf, f"Balance brought forward: {_money(block.opening)}", size=9)
        _line(pdf, f"Royalties this period: {_money(block.earned_now)}", size=9)
        _line(pdf, f"Balance: {_money(block.closing)}", size=9)
        _line(pdf, f"Payable on this contract: {_money(block.due)}", size=9)
    pdf.ln(5)
    _line(pdf, f"Payment due: {_money(st.total_due)} by {_long(st.pay_by)}", style="B")
    _line(
        pdf,
        "Payments are made to the bank account we hold for you. Queries: royalties@"
        f"{re.sub(r'[^a-z]', '', st.publisher.lower())}.example",
        size=8,
    )


def _file_name(pattern: str, period: str, contact_id: int) -> str:
    return pattern.format(period=period, contact_id=contact_id)


def write_statements(
    catalogue: Catalogue,
    out_dir: Path,
    *,
    payees: int | None = None,
    period: str = DEFAULT_PERIOD,
    seed: int = 1,
    publisher: str | None = None,
    file_name: str = FILE_NAME,
) -> dict[str, Payee]:
    """Write one statement PDF per payee (the first ``payees`` by contact ID; all with None)
    into ``out_dir``; returns file name -> payee. ``file_name`` may use ``{period}`` and
    ``{contact_id}``. Raises ValueError if the catalogue has fewer payees than asked for."""
    shares = _shares(catalogue)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Payee] = {}
    for payee in statement_payees(catalogue, payees):
        st = _statement(payee, shares[payee.id], period=period, seed=seed, publisher=publisher)
        pdf = _new_pdf(st)
        _render(pdf, st)
        name = _file_name(file_name, period, payee.id)
        (out_dir / name).write_bytes(bytes(pdf.output()))
        written[name] = Payee(payee.id, payee.name)
    return written


# --- deliberately bad files -------------------------------------------------------------------


def _pick(catalogue: Catalogue, contact_id: int | None, index: int = 0) -> Contact:
    if contact_id is not None:
        contact = catalogue.contacts.get(contact_id)
        if contact is None or contact_id not in _shares(catalogue):
            raise ValueError(f"contact {contact_id} is not a payee of this catalogue")
        return contact
    return statement_payees(catalogue)[index]


def two_payees(
    catalogue: Catalogue,
    out_dir: Path,
    *,
    contact_ids: tuple[int, int] | None = None,
    period: str = DEFAULT_PERIOD,
    seed: int = 1,
) -> dict[str, Payee]:
    """One PDF named for the first payee whose pages hold the first's statement and then the
    second's, each with its own ``Payee:`` / ``Contact ID:`` block (a batch split wrongly).
    Returns file name -> the payee the name claims (the first); default: payees 1 and 2."""
    first = _pick(catalogue, contact_ids[0] if contact_ids else None, 0)
    second = _pick(catalogue, contact_ids[1] if contact_ids else None, 1)
    if first.id == second.id:
        raise ValueError("two_payees needs two different payees")
    shares = _shares(catalogue)
    statements = [
        _statement(p, shares[p.id], period=period, seed=seed, publisher=None)
        for p in (first, second)
    ]
    pdf = _new_pdf(statements[0])
    for st in statements:
        _render(pdf, st)
    name = _file_name(FILE_NAME, period, first.id)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / name).write_bytes(bytes(pdf.output()))
    return {name: Payee(first.id, first.name)}


UNKNOWN_NAME = "Morgan Fairweather"  # neither name is in the generator's lists


def unknown_payee(
    catalogue: Catalogue,
    out_dir: Path,
    *,
    contact_id: int | None = None,
    period: str = DEFAULT_PERIOD,
    seed: int = 1,
) -> dict[str, Payee]:
    """A well-formed statement for a payee who is no contact: named for ``contact_id`` (by
    default the first free id from 990001), for ``Morgan Fairweather``, on a contract and
    work that are not in the catalogue either. Returns file name -> that (unknown) payee."""
    if contact_id is None:
        contact_id = 990_001
        while contact_id in catalogue.contacts:
            contact_id += 1
    elif contact_id in catalogue.contacts:
        raise ValueError(f"contact {contact_id} exists: pick an id that is no contact")
    ghost = Contact(
        id=contact_id,
        name=UNKNOWN_NAME,
        key_names="Fairweather",
        names_before_key="Morgan",
        emails=("morgan.fairweather@example.net",),
    )
    today = period_dates(period)[1]
    r = random.Random(f"unknown-payee-{seed}-{contact_id}")
    scratch = Catalogue()  # ids and records of a work the real catalogue does not have
    scratch.next_id = 980_000
    work, contract = _new_work(
        scratch,
        r,
        [ghost],
        seed=seed,
        today=today,
        title="The Lost Ledger",
        contract_name="Fairweather: The Lost Ledger",
    )
    st = _statement(
        ghost,
        [_Share(work, contract, (ghost,))],
        period=period,
        seed=seed,
        publisher=None,
    )
    pdf = _new_pdf(st)
    _render(pdf, st)
    name = _file_name(FILE_NAME, period, contact_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / name).write_bytes(bytes(pdf.output()))
    return {name: Payee(contact_id, UNKNOWN_NAME)}


def _scan(lines: Iterable[str]) -> Image.Image:
    """A page image (A4 at 100 dpi, greyscale) with the lines drawn on it, like a scan."""
    image = Image.new("L", (827, 1169), color=250)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=18)
    y = 70
    for text in lines:
        draw.text((70, y), text, fill=20, font=font)
        y += 28
    return image


def no_text_layer(
    catalogue: Catalogue,
    out_dir: Path,
    *,
    contact_id: int | None = None,
    period: str = DEFAULT_PERIOD,
    seed: int = 1,
) -> dict[str, Payee]:
    """A real payee's statement as a scan: one page that is only an image (drawn with
    Pillow), so there is no text to extract. Named for the payee (default: the third, so the
    three bad files of one batch have three names); returns file name -> that payee."""
    payee = _pick(catalogue, contact_id, min(2, len(_shares(catalogue)) - 1))
    st = _statement(payee, _shares(catalogue)[payee.id], period=period, seed=seed, publisher=None)
    lines = [
        st.publisher,
        "Royalty statement",
        f"Period: {_long(st.start)} to {_long(st.end)} ({st.period})",
        f"Payee: {payee.name}",
        f"Contact ID: {payee.id}",
        "",
        *(f"Contract: {b.share.contract.contract_name}" for b in st.blocks),
        "",
        f"Payment due: {_money(st.total_due)} by {_long(st.pay_by)}",
    ]
    pdf = _new_pdf(st)
    pdf.add_page()
    pdf.image(_scan(_latin1(t) for t in lines), x=0, y=0, w=210, h=297)
    name = _file_name(FILE_NAME, period, payee.id)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / name).write_bytes(bytes(pdf.output()))
    return {name: Payee(payee.id, payee.name)}
