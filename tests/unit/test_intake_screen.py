"""Screening received files: the name rules (each dangerous class with its own code), the
content rules (empty, too large, archives) and zip archives checked and unpacked with the
stdlib's ``zipfile`` (zip-slip, links, encryption, bombs), and an unreachable clamd
(tests/integration/test_clamd.py scans with a real one).

Every archive is built by the test (no binary committed)."""

from __future__ import annotations

import asyncio
import gzip
import io
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from consonance_sftp.adapters.clamd import ClamdScanner, MalwareScanFailed
from consonance_sftp.config.flows import IntakeFlow, IntakeScreening, SalesInFlow
from consonance_sftp.flows.intake_screen import (
    ArchiveRefused,
    archive_format,
    check_archive,
    extract_archive,
    screen_file,
)
from consonance_sftp.formats.names import name_refusal, safe_local_name

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("..", "name-traversal"),
        ("..\\..\\windows\\win.ini", "name-traversal"),
        ("\\etc\\passwd", "name-absolute"),
        ("C:\\boot.ini", "name-absolute"),
        ("C:evil.pdf", "name-absolute"),
        ("a\\b.pdf", "name-separator"),
        ("bell\x07.pdf", "name-control"),
        ("nl\nname.pdf", "name-control"),
        ("del\x7f.pdf", "name-control"),
        ("rtl\u202efdp.exe", "name-control"),
        ("zero\u200bwidth.pdf", "name-control"),
        ("CON", "name-device"),
        ("con.pdf", "name-device"),
        ("PRN.txt", "name-device"),
        ("Aux.tar.gz", "name-device"),
        ("NUL", "name-device"),
        ("COM1.pdf", "name-device"),
        ("lpt9", "name-device"),
        ("COM\u00b2.txt", "name-device"),
        ("CON .pdf", "name-device"),
        ("x" * 201, "name-too-long"),
        ("é" * 128 + ".pdf", "name-too-long"),  # 260 bytes, 132 characters
        ("x" * 300, "name-too-long"),
        ("p\u0430ypal.pdf", "name-mixed-scripts"),  # a Cyrillic "а"
        ("\u0441over.pdf", "name-mixed-scripts"),  # a Cyrillic "с"
        ("c\u03bfver.pdf", "name-mixed-scripts"),  # a Greek "ο"
        ("\uff43\uff4f\uff56\uff45\uff52.pdf", "name-lookalike"),  # fullwidth "cover"
        ("\ufb01nal.pdf", "name-lookalike"),  # the ligature "ﬁ"
        ("\U0001d41c\U0001d428\U0001d42f\U0001d41e\U0001d42b.pdf", "name-lookalike"),  # bold
        ("art\u2215..\u2215etc.pdf", "name-lookalike"),  # division slashes
        ("cover\uff0epdf", "name-lookalike"),  # a fullwidth full stop
        ("report.pdf.", "name-trailing"),
        ("report.pdf ", "name-trailing"),
        ("report.pdf\u00a0", "name-trailing"),
        ("report...", "name-trailing"),
        (" report.pdf", "name-whitespace"),
        ("-rf.pdf", "name-option"),
        (".htaccess", "name-hidden"),
        ("", "name-empty"),
        ("b\udce9.pdf", "name-not-utf8"),
    ],
)
def test_each_dangerous_name_class_has_its_own_code(name: str, code: str) -> None:
    refusal = name_refusal(name)
    assert refusal is not None and refusal.code == code, refusal
    assert refusal.detail
    safe = safe_local_name(name)
    assert name_refusal(safe) is None, safe


@pytest.mark.parametrize(
    "name",
    [
        "CONTRACT.pdf",
        "Console notes.pdf",
        "COM10.pdf",
        "icon.png",
        "x" * 200,
        "Ελληνικά.pdf",
        "Москва-2026.pdf",
        "Москва cover.pdf",
        "Café crème.pdf",
        "Book ½ (draft).pdf",
        "1ª edição, 5 µm.pdf",
        "9781900200011_cover_v3.pdf",
    ],
)
def test_ordinary_names_pass(name: str) -> None:
    assert name_refusal(name) is None


# --- content -------------------------------------------------------------------------------


def _zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


