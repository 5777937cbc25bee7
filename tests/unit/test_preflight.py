"""Preflight per asset kind: real files made at run time (pypdf, Pillow, zipfile, wave, MP3 frames).

The builders here are imported by the packaging, derivatives and spec-sheet tests too.
"""

from __future__ import annotations

import os
import shutil
import struct
import wave
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfWriter

from consonance_sftp.config.profiles import preset
from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.preflight import (
    PreflightItem,
    Rules,
    check_package,
    preflight,
    sniff,
)
from consonance_sftp.models import AssetKind

# --- builders ------------------------------------------------------------------------------


def make_pdf(path: Path, pages: int = 4, *, pdfx: str | None = None) -> Path:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=432, height=648)  # 6 x 9 in
    if pdfx:
        writer.add_metadata({"/GTS_PDFXVersion": pdfx})
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def make_image(
    path: Path, size: tuple[int, int] = (1000, 1500), mode: str = "RGB", fmt: str = "JPEG"
) -> Path:
    colour: int | tuple[int, ...] = 128 if mode == "L" else (200,) * len(mode)
    Image.new(mode, size, colour).save(path, fmt)
    return path


NAV = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops" '
    'xml:lang="en" lang="en"><head><title>Contents</title></head><body>'
    '<nav epub:type="toc"><ol><li><a href="c1.xhtml">One</a></li></ol></nav></body></html>'
)
CHAPTER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en"><head>'
    "<title>One</title></head><body><p>Chapter one.</p></body></html>"
)


def make_epub(
    path: Path,
    *,
    mimetype_first: bool = True,
    compress_mimetype: bool = False,
    with_nav: bool = True,
) -> Path:
    """A minimal EPUB 3 that EPUBCheck accepts (``with_nav=False``: one it rejects)."""
    container = (
        '<?xml version="1.0"?><container version="1.0" '
        'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
        '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
        "</rootfiles></container>"
    )
    nav_item = (
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
        if with_nav
        else ""
    )
    opf = (
        '<?xml version="1.0" encoding="UTF-8"?><package xmlns="http://www.idpf.org/2007/opf" '
        'version="3.0" unique-identifier="id" xml:lang="en">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        '<dc:identifier id="id">urn:isbn:9780000000002</dc:identifier><dc:title>T</dc:title>'
        '<dc:language>en</dc:language><meta property="dcterms:modified">2026-01-01T00:00:00Z'
        f"</meta></metadata><manifest>{nav_item}"
        '<item id="c1" href="c1.xhtml" media-type="application/xhtml+xml"/></manifest>'
        '<spine><itemref idref="c1"/></spine></package>'
    )
    entries = [
        ("META-INF/container.xml", container),
        ("OEBPS/content.opf", opf),
        ("OEBPS/nav.xhtml", NAV),
        ("OEBPS/c1.xhtml", CHAPTER),
    ]
    mime = zipfile.ZipInfo("mimetype")
    mime.compress_type = zipfile.ZIP_DEFLATED if compress_mimetype else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        if mimetype_first:
            archive.writestr(mime, "application/epub+zip")
        for name, text in entries:
            archive.writestr(name, text)
        if not mimetype_first:
            archive.writestr(mime, "application/epub+zip")
    return path


_MP3_KBPS = {32: 1, 64: 5, 128: 9, 192: 11, 256: 13, 320: 14}


def make_mp3(
    path: Path, kbps: int = 128, *, channels: int = 2, frames: int = 300, rate: int = 44100
) -> Path:
    """MPEG-1 Layer III frames with silent payloads: enough for any header-level reader."""
    rate_index = {44100: 0, 48000: 1, 32000: 2}[rate]
    mode = 0b11 if channels == 1 else 0b00
    header = bytes([0xFF, 0xFB, (_MP3_KBPS[kbps] << 4) | (rate_index << 2), mode << 6])
    length = 144 * kbps * 1000 // rate
    frame = header + bytes(length - 4)
    path.write_bytes(frame * frames)
    return path


