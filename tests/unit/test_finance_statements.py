"""formats.finance.statements: a statement resolves to exactly one payee, or says why not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.formats.finance.statements import (
    Payee,
    StatementUnreadable,
    contact_in_name,
    normalise,
    pattern_regex,
    pdf_text,
    resolve,
)

PATTERN = "statement_*_{contact}.pdf"

DOE = Payee(501, "Jane Doe", ("Jane Doe & Richard Roe: The Shared Garden", "1207"))
ROE = Payee(502, "Richard Roe", ("Jane Doe & Richard Roe: The Shared Garden", "Roe: Solo"))
LEE = Payee(503, "Ann Lee")
LEEDS = Payee(504, "Ann Leeds")
ZOE = Payee(505, "Zoë Brontë")
MARY = Payee(506, "Mary Ann Lee")
CONTACTS = {p.contact_id: p for p in (DOE, ROE, LEE, LEEDS, ZOE, MARY)}
BATCH = frozenset(CONTACTS)


def run(file_name: str, text: str, batch: frozenset[int] = BATCH):  # type: ignore[no-untyped-def]
    return resolve(file_name, text, PATTERN, CONTACTS, batch)


# --- the pattern -----------------------------------------------------------------------------


def test_pattern_takes_the_contact_id_from_the_name() -> None:
    assert contact_in_name(PATTERN, "statement_2024-H1_501.pdf") == 501
    assert contact_in_name(PATTERN, "STATEMENT_2024_0501.PDF") == 501  # case, leading zero
    assert contact_in_name(PATTERN, "statement_2024_501.pdf.exe") is None
    assert contact_in_name(PATTERN, "statement_501.pdf") is None  # no "_*_"
    assert contact_in_name(PATTERN, "statement_2024_50a.pdf") is None
    assert contact_in_name("?{contact}.pdf", "x501.pdf") == 501


def test_pattern_never_cuts_the_contact_id_out_of_longer_digits() -> None:
    # "*" next to the digits could take "2024501" as contact 1, 501, 4501...: it takes it all.
    assert contact_in_name("statement_*{contact}.pdf", "statement_2024501.pdf") == 2024501
    # "?" may not eat a digit of the ID: ambiguous, so no match.
    assert contact_in_name("?{contact}.pdf", "7501.pdf") is None


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("statement_*.pdf", "exactly once"),
        ("{contact}_{contact}.pdf", "exactly once"),
        ("out/{contact}.pdf", "not a path"),
        ("statement_[0-9]_{contact}.pdf", "only * and ?"),
        ("statement_{year}_{contact}.pdf", "only * and ?"),
    ],
)
def test_pattern_refuses_what_it_cannot_read(pattern: str, words: str) -> None:
    with pytest.raises(ValueError, match=r"must|may") as info:
        pattern_regex(pattern)
    assert words in str(info.value)
    assert repr(pattern) in str(info.value)


def test_pattern_other_characters_are_literal() -> None:
    assert contact_in_name("st.mt+({contact}).pdf", "st.mt+(501).pdf") == 501
    assert contact_in_name("st.mt+({contact}).pdf", "stxmt+(501).pdf") is None


# --- the rules, in order ---------------------------------------------------------------------


def test_resolved_by_name() -> None:
    r = run("statement_2024_501.pdf", "Royalty statement\nPayee: Jane Doe\nTotal 1,234.00")
    assert (r.kind, r.payee, r.reason, r.resolved) == ("resolved", DOE, None, True)


def test_unmatched_names_the_pattern() -> None:
    r = run("royalties-501.pdf", "Jane Doe")
    assert (r.kind, r.payee) == ("unmatched", None)
    assert PATTERN in (r.reason or "") and not r.resolved


def test_unknown_contact() -> None:
    r = run("statement_2024_999.pdf", "Jane Doe")
    assert (r.kind, r.payee) == ("unknown", None)
    assert "names contact 999, which is no Consonance contact" in (r.reason or "")


@pytest.mark.parametrize("text", ["", "  \n\t \x0c "])
def test_no_text_layer(text: str) -> None:
    r = run("statement_2024_501.pdf", text)
    assert (r.kind, r.payee) == ("no_text", DOE)
    assert "no text layer" in (r.reason or "") and "scanned" in (r.reason or "")


def test_not_named() -> None:
    r = run("statement_2024_501.pdf", "Royalty statement for Richard Roe")
    assert r.kind == "not_named"
    assert "Jane Doe (contact 501)" in (r.reason or "")


def test_rules_apply_in_order() -> None:
    # Names two payees AND no payee for its own file: not_named comes first.
    assert run("statement_2024_503.pdf", "Richard Roe, Jane Doe").kind == "not_named"
    # Unknown contact with empty text: unknown comes before no_text.
    assert run("statement_2024_999.pdf", "").kind == "unknown"


# --- naming the payee ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Contact ID: 501",
        "contact 501",
        "Payee ID 501",
        "Payee ID: #501",
        "Ref #501",
        "Contact no. 0501",
        "CONTRACT: Jane Doe & Richard Roe: The Shared Garden",
        "Contract no. 1207 (period 2024)",
    ],
)
def test_named_by_contact_id_or_contract_ref(text: str) -> None:
    assert run("statement_2024_501.pdf", text).kind == "resolved"


@pytest.mark.parametrize(
    "text",
    [
        "Amount due 501.00",  # a bare number is not an ID
        "Units 501",
        "Contact 5012",  # another ID
        "Invoice 1207",  # a numeric contract ref needs "Contract"
        "Contract 12070",
        "Jane Doerr",  # not a whole word
        "MaryJane Doe",
    ],
)
def test_not_named_by_a_number_or_part_of_a_word(text: str) -> None:
    assert run("statement_2024_501.pdf", text).kind == "not_named"


def test_line_breaks_and_spacing_inside_a_name() -> None:
    for text in ("Payee: Jane\nDoe", "Jane  \r\n  Doe", "Payee:JaneDoe", "JANE\tDOE"):
        assert run("statement_2024_501.pdf", text).kind == "resolved", text
    # A break inside the co-authored contract name still counts as the own contract name,
    # so Richard Roe inside it is not another payee.
    text = "Contract: Jane Doe & Richard\nRoe: The Shared\n Garden\nAmount 10.00"
    assert run("statement_2024_501.pdf", text).kind == "resolved"


def test_accents_are_the_same_letters_however_the_pdf_writes_them() -> None:
    composed = "Payee: Zo\u00eb Bront\u00eb"
    decomposed = "Payee: Zoe\u0308 Bronte\u0308"
    assert normalise(composed) == normalise(decomposed)
    assert run("statement_2024_505.pdf", composed).kind == "resolved"
    assert run("statement_2024_505.pdf", decomposed).kind == "resolved"
    # The same letters, not looser: "Zoe Bronte" without the diaeresis is another spelling.
    assert run("statement_2024_505.pdf", "Payee: Zoe Bronte").kind == "not_named"


def test_typographic_apostrophes_and_ligatures() -> None:
    obrien = Payee(601, "Seán O'Brien")
    contacts = {601: obrien}
    text = "Payee: Seán O\u2019Brien, ﬁnal statement"  # curly apostrophe, "fi" ligature
    r = resolve("statement_x_601.pdf", text, PATTERN, contacts, {601})
    assert r.kind == "resolved"


# --- naming another payee --------------------------------------------------------------------


def test_two_payees_by_name() -> None:
    r = run("statement_2024_501.pdf", "Payee: Jane Doe\nCopy to: Richard Roe")
    assert (r.kind, r.payee) == ("two_payees", DOE)
    assert "Jane Doe (contact 501)" in (r.reason or "")
    assert "Richard Roe (contact 502)" in (r.reason or "")


def test_two_payees_by_contact_id() -> None:
    r = run("statement_2024_501.pdf", "Payee: Jane Doe\nContact ID: 502")
    assert r.kind == "two_payees"
    assert "Richard Roe (contact 502)" in (r.reason or "")


def test_other_payee_only_counts_if_in_the_batch() -> None:
    text = "Payee: Jane Doe\nCopy to: Richard Roe"
    assert run("statement_2024_501.pdf", text, batch=frozenset({501, 503})).kind == "resolved"


def test_batch_contact_unknown_to_consonance_still_counts_by_id() -> None:
    r = run("statement_2024_501.pdf", "Jane Doe, contact 777", batch=BATCH | {777})
    assert r.kind == "two_payees"
    assert "contact 777" in (r.reason or "")


def test_co_authored_contract_name_does_not_name_the_co_author() -> None:
    text = "Payee: Jane Doe\nContract: Jane Doe & Richard Roe: The Shared Garden\nShare 50%"
    assert run("statement_2024_501.pdf", text).kind == "resolved"
    # ...from either side.
    text = "Payee: Richard Roe\nContract: Jane Doe & Richard Roe: The Shared Garden"
    assert run("statement_2024_502.pdf", text).kind == "resolved"


def test_co_author_named_outside_the_contract_name_counts() -> None:
    text = (
        "Payee: Jane Doe\nContract: Jane Doe & Richard Roe: The Shared Garden\n"
        "Co-author's share paid to Richard Roe"
    )
    r = run("statement_2024_501.pdf", text)
    assert r.kind == "two_payees"
    assert "Richard Roe (contact 502)" in (r.reason or "")


def test_only_the_payees_own_contract_refs_are_set_aside() -> None:
    # Lee's statement quoting Doe and Roe's contract: Lee has no such contract, so it leaks.
    text = "Payee: Ann Lee\nContract: Jane Doe & Richard Roe: The Shared Garden"
    r = run("statement_2024_503.pdf", text)
    assert r.kind == "two_payees"
    assert "Jane Doe (contact 501)" in (r.reason or "")
    assert "Richard Roe (contact 502)" in (r.reason or "")


def test_a_name_inside_a_longer_name() -> None:
    # "Ann Lee" is not named by "Ann Leeds"...
    assert run("statement_2024_504.pdf", "Payee: Ann Leeds").kind == "resolved"
    assert run("statement_2024_503.pdf", "Payee: Ann Lee").kind == "resolved"
    # ...nor by "Mary Ann Lee" when that is the payee's own name...
    assert run("statement_2024_506.pdf", "Payee: Mary Ann Lee").kind == "resolved"
    # ...but Mary Ann Lee on Ann Lee's statement is another payee,
    r = run("statement_2024_503.pdf", "Payee: Ann Lee\nAlso: Mary Ann Lee")
    assert r.kind == "two_payees" and "Mary Ann Lee (contact 506)" in (r.reason or "")
    # and Ann Lee on her own, outside Mary Ann Lee's name, is another payee of Mary's.
    r = run("statement_2024_506.pdf", "Payee: Mary Ann Lee\nCopy: Ann Lee")
    assert r.kind == "two_payees" and "Ann Lee (contact 503)" in (r.reason or "")
    # Ann Leeds on Ann Lee's statement: a leak, caught.
    r = run("statement_2024_503.pdf", "Payee: Ann Lee\nAnn Leeds")
    assert r.kind == "two_payees" and "Ann Leeds (contact 504)" in (r.reason or "")


def test_the_own_name_never_hides_a_longer_other_name() -> None:
    lee_smith = Payee(507, "Ann Lee Smith")
    contacts = {503: LEE, 507: lee_smith}
    r = resolve("statement_x_503.pdf", "Payee: Ann Lee Smith", PATTERN, contacts, {503, 507})
    # The text names Ann Lee Smith: Ann Lee's own name inside it does not make it hers.
    assert r.kind == "two_payees"
    assert "Ann Lee Smith (contact 507)" in (r.reason or "")


# --- reading the PDF -------------------------------------------------------------------------


def make_pdf(path: Path, *pages: str) -> Path:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    return path


def test_pdf_text_reads_every_page(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "s.pdf", "Royalty statement\nPayee: Zoë Brontë", "Contact ID: 505")
    text = pdf_text(path)
    assert "Zoë Brontë" in text and "Contact ID: 505" in text
    assert run("statement_2024_505.pdf", text).kind == "resolved"


def test_pdf_without_text_is_no_text(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50, style="F")  # a drawing, no text: as a scan would be
    pdf.output(str(tmp_path / "scan.pdf"))
    text = pdf_text(tmp_path / "scan.pdf")
    assert run("statement_2024_501.pdf", text).kind == "no_text"


def test_pdf_text_refuses_a_file_that_is_not_a_pdf(tmp_path: Path) -> None:
    path = tmp_path / "statement_2024_501.pdf"
    path.write_bytes(b"PK\x03\x04 a zip, not a PDF")
    with pytest.raises(StatementUnreadable, match=re.escape("statement_2024_501.pdf is not a PDF")):
        pdf_text(path)


def test_pdf_text_refuses_a_broken_pdf(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    with pytest.raises(StatementUnreadable, match=re.escape("broken.pdf")) as info:
        pdf_text(path)
    assert isinstance(info.value, ConsonanceSftpError)


def test_pdf_text_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StatementUnreadable, match=re.escape("gone.pdf cannot be read")):
        pdf_text(tmp_path / "gone.pdf")


def test_pdf_text_refuses_a_password_protected_pdf(tmp_path: Path) -> None:
    plain = make_pdf(tmp_path / "plain.pdf", "Payee: Jane Doe")
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-256")
    writer.write(tmp_path / "locked.pdf")
    with pytest.raises(StatementUnreadable, match=re.escape("locked.pdf is encrypted")):
        pdf_text(tmp_path / "locked.pdf")


def test_pdf_text_reads_a_pdf_with_only_an_owner_password(tmp_path: Path) -> None:
    plain = make_pdf(tmp_path / "plain.pdf", "Payee: Jane Doe")
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    writer.write(tmp_path / "restricted.pdf")
    assert "Jane Doe" in pdf_text(tmp_path / "restricted.pdf")


def test_wrapped_lines_in_a_real_pdf(tmp_path: Path) -> None:
    # A narrow column wraps the names and the co-authored contract name over several lines,
    # as a statement layout does; pypdf gives the line breaks back inside them.
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    pdf.add_page()
    pdf.multi_cell(
        28, 6, "Payee: Jane Doe. Contract: Jane Doe & Richard Roe: The Shared Garden. Due 10.00"
    )
    pdf.output(str(tmp_path / "s.pdf"))
    text = pdf_text(tmp_path / "s.pdf")
    assert "Richard\nRoe" in text or "Shared\nGarden" in text  # really wrapped
    assert run("statement_2024_501.pdf", text).kind == "resolved"
    assert run("statement_2024_502.pdf", text).kind == "two_payees"  # Jane Doe, outside