def _info(name: str, *, mode: int = 0o100644, flags: int = 0) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    info.flag_bits |= flags
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _screen(path: Path, **settings: object) -> str | None:
    config = IntakeScreening.model_validate(settings)
    refusal = screen_file(path, path.name, path.stat().st_size, config)
    return None if refusal is None else refusal.reason_code


ZIPS = {
    "absolute.zip": ([("/etc/cron.d/x", b"x")], "zip-slip"),
    "dotdot.zip": ([("../../outside.txt", b"x")], "zip-slip"),
    "inner-dotdot.zip": ([("a/../../outside.txt", b"x")], "zip-slip"),
    "drive.zip": ([("C:/Windows/x.dll", b"x")], "zip-slip"),
    "backslash.zip": ([("..\\..\\x.txt", b"x")], "zip-slip"),
    "symlink.zip": ([(_info("link", mode=0o120777), b"/etc/passwd")], "archive-symlink"),
    "device.zip": ([("art/CON.pdf", b"x")], "archive-entry-name"),
    "control.zip": ([("bad\x1b[2Jname.pdf", b"x")], "archive-entry-name"),
    "lookalike.zip": ([("p\u0430ypal.pdf", b"x")], "archive-entry-name"),
    "duplicate.zip": ([("a.pdf", b"1"), ("a.pdf", b"2")], "archive-duplicate-entry"),
    "bomb.zip": ([("zeros.bin", bytes(30 * MIB))], "archive-ratio"),
    "many.zip": ([(f"f{i}.txt", b"x") for i in range(12)], "archive-too-many-entries"),
}


@pytest.mark.filterwarnings("ignore:Duplicate name")  # duplicate.zip, on purpose
@pytest.mark.parametrize("name", sorted(ZIPS))
def test_a_hostile_zip_is_refused_as_a_whole_with_its_own_code(tmp_path: Path, name: str) -> None:
    entries, code = ZIPS[name]
    path = _zip(tmp_path / name, entries)
    assert _screen(path, allow_archives=True, archive_max_entries=10) == code
    settings = IntakeScreening(allow_archives=True, archive_max_entries=10)
    with pytest.raises(ArchiveRefused) as caught:
        extract_archive(path, tmp_path / "unpacked", settings)
    assert caught.value.refusal.reason_code == code
    unpacked = tmp_path / "unpacked"
    assert not unpacked.exists() or list(unpacked.iterdir()) == []  # nothing of it left
    assert not (tmp_path.parent / "outside.txt").exists()


def test_an_encrypted_entry_refuses_the_archive(tmp_path: Path) -> None:
    """zipfile cannot write encrypted entries: the flag (bit 0 of the general purpose flags)
    is set by hand in the local header and the central directory, as an encrypting tool
    would (the bytes themselves need not be encrypted for the check)."""
    path = _zip(tmp_path / "secret.zip", [("secret.pdf", b"%PDF-1.7 secret")])
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"PK\x03\x04") + 6] |= 0x1
    raw[raw.index(b"PK\x01\x02") + 8] |= 0x1
    path.write_bytes(bytes(raw))
    assert _screen(path, allow_archives=True) == "archive-encrypted"
    with pytest.raises(ArchiveRefused) as caught:
        extract_archive(path, tmp_path / "out", IntakeScreening(allow_archives=True))
    assert caught.value.refusal.reason_code == "archive-encrypted"


def test_empty_oversize_and_other_archive_formats(tmp_path: Path) -> None:
    empty = tmp_path / "cover.pdf"
    empty.write_bytes(b"")
    assert _screen(empty) == "zero-bytes"
    big = tmp_path / "interior.pdf"
    big.write_bytes(b"%PDF-1.7\n" + bytes(5000))
    assert _screen(big, max_file_size=5000) == "too-large"
    assert _screen(big, max_file_size=6000) is None
    gz = tmp_path / "sales.csv.gz"
    gz.write_bytes(gzip.compress(b"isbn,units\n"))
    assert _screen(gz, allow_archives=True) == "archive-format"
    tarred = io.BytesIO()
    with tarfile.open(fileobj=tarred, mode="w") as tf:
        data = b"hello"
        member = tarfile.TarInfo("a.txt")
        member.size = len(data)
        tf.addfile(member, io.BytesIO(data))
    tar = tmp_path / "files.pdf"  # named as a PDF: the content decides
    tar.write_bytes(tarred.getvalue())
    assert _screen(tar) == "archive-format"
    seven = tmp_path / "a.7z"
    seven.write_bytes(b"7z\xbc\xaf\x27\x1c" + bytes(100))
    assert _screen(seven) == "archive-format"
    rar = tmp_path / "a.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x01\x00" + bytes(100))
    assert _screen(rar) == "archive-format"


