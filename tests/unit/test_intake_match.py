"""The intake flow's matching rules (``flows.intake_match``): ISBNs in names, partner patterns,
manifests, kinds and the content check, each with the reason a file goes to quarantine."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from consonance_sftp.config.flows import IntakeFlow, IntakeMatching
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.flows import intake_match as m
from consonance_sftp.flows.intake import relative_path, take
from consonance_sftp.ports.consonance import AttachTarget
from consonance_sftp.ports.remote_fs import RemoteEntry

ISBN = "9781900200011"
OTHER = "9781900200028"
PATTERN = r"(?P<isbn>97[89]\d{10})/(?P<kind>[a-z_]+)/.*_v(?P<version>\d+)"


@pytest.mark.parametrize(
    ("name", "isbn"),
    [
        ("9781900200011_cover_v3.pdf", ISBN),
        ("cover-978-1-900200-01-1.pdf", ISBN),
        ("Interior 0306406152 final.pdf", "9780306406157"),  # ISBN-10, converted
        ("9781900200011 and again 9781900200011.pdf", ISBN),  # the same ISBN twice is fine
    ],
)
def test_a_bare_isbn_anywhere_in_the_name_matches(name: str, isbn: str) -> None:
    found = m.find_isbn(name)
    assert isinstance(found, m.Claim)
    assert (found.rule, found.isbn) == ("isbn", isbn)


def test_two_different_isbns_are_ambiguous() -> None:
    found = m.find_isbn(f"{ISBN}_{OTHER}_cover.pdf")
    assert isinstance(found, m.Refusal)
    assert found.reason.startswith("ambiguous:") and ISBN in found.reason and OTHER in found.reason


def test_an_isbn_10_and_its_isbn_13_are_one_isbn() -> None:
    found = m.find_isbn("0306406152_9780306406157.pdf")
    assert isinstance(found, m.Claim) and found.isbn == "9780306406157"


def test_a_bad_checksum_is_its_own_reason() -> None:
    found = m.find_isbn("9781900200012_cover.pdf")
    assert isinstance(found, m.Refusal)
    assert found.reason.startswith("bad checksum:") and "9781900200012" in found.reason


@pytest.mark.parametrize(
    "name",
    ["cover_final.pdf", "20261203115500_cover.pdf", "x9781900200011.pdf", "97819002000111.pdf"],
)
def test_no_isbn_is_unmatched(name: str) -> None:
    # A longer run of digits (a timestamp), or one glued to letters, is no ISBN.
    found = m.find_isbn(name)
    assert isinstance(found, m.Unmatched) and found.rule == "isbn"


def test_a_pattern_matches_folder_names_and_reads_its_groups() -> None:
    found = m.match_pattern(PATTERN, f"{ISBN}/interior/book_v2.pdf")
    assert found == m.Claim(
        rule="pattern",
        isbn=ISBN,
        kind="interior",
        version="2",
        evidence=f"{ISBN}/interior/book_v2",
    )


def test_a_pattern_names_a_todo_and_the_partners_own_kind_words() -> None:
    pattern = r"(?P<isbn>\d{13})-(?P<kind>\w+?)-(?P<todo>\d+)\."
    found = m.match_pattern(pattern, f"{ISBN}-umschlag-50007.pdf", {"umschlag": "cover"})
    assert isinstance(found, m.Claim)
    assert (found.kind, found.todo) == ("cover", "50007")


def test_a_pattern_that_does_not_match_lets_the_next_rule_try() -> None:
    found = m.match_pattern(PATTERN, f"{ISBN}_cover.pdf")
    assert isinstance(found, m.Unmatched) and found.rule == "pattern"


def test_a_pattern_with_a_bad_checksum_or_an_unknown_kind_is_refused() -> None:
    bad = m.match_pattern(PATTERN, "9781900200012/interior/book_v2.pdf")
    assert isinstance(bad, m.Refusal) and bad.reason.startswith("bad checksum:")
    odd = m.match_pattern(PATTERN, f"{ISBN}/poster/book_v2.pdf")
    assert isinstance(odd, m.Refusal) and odd.reason.startswith("unknown kind:")


def test_a_json_manifest_names_isbn_kind_version_and_todo() -> None:
    data = json.dumps({"isbn": "978-1-900200-01-1", "kind": "Index", "version": "4"}).encode()
    found = m.parse_manifest(data, "proofs.pdf.manifest.json", "proofs.pdf")
    assert found == m.Claim(
        rule="manifest", isbn=ISBN, kind="index", version="4", evidence="proofs.pdf.manifest.json"
    )


def test_a_csv_manifest_picks_the_row_of_its_file() -> None:
    data = (
        "file,isbn,kind,version,todo\r\n"
        f"a.pdf,{OTHER},cover,1,\r\n"
        f"b.pdf,{ISBN},jacket copy,2,Marketing copy approved\r\n"
    ).encode()
    found = m.parse_manifest(data, "b.pdf.manifest.csv", "b.pdf")
    assert isinstance(found, m.Claim)
    assert (found.isbn, found.kind, found.version, found.todo) == (
        ISBN,
        "jacket_copy",
        "2",
        "Marketing copy approved",
    )


@pytest.mark.parametrize(
    ("data", "start"),
    [
        (b"{not json", "bad manifest:"),
        (b'{"kind": "cover"}', "bad manifest:"),
        (b'{"isbn": "9781900200012"}', "bad checksum:"),
        (b'{"isbn": "9781900200011", "kind": "poster"}', "unknown kind:"),
        (b"\xff\xfe\x00garbage", "bad manifest:"),
    ],
)
def test_a_manifest_that_cannot_be_used_is_refused(data: bytes, start: str) -> None:
    found = m.parse_manifest(data, "x.pdf.manifest.json", "x.pdf")
    assert isinstance(found, m.Refusal) and found.reason.startswith(start), found


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (f"{ISBN}_cover_v3.pdf", "cover"),
        (f"{ISBN}_jacket-copy.docx", "jacket_copy"),
        (f"{ISBN}/index/final.pdf", "index"),
        (f"{ISBN}_CVR.pdf", "cover"),
        (f"{ISBN}.epub", "epub"),
        (f"{ISBN}_ch1.wav", "audio"),
        (f"{ISBN}_photo.jpg", "image"),
        (f"{ISBN}.pdf", None),
    ],
)
def test_the_kind_comes_from_a_word_of_the_path_then_the_extension(
    path: str, kind: str | None
) -> None:
    claim = m.Claim(rule="isbn", isbn=ISBN)
    assert m.decide_kind(claim, path, None) == kind


def test_the_rules_kind_wins_and_the_flow_default_comes_last() -> None:
    assert m.decide_kind(m.Claim(rule="pattern", isbn=ISBN, kind="index"), "x_cover.pdf", None) == (
        "index"
    )
    assert m.decide_kind(m.Claim(rule="isbn", isbn=ISBN), f"{ISBN}.pdf", "index") == "index"


def test_a_cover_pdf_that_is_a_png_does_not_match_its_kind() -> None:
    problem = m.content_problem("cover", "png", "cover.pdf")
    assert problem is not None and problem.startswith("content does not match the kind:")
    assert "PNG" in problem
    assert m.content_problem("cover", "png", "cover.png") is None  # a cover image is fine
    wrong = m.content_problem("interior", "jpeg", "interior.jpg")
    assert wrong is not None and "PDF" in wrong
    assert m.content_problem("interior", "pdf", "interior.pdf") is None


def test_where_each_kind_goes_in_consonance() -> None:
    assert m.attach_target("interior", "pdf") == (AttachTarget.PRODUCTION_FILE, "INTERIOR")
    assert m.attach_target("cover", "pdf") == (AttachTarget.PRODUCTION_FILE, "COVER")
    assert m.attach_target("cover", "jpeg") == (AttachTarget.SUPPORTING_RESOURCE, "FRONT_COVER")
    assert m.attach_target("epub", "zip") == (AttachTarget.PRODUCTION_FILE, "EPUB")


def test_the_unmatched_reason_says_what_each_rule_saw() -> None:
    reason = m.unmatched_reason(
        [m.Unmatched("manifest", "no manifest beside it"), m.Unmatched("isbn", "no ISBN")]
    )
    assert reason == "unmatched: manifest: no manifest beside it; isbn: no ISBN"


def test_the_config_checks_a_pattern() -> None:
    with pytest.raises(ValidationError, match="needs a named group"):
        IntakeMatching(pattern=r"(?P<kind>\w+)")
    with pytest.raises(ValidationError, match="unknown named groups"):
        IntakeMatching(pattern=r"(?P<isbn>\d+)(?P<colour>\w+)")
    with pytest.raises(ValidationError, match="no `pattern` is set"):
        IntakeMatching(rules=["pattern"])
    assert IntakeMatching(pattern=PATTERN).pattern == PATTERN


def test_manifests_are_left_for_the_file_they_describe() -> None:
    flow = IntakeFlow.model_validate({"kind": "intake", "partners": ["designer"], "match": {}})
    entries = [
        (RemoteEntry(path=f"/in/{n}", name=n, size=1, mtime=1.0, is_dir=False), "file")
        for n in ("a.pdf", "a.pdf.manifest.json", "b.pdf.manifest.csv")
    ]
    taking = take(flow, entries, TransferSettings())
    assert [e.name for e in taking.candidates] == ["a.pdf"]
    assert sorted(i.entry.name for i in taking.ignored) == [
        "a.pdf.manifest.json",
        "b.pdf.manifest.csv",
    ]


def test_the_pattern_sees_the_path_below_the_flows_folder() -> None:
    assert relative_path("/srv/in/9781900200011/cover/x.pdf", "/srv/in") == (
        "9781900200011/cover/x.pdf"
    )
    assert relative_path("/elsewhere/x.pdf", "/srv/in") == "x.pdf"