def make_wav(path: Path, *, rate: int = 44100, seconds: float = 0.1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(bytes(int(rate * seconds) * 2 * width))
    return path


def make_big_wav(path: Path, data_bytes: int) -> Path:
    """A WAV header over a sparse data chunk: GBs on paper, nothing on disk."""
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 2, 44100, 44100 * 4, 4, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    with path.open("wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + data_bytes)
    return path


# --- the rejections the issue names --------------------------------------------------------


def test_a_png_named_pdf_is_rejected(tmp_path: Path) -> None:
    fake = make_image(tmp_path / "9780000000002_interior.pdf", fmt="PNG")
    report = preflight(fake, AssetKind.INTERIOR_PDF)
    assert not report.ok
    assert report.content_type == "png"
    assert any("named .pdf but its content is PNG" in p for p in report.problems)
    assert any("must be PDF" in p for p in report.problems)


def test_a_truncated_pdf_is_rejected(tmp_path: Path) -> None:
    good = make_pdf(tmp_path / "good.pdf", pages=8)
    assert preflight(good, AssetKind.INTERIOR_PDF).ok
    cut = tmp_path / "cut.pdf"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    report = preflight(cut, AssetKind.INTERIOR_PDF)
    assert report.problems == ("truncated PDF: no '%%EOF' marker at the end of the file",)


def test_a_cover_below_the_minimum_size_is_rejected(tmp_path: Path) -> None:
    rules = preset("google_play_books", values={"collection": "c"}).preflight
    small = make_image(tmp_path / "small.jpg", size=(400, 600))
    report = preflight(small, AssetKind.COVER_IMAGE, rules)
    assert report.problems == (
        "400x600 px is below the minimum: the short side must be at least 640 px",
    )
    big_enough = make_image(tmp_path / "ok.jpg", size=(640, 960))
    assert preflight(big_enough, AssetKind.COVER_IMAGE, rules).ok


def test_an_epub_without_mimetype_first_is_rejected(tmp_path: Path) -> None:
    bad = make_epub(tmp_path / "bad.epub", mimetype_first=False)
    report = preflight(bad, AssetKind.EPUB, Rules(epubcheck="off"))
    assert len(report.problems) == 1
    assert "first entry is 'META-INF/container.xml', not 'mimetype'" in report.problems[0]


@pytest.mark.parametrize("kind", list(AssetKind))
def test_a_zero_byte_file_is_rejected_for_every_kind(tmp_path: Path, kind: AssetKind) -> None:
    empty = tmp_path / "empty.bin"
    empty.touch()
    report = preflight(empty, kind)
    assert report.problems == ("zero-byte file",)


def test_check_package_lists_every_reason_and_raises(tmp_path: Path) -> None:
    ok_pdf = make_pdf(tmp_path / "interior.pdf", pages=4)
    empty = tmp_path / "cover.pdf"
    empty.touch()
    png = make_image(tmp_path / "spec.pdf", fmt="PNG")
    items = [
        PreflightItem(path=ok_pdf, kind=AssetKind.INTERIOR_PDF, expected_pages=4),
        PreflightItem(path=empty, kind=AssetKind.COVER_PDF),
        PreflightItem(path=png, kind=AssetKind.SPEC_SHEET),
    ]
    with pytest.raises(ValidationFailed) as caught:
        check_package(items)
    assert "2 of 3 files" in caught.value.message
    assert caught.value.reasons[0] == "cover.pdf (cover_pdf): zero-byte file"
    assert any(r.startswith("spec.pdf (spec_sheet): named .pdf") for r in caught.value.reasons)
    # Without the bad files the package passes and the reports carry what was checked.
    reports = check_package(items[:1])
    assert "4 pages" in reports[0].notes


# --- PDF -----------------------------------------------------------------------------------


def test_pdf_x_is_required_only_where_the_profile_says(tmp_path: Path) -> None:
    printer = preset("print_on_demand").preflight
    plain = make_pdf(tmp_path / "plain.pdf")
    assert preflight(plain, AssetKind.INTERIOR_PDF).ok
    assert preflight(plain, AssetKind.INTERIOR_PDF, printer).problems == (
        "no PDF/X declaration (GTS_PDFXVersion); the partner requires PDF/X",
    )
    x1a = make_pdf(tmp_path / "x1a.pdf", pdfx="PDF/X-1a:2001")
    report = preflight(x1a, AssetKind.COVER_PDF, printer)
    assert report.ok and "PDF/X: PDF/X-1a:2001" in report.notes
    x4 = make_pdf(tmp_path / "x4.pdf", pdfx="PDF/X-4")
    problems = preflight(x4, AssetKind.COVER_PDF, printer).problems
    assert problems and "'PDF/X-4' is not accepted" in problems[0]


def test_page_count_is_checked_against_the_extent(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "i.pdf", pages=6)
    assert preflight(pdf, AssetKind.INTERIOR_PDF, expected_pages=6).ok
    assert preflight(pdf, AssetKind.INTERIOR_PDF, expected_pages=8).problems == (
        "6 pages, but the product's extent is 8",
    )
    assert preflight(pdf, AssetKind.INTERIOR_PDF, Rules(page_count="at_least"), expected_pages=4).ok
    assert preflight(pdf, AssetKind.INTERIOR_PDF, Rules(min_pages=10)).problems == (
        "6 pages, fewer than the 10 the partner requires",
    )
    # The cover's page count is not the book's extent.
    assert preflight(pdf, AssetKind.COVER_PDF, expected_pages=300).ok


def test_a_pdf_with_garbage_after_the_header_is_unparseable(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.7\n" + os.urandom(2000) + b"\n%%EOF\n")
    report = preflight(junk, AssetKind.INTERIOR_PDF)
    assert len(report.problems) == 1 and "cannot be parsed" in report.problems[0]


# --- images --------------------------------------------------------------------------------


def test_image_format_mode_and_maximum(tmp_path: Path) -> None:
    titleleaf = preset("titleleaf").preflight
    cmyk = make_image(tmp_path / "c.jpg", mode="CMYK")
    assert preflight(cmyk, AssetKind.COVER_IMAGE).ok
    assert preflight(cmyk, AssetKind.COVER_IMAGE, titleleaf).problems == (
        "colour mode CMYK is not accepted; expected RGB",
    )
    png = make_image(tmp_path / "c.png", fmt="PNG")
    assert preflight(png, AssetKind.COVER_IMAGE, titleleaf).problems == (
        "image format PNG is not accepted; expected JPEG",
    )
    huge = make_image(tmp_path / "h.png", size=(100, 8000), mode="L", fmt="PNG")
    google = preset("google_play_books", values={"collection": "c"}).preflight
    problems = preflight(huge, AssetKind.COVER_IMAGE, google).problems
    assert "100x8000 px is above the maximum of 7200 px on the long side" in problems


def test_a_truncated_jpeg_is_rejected(tmp_path: Path) -> None:
    jpg = make_image(tmp_path / "c.jpg", size=(300, 300))
    data = jpg.read_bytes()
    jpg.write_bytes(data[:-200])
    assert (
        "truncated JPEG: no end-of-image marker" in preflight(jpg, AssetKind.COVER_IMAGE).problems
    )


# --- EPUB ----------------------------------------------------------------------------------


def test_a_good_epub_passes_and_epubcheck_is_reported_skipped_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no epubcheck here
    epub = make_epub(tmp_path / "9780000000002.epub")
    report = preflight(epub, AssetKind.EPUB)
    assert report.ok, report.problems
    assert report.skipped == ("EPUBCheck: skipped, 'epubcheck' is not on PATH",)
    required = preflight(epub, AssetKind.EPUB, Rules(epubcheck="required"))
    assert required.problems == (
        "EPUBCheck is required by the profile but 'epubcheck' is not installed",
    )


def test_epub_container_faults(tmp_path: Path) -> None:
    off = Rules(epubcheck="off")
    squeezed = make_epub(tmp_path / "z.epub", compress_mimetype=True)
    assert preflight(squeezed, AssetKind.EPUB, off).problems == (
        "'mimetype' is compressed; it must be stored uncompressed",
    )
    broken = tmp_path / "b.epub"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
        archive.writestr(
            "META-INF/container.xml",
            '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="OPS/book.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
    assert preflight(broken, AssetKind.EPUB, off).problems == (
        "META-INF/container.xml points at 'OPS/book.opf', which is not in the EPUB",
    )
    pdf = make_pdf(tmp_path / "book.epub")
    assert preflight(pdf, AssetKind.EPUB).problems[0] == (
        "named .epub but its content is PDF, not ZIP"
    )


@pytest.mark.slow
def test_epubcheck_runs_when_installed(tmp_path: Path) -> None:
    """Real EPUBCheck (Debian's ``epubcheck``, a jar run through java); ~8 s per file."""
    if shutil.which("epubcheck") is None:
        pytest.skip("epubcheck is not installed (scripts/system-deps.sh installs it)")
    good = preflight(make_epub(tmp_path / "good.epub"), AssetKind.EPUB, Rules(epubcheck="required"))
    assert good.ok, good.problems
    assert "EPUBCheck: no errors" in good.notes
    bad = preflight(make_epub(tmp_path / "bad.epub", with_nav=False), AssetKind.EPUB)
    assert bad.problems
    assert all(p.startswith("EPUBCheck: ERROR(") for p in bad.problems), bad.problems
    assert any('"nav"' in p for p in bad.problems)


# --- audio ---------------------------------------------------------------------------------


def test_audio_bitrate_and_sample_rate_per_profile(tmp_path: Path) -> None:
    google = preset("google_play_books", values={"collection": "c"}).preflight
    mono = make_mp3(tmp_path / "mono.mp3", 128, channels=1)
    stereo = make_mp3(tmp_path / "stereo.mp3", 128, channels=2)
    assert preflight(mono, AssetKind.AUDIO, google).ok
    assert preflight(stereo, AssetKind.AUDIO, google).problems == (
        "stereo bitrate 128 kbps is below the required 256 kbps",
    )
    assert preflight(make_mp3(tmp_path / "s320.mp3", 320), AssetKind.AUDIO, google).ok
    low_rate = make_wav(tmp_path / "low.wav", rate=22050)
    assert preflight(low_rate, AssetKind.AUDIO, google).problems == (
        "sample rate 22050 Hz is below the required 44100 Hz",
    )
    assert preflight(make_wav(tmp_path / "ok.wav"), AssetKind.AUDIO, google).ok
    eight_bit = make_wav(tmp_path / "8bit.wav", width=1)
    assert preflight(eight_bit, AssetKind.AUDIO, google).problems == (
        "bit depth 8 is below the required 16 bits",
    )
    mp3_only = Rules(audio_formats=("mp3",))
    assert preflight(low_rate, AssetKind.AUDIO, mp3_only).problems == (
        "audio format wav is not accepted; expected mp3",
    )


def test_audio_checks_read_headers_only(tmp_path: Path) -> None:
    import tracemalloc

    big = make_big_wav(tmp_path / "master.wav", 3 * 1024**3)
    tracemalloc.start()
    report = preflight(big, AssetKind.AUDIO)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.ok, report.problems
    assert peak < 8 * 1024 * 1024


def test_sniff_tells_formats_apart() -> None:
    assert sniff(b"%PDF-1.4") == "pdf"
    assert sniff(b"\x89PNG\r\n\x1a\n") == "png"
    assert sniff(b"\xff\xfb\x90\x00") == "mp3"
    assert sniff(b"\xff\xf1\x50\x80") == "aac"
    assert sniff(b"ID3\x04") == "mp3"
    assert sniff(b"\x00\x00\x00\x20ftypM4A ") == "mp4"
    assert sniff(b"PK\x03\x04") == "zip"
    assert sniff("Ein schönes Buch".encode()) == "text"
    assert sniff(b"\x00\x01\x02\x03") == "unknown"


def test_text_assets(tmp_path: Path) -> None:
    copy = tmp_path / "copy.txt"
    copy.write_text("A gripping tale.\n", encoding="utf-8")
    assert preflight(copy, AssetKind.JACKET_COPY).ok
    spec = tmp_path / "spec.json"
    spec.write_text('{"trim": ', encoding="utf-8")
    problems = preflight(spec, AssetKind.SPEC_SHEET).problems
    assert len(problems) == 1 and problems[0].startswith("not valid JSON")