def test_a_zip_is_refused_unless_the_flow_accepts_archives(tmp_path: Path) -> None:
    path = _zip(tmp_path / "proofs.pdf", [("interior.pdf", b"%PDF-1.7 x")])  # a zip named .pdf
    assert _screen(path) == "archive-not-accepted"
    assert _screen(path, allow_archives=True) is None
    # Zip-based documents are documents, not archives, but their structure is still checked.
    docx = _zip(tmp_path / "copy.docx", [("word/document.xml", b"<w/>")])
    assert _screen(docx) is None
    slip = _zip(tmp_path / "book.epub", [("../../x.xhtml", b"<x/>")])
    assert _screen(slip) == "zip-slip"
    assert archive_format(b"PK\x03\x04", "x.EPUB") == "zip-document"
    assert archive_format(b"%PDF-1.7", "x.zip") is None


def test_real_office_documents_pass_though_their_parts_have_hidden_names(tmp_path: Path) -> None:
    """Every XLSX and DOCX holds ``_rels/.rels``: a document's parts are never unpacked, so
    the hidden-name rule is not theirs (a sales report in xlsx was quarantined for it)."""
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["ISBN", "Units"])
    xlsx = tmp_path / "KDP_Royalties_2026-10.xlsx"
    book.save(xlsx)
    assert "_rels/.rels" in zipfile.ZipFile(xlsx).namelist()
    assert _screen(xlsx) is None
    docx = _zip(tmp_path / "copy.docx", [("_rels/.rels", b"<R/>"), ("word/document.xml", b"<w/>")])
    assert _screen(docx) is None
    # The same part in a zip archive to unpack is still a hidden file, and refused.
    archive = _zip(tmp_path / "files.zip", [("_rels/.rels", b"<R/>")])
    assert _screen(archive, allow_archives=True) == "archive-entry-name"
    # And a document's part that would escape its folder is refused all the same.
    slip = _zip(tmp_path / "evil.xlsx", [("_rels/.rels", b"<R/>"), ("../../x.xml", b"<x/>")])
    assert _screen(slip) == "zip-slip"


def test_limits_on_total_size_and_ratio_are_the_flows(tmp_path: Path) -> None:
    import os

    path = _zip(
        tmp_path / "big.zip", [("a.bin", os.urandom(3 * MIB)), ("b.bin", os.urandom(3 * MIB))]
    )
    assert _screen(path, allow_archives=True, archive_max_total_size=5 * MIB) == (
        "archive-too-large"
    )
    assert _screen(path, allow_archives=True) is None
    bomb = _zip(tmp_path / "bomb.zip", [("zeros.bin", bytes(8 * MIB))])
    assert _screen(bomb, allow_archives=True) == "archive-ratio"
    assert _screen(bomb, allow_archives=True, archive_max_ratio=100_000) is None
    small = _zip(tmp_path / "blank.zip", [("blank.txt", bytes(100_000))])  # ratio ~ 200+
    assert _screen(small, allow_archives=True) is None  # small: not a bomb


def test_a_valid_archive_is_unpacked_into_a_fresh_folder(tmp_path: Path) -> None:
    path = _zip(
        tmp_path / "revisions.zip",
        [
            ("9781900200011/", b""),
            ("9781900200011/interior/text.pdf", b"%PDF-1.7 interior"),
            ("9781900200011_cover.pdf", b"%PDF-1.7 cover"),
        ],
    )
    root = tmp_path / "state" / "unpacked"
    settings = IntakeScreening(allow_archives=True)
    first = extract_archive(path, root, settings)
    second = extract_archive(path, root, settings)
    assert [e.name for e in first] == [
        "9781900200011/interior/text.pdf",
        "9781900200011_cover.pdf",
    ]
    import hashlib

    for entry in first:
        assert entry.path.is_relative_to(root.resolve())
        data = entry.path.read_bytes()
        assert entry.size == len(data) and entry.sha256 == hashlib.sha256(data).hexdigest()
    assert first[0].path.read_bytes() == b"%PDF-1.7 interior"
    assert first[0].path.parent.parent.parent != second[0].path.parent.parent.parent  # fresh


