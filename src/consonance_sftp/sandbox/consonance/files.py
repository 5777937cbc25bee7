"""Real, tiny files for the sandbox's generated covers and production files.

A generated catalogue of 50,000 products cannot keep a file per record on disk, so the bytes are
made on request from the record id: a valid baseline JPEG (flat grey, any size, the id in a
comment segment so every cover has its own checksum), a valid PDF, a valid EPUB 3, a WAV audio
master (one second of silence, the id in an INFO chunk) and an accessibility summary (XHTML).
All open in ordinary tools; that matters because flows checksum, preflight and deliver them.

``write_wav`` writes a WAV master of any size as a stream (the silence is a sparse hole), so
tests can deliver multi-GB audio packages without holding them in memory.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def make_jpeg(width: int = 40, height: int = 60, comment: str = "") -> bytes:
    """A baseline greyscale JPEG of mid-grey.

    Mid-grey level-shifts to zero, so every 8x8 block has DC difference 0 and no AC
    coefficients: with one-symbol Huffman tables each block is the two bits ``0`` (DC size 0)
    and ``0`` (end of block).
    """
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    bits = blocks * 2
    scan = bytearray(b"\x00" * (bits // 8))
    if bits % 8:
        scan.append(0xFF >> (bits % 8))  # pad the last byte with 1 bits, as the standard says
    out = bytearray(b"\xff\xd8")
    out += _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    if comment:
        out += _segment(0xFE, comment.encode("utf-8")[:60000])
    out += _segment(0xDB, b"\x00" + b"\x01" * 64)  # quantisation table 0, all ones
    out += _segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    one_symbol = bytes([1] + [0] * 15)
    out += _segment(0xC4, b"\x00" + one_symbol + b"\x00")  # DC table 0: size category 0
    out += _segment(0xC4, b"\x10" + one_symbol + b"\x00")  # AC table 0: end of block
    out += _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    out += bytes(scan)
    out += b"\xff\xd9"
    return bytes(out)


def make_pdf(title: str = "Sandbox file", pages: int = 1) -> bytes:
    """A valid PDF with ``pages`` empty A5 pages and a title in its info dictionary."""
    safe = title.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    page_ids = [4 + i for i in range(pages)]
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(f"{i} 0 R".encode() for i in page_ids)
        + f"] /Count {pages} >>".encode(),
        f"<< /Title ({safe}) /Producer (consonance-sftp sandbox) >>".encode("latin-1", "replace"),
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 420 595] >>" for _ in page_ids]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 3 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)


def generated_file(name: str) -> tuple[bytes, str] | None:
    """Bytes and content type of a generated ``sr-<id>-<w>x<h>.jpg``, ``pf-<id>[-p<pages>].pdf``
    or ``pf-<id>.epub``."""
    stem, _, ext = name.rpartition(".")
    parts = stem.split("-")
    if ext == "jpg" and len(parts) == 3 and parts[0] == "sr" and parts[1].isdigit():
        w, _, h = parts[2].partition("x")
        if w.isdigit() and h.isdigit():
            return make_jpeg(int(w), int(h), f"sandbox resource {parts[1]}"), "image/jpeg"
    if ext == "pdf" and len(parts) in (2, 3) and parts[0] == "pf" and parts[1].isdigit():
        # ``pf-<id>-p<pages>.pdf``: an interior with the product's extent.
        pages = parts[2][1:] if len(parts) == 3 and parts[2].startswith("p") else "2"
        if pages.isdigit() and 0 < int(pages) <= 2000:
            return make_pdf(f"Sandbox production file {parts[1]}", int(pages)), "application/pdf"
    if ext == "epub" and len(parts) == 2 and parts[0] == "pf" and parts[1].isdigit():
        return make_epub(f"Sandbox EPUB {parts[1]}"), "application/epub+zip"
    if ext == "wav" and len(parts) == 2 and parts[0] == "pf" and parts[1].isdigit():
        return make_wav(comment=f"sandbox audio master {parts[1]}"), "audio/wav"
    if ext == "html" and len(parts) == 2 and parts[0] == "pf" and parts[1].isdigit():
        return make_accessibility_summary(f"Sandbox title {parts[1]}"), "application/xhtml+xml"
    if ext == "pdf" and len(parts) == 2 and parts[0] == "sr" and parts[1].isdigit():
        return make_pdf(f"Sandbox promotional material {parts[1]}", 1), "application/pdf"
    return None


def _wav_header(data_bytes: int, comment: str, rate: int, channels: int, bits: int) -> bytes:
    info = b""
    if comment:
        text = comment.encode("utf-8") + b"\x00"
        if len(text) % 2:
            text += b"\x00"  # RIFF chunks are word-aligned
        icmt = b"ICMT" + struct.pack("<I", len(text)) + text
        info = b"LIST" + struct.pack("<I", 4 + len(icmt)) + b"INFO" + icmt
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + info
    riff_size = len(body) + 8 + data_bytes
    if riff_size > 0xFFFFFFFF:
        raise ValueError("a WAV file holds at most 4 GiB")
    return b"RIFF" + struct.pack("<I", riff_size) + body + b"data" + struct.pack("<I", data_bytes)


def make_wav(
    seconds: float = 1.0, *, rate: int = 44100, channels: int = 1, bits: int = 16, comment: str = ""
) -> bytes:
    """A PCM WAV audio master of silence (``comment`` in a LIST/INFO chunk)."""
    frames = int(seconds * rate)
    data = frames * channels * bits // 8
    return _wav_header(data, comment, rate, channels, bits) + bytes(data)


def write_wav(
    path: Path,
    data_bytes: int,
    *,
    rate: int = 44100,
    channels: int = 2,
    bits: int = 16,
    comment: str = "",
) -> int:
    """Write a WAV master with ``data_bytes`` of silence to ``path`` without holding it in
    memory: the header is written and the file extended (a sparse hole reads as zeros, which
    is PCM silence). Returns the file size."""
    block = channels * bits // 8
    data_bytes -= data_bytes % block
    header = _wav_header(data_bytes, comment, rate, channels, bits)
    with path.open("wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + data_bytes)
    return os.path.getsize(path)


def make_accessibility_summary(title: str = "Sandbox book") -> bytes:
    """An XHTML accessibility summary (EPUB Accessibility 1.1 conformance, features, hazards)."""
    page = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" lang="en"><head>'
        f"<title>Accessibility summary: {title}</title></head><body>"
        f"<h1>Accessibility summary: {title}</h1>"
        "<p>Conforms to EPUB Accessibility 1.1, WCAG 2.1 Level AA.</p>"
        "<ul><li>accessMode: textual</li><li>accessibilityFeature: structuralNavigation, "
        "tableOfContents, readingOrder</li><li>accessibilityHazard: none</li></ul>"
        "</body></html>\n"
    )
    return page.encode("utf-8")


def make_epub(title: str = "Sandbox book") -> bytes:
    """A small valid EPUB 3: ``mimetype`` first and stored, container, package, one page."""
    container = (
        '<?xml version="1.0"?>\n<container version="1.0" '
        'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
        '<rootfile full-path="EPUB/package.opf" media-type="application/oebps-package+xml"/>'
        "</rootfiles></container>"
    )
    package = (
        '<?xml version="1.0"?>\n<package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
        'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f'<dc:identifier id="id">urn:uuid:00000000-0000-4000-8000-000000000000</dc:identifier>'
        f"<dc:title>{title}</dc:title><dc:language>en</dc:language>"
        '<meta property="dcterms:modified">2026-01-01T00:00:00Z</meta></metadata>'
        '<manifest><item id="p1" href="page.xhtml" media-type="application/xhtml+xml" '
        'properties="nav"/></manifest><spine><itemref idref="p1"/></spine></package>'
    )
    page = (
        '<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml" '
        'xmlns:epub="http://www.idpf.org/2007/ops"><head><title>t</title></head><body>'
        f'<nav epub:type="toc"><ol><li><a href="page.xhtml">{title}</a></li></ol></nav>'
        "</body></html>"
    )
    buffer = io.BytesIO()
    # Fixed member times: the same record gives the same bytes on every download, as a real
    # stored file would (flows version files by their SHA-256).
    stamp = (2026, 1, 1, 0, 0, 0)

    def member(name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        return info

    with zipfile.ZipFile(buffer, "w") as epub:
        epub.writestr(zipfile.ZipInfo("mimetype", date_time=stamp), "application/epub+zip")
        epub.writestr(member("META-INF/container.xml"), container)
        epub.writestr(member("EPUB/package.opf"), package)
        epub.writestr(member("EPUB/page.xhtml"), page)
    return buffer.getvalue()
