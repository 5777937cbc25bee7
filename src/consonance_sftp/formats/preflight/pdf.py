"""PDF preflight: header, ``%%EOF`` trailer, encryption, PDF/X declaration, page count.

The file is parsed with pypdf from an open handle, so pypdf reads only the cross-reference table,
the document info, the XMP packet and the page tree, not the page contents: a 1 GB interior is
checked without being loaded into memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import PdfReadError, PyPdfError

TAIL_BYTES = 2048
_PDFX_XMP = re.compile(rb"GTS_PDFXVersion(?:>|=\")\s*([^<\"]+)")


def check_pdf(
    path: Path,
    *,
    pdf_x: bool,
    pdf_x_versions: Sequence[str],
    expected_pages: int | None,
    page_count: str,
    min_pages: int | None,
    notes: list[str],
) -> list[str]:
    """Problems with a PDF (empty when it passes); what was checked goes to ``notes``."""
    problems: list[str] = []
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(16)
        handle.seek(max(0, size - TAIL_BYTES), os.SEEK_SET)
        tail = handle.read()
    if not head.startswith(b"%PDF-"):
        return ["not a PDF: the file does not start with '%PDF-'"]
    version = head[5:8].decode("ascii", "replace")
    notes.append(f"PDF header %PDF-{version}")
    if b"%%EOF" not in tail:
        # Checked before parsing: pypdf repairs a missing trailer silently.
        problems.append("truncated PDF: no '%%EOF' marker at the end of the file")
        return problems
    try:
        with path.open("rb") as handle:
            reader = PdfReader(handle)
            if reader.is_encrypted:
                return [*problems, "the PDF is encrypted (password-protected)"]
            pages = len(reader.pages)
            declared = _pdfx_version(reader)
    except (PdfReadError, PyPdfError, ValueError, KeyError, OSError) as exc:
        return [*problems, f"the PDF cannot be parsed: {exc}"]
    notes.append(f"{pages} pages")
    if pdf_x:
        if declared is None:
            problems.append("no PDF/X declaration (GTS_PDFXVersion); the partner requires PDF/X")
        elif pdf_x_versions and declared not in pdf_x_versions:
            problems.append(
                f"PDF/X version {declared!r} is not accepted; expected one of "
                f"{', '.join(pdf_x_versions)}"
            )
        else:
            notes.append(f"PDF/X: {declared}")
    elif declared:
        notes.append(f"PDF/X: {declared}")
    if min_pages is not None and pages < min_pages:
        problems.append(f"{pages} pages, fewer than the {min_pages} the partner requires")
    if expected_pages is not None and page_count != "off":
        if page_count == "exact" and pages != expected_pages:
            problems.append(f"{pages} pages, but the product's extent is {expected_pages}")
        elif page_count == "at_least" and pages < expected_pages:
            problems.append(f"{pages} pages, fewer than the product's extent of {expected_pages}")
        else:
            notes.append(f"page count matches the extent ({expected_pages})")
    return problems


def _pdfx_version(reader: PdfReader) -> str | None:
    info = reader.metadata
    if info is not None:
        value = info.get("/GTS_PDFXVersion")
        if value:
            return str(value).strip()
    xmp = reader.xmp_metadata
    if xmp is not None:
        # PDF/X-4 and later declare the version in XMP only (pdfxid:GTS_PDFXVersion).
        raw = xmp.stream.get_data()
        found = _PDFX_XMP.search(raw)
        if found:
            return found.group(1).decode("utf-8", "replace").strip()
    return None