def test_a_lying_size_header_is_caught_while_unpacking(tmp_path: Path) -> None:
    """The central directory says 100 bytes; the entry inflates to 3 MiB. The directory check
    passes (small, no ratio to judge); unpacking counts the bytes and refuses."""
    path = _zip(tmp_path / "liar.zip", [("zeros.bin", bytes(3 * MIB))])
    raw = bytearray(path.read_bytes())
    local = raw.index(b"PK\x03\x04")
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, local + 22, 100)
    struct.pack_into("<I", raw, central + 24, 100)
    path.write_bytes(bytes(raw))
    settings = IntakeScreening(allow_archives=True)
    assert check_archive(path, settings) is None
    with pytest.raises(ArchiveRefused) as caught:
        extract_archive(path, tmp_path / "out", settings)
    assert caught.value.refusal.reason_code in ("archive-corrupt", "archive-too-large")
    assert list((tmp_path / "out").iterdir()) == []


def test_screening_settings_sit_on_every_intake_flow() -> None:
    flow = IntakeFlow.model_validate(
        {
            "kind": "intake",
            "partners": ["p"],
            "screening": {"max_file_size": 1000, "allow_archives": True},
        }
    )
    assert flow.screening.max_file_size == 1000 and flow.screening.allow_archives
    sales = SalesInFlow(kind="sales_in", partners=["p"])
    assert sales.screening.max_file_size == 4 * 1024**3 and not sales.screening.allow_archives
    assert sales.screening.clamd_socket is None


# --- clamd ---------------------------------------------------------------------------------


def test_an_unreachable_clamd_is_a_retryable_failure_not_a_pass(tmp_path: Path) -> None:
    path = tmp_path / "a.pdf"
    path.write_bytes(b"%PDF-1.7")
    scanner = ClamdScanner(tmp_path / "no-such.sock", timeout=5)
    with pytest.raises(MalwareScanFailed) as caught:
        asyncio.run(scanner.scan(str(path)))
    assert caught.value.retryable and "cannot reach clamd" in str(caught.value)


def test_a_flow_without_clamd_is_told_about_once(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from consonance_sftp.app.screening import say_unscanned

    flows = {
        "unscanned-once": IntakeFlow(kind="intake", partners=["p"]),
        "scanned-once": SalesInFlow.model_validate(
            {
                "kind": "sales_in",
                "partners": ["p"],
                "screening": {"clamd_socket": str(tmp_path)},  # there
            }
        ),
        "off-once": IntakeFlow(kind="intake", partners=["p"], enabled=False),
    }
    flows["clamd-gone-once"] = IntakeFlow.model_validate(
        {
            "kind": "intake",
            "partners": ["p"],
            "screening": {"clamd_socket": str(tmp_path / "no-clamd.sock")},
        }
    )
    caplog.set_level("WARNING")
    assert say_unscanned(flows) == ["unscanned-once", "clamd-gone-once"]
    assert say_unscanned(flows) == []  # once per process
    said = [r.getMessage() for r in caplog.records if "once:" in r.getMessage()]
    assert said == [
        "flow unscanned-once: no malware scan (screening.clamd_socket is not set); received "
        "files are still checked for size, emptiness and archives",
        f"flow clamd-gone-once: clamd's socket {tmp_path / 'no-clamd.sock'} is not there (is "
        "clamd running?); received files are quarantined unscanned until it is",
    ]


def test_the_screen_reads_the_live_config_and_falls_back_to_the_defaults() -> None:
    """Each file is screened with its flow's settings as the config says now (a reload
    applies to the next file); a flow removed meanwhile is screened with the defaults."""
    from types import SimpleNamespace

    from consonance_sftp.app.screening import intake_screen

    flows = {
        "typesetting-live": IntakeFlow.model_validate(
            {"kind": "intake", "partners": ["p"], "screening": {"max_file_size": 10}}
        )
    }
    app: Any = SimpleNamespace(settings=SimpleNamespace(flows=flows))
    screener = intake_screen(app)
    assert screener.settings_for("typesetting-live").max_file_size == 10
    flows["typesetting-live"] = IntakeFlow(kind="intake", partners=["p"])  # reloaded
    assert screener.settings_for("typesetting-live").max_file_size == 4 * 1024**3
    assert screener.settings_for("gone") == IntakeScreening()
