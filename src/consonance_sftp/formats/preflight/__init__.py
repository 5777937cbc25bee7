"""Preflight: check every file of a package before anything is sent, with clear reasons.

``preflight(path, kind, rules)`` returns a report (what was checked, what was skipped, what is
wrong); ``check_package(items, rules)`` runs it over a whole package and raises one
``ValidationFailed`` listing every problem of every file, so a package is sent whole or not at
all. Checks per asset kind:

- everywhere: the file is not empty, its content type (by magic bytes) matches its extension
  and its kind, it is not larger than the partner accepts;
- PDFs: ``%PDF-`` header, ``%%EOF`` trailer (not truncated), not encrypted, PDF/X declaration
  where the profile asks, page count against the product's extent;
- images: format, pixel size, colour mode;
- EPUB: container structure, then EPUBCheck when installed (reported as skipped otherwise);
- audio: format, bitrate, sample rate, constant bitrate.

Only headers, trailers and indexes are read (audio masters can be GBs); the one full read is an
EPUB's zip CRC test. ``rules`` is taken structurally: config's ``PreflightSettings`` fits it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.preflight.epub import check_epub
from consonance_sftp.formats.preflight.media import check_audio, check_image
from consonance_sftp.formats.preflight.pdf import check_pdf
from consonance_sftp.formats.preflight.sniff import extension_mismatch, read_head, sniff
from consonance_sftp.models import AssetKind

__all__ = [
    "DEFAULT_RULES",
    "PreflightItem",
    "PreflightReport",
    "PreflightRules",
    "Rules",
    "check_package",
    "preflight",
    "sniff",
]

MAX_TEXT_BYTES = 16 * 1024 * 1024

# Content types each kind may have; ``None``: anything except empty or mislabelled.
KIND_TYPES: dict[AssetKind, frozenset[str] | None] = {
    AssetKind.INTERIOR_PDF: frozenset({"pdf"}),
    AssetKind.COVER_PDF: frozenset({"pdf"}),
    AssetKind.SPEC_SHEET: frozenset({"pdf", "text"}),
    AssetKind.EPUB: frozenset({"zip"}),
    AssetKind.AUDIO: frozenset({"mp3", "aac", "mp4", "flac", "wav"}),
    AssetKind.COVER_IMAGE: frozenset({"jpeg", "png", "tiff"}),
    AssetKind.JACKET_COPY: frozenset({"text", "pdf"}),
    AssetKind.AUTHOR_BIO: frozenset({"text", "pdf"}),
    AssetKind.ACCESSIBILITY: None,
    AssetKind.PROMO: None,
}


class PreflightRules(Protocol):
    """The checks a profile asks for (config's ``PreflightSettings`` has these attributes)."""

    @property
    def pdf_x(self) -> bool: ...
    @property
    def pdf_x_versions(self) -> Sequence[str]: ...
    @property
    def page_count(self) -> str: ...
    @property
    def min_pages(self) -> int | None: ...
    @property
    def image_formats(self) -> Sequence[str]: ...
    @property
    def image_modes(self) -> Sequence[str]: ...
    @property
    def image_min_px(self) -> int | None: ...
    @property
    def image_max_px(self) -> int | None: ...
    @property
    def max_file_bytes(self) -> int | None: ...
    @property
    def epubcheck(self) -> str: ...
    @property
    def audio_formats(self) -> Sequence[str]: ...
    @property
    def audio_min_kbps_mono(self) -> int | None: ...
    @property
    def audio_min_kbps_stereo(self) -> int | None: ...
    @property
    def audio_min_sample_rate(self) -> int | None: ...
    @property
    def audio_min_bit_depth(self) -> int | None: ...
    @property
    def audio_cbr(self) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """Plain preflight rules, for callers without a config profile (same defaults)."""

    pdf_x: bool = False
    pdf_x_versions: Sequence[str] = ()
    page_count: str = "exact"
    min_pages: int | None = None
    image_formats: Sequence[str] = ("JPEG", "PNG", "TIFF")
    image_modes: Sequence[str] = ("RGB", "CMYK", "L")
    image_min_px: int | None = None
    image_max_px: int | None = None
    max_file_bytes: int | None = None
    epubcheck: str = "if_installed"
    audio_formats: Sequence[str] = ("mp3", "m4a", "aac", "flac", "wav")
    audio_min_kbps_mono: int | None = None
    audio_min_kbps_stereo: int | None = None
    audio_min_sample_rate: int | None = None
    audio_min_bit_depth: int | None = None
    audio_cbr: bool = False


DEFAULT_RULES = Rules()


@dataclass(frozen=True, slots=True)
class PreflightReport:
    """The outcome for one file: ``problems`` empty means it passed."""

    path: Path
    kind: AssetKind
    content_type: str
    notes: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def reasons(self) -> list[str]:
        """Each problem prefixed with the file and its kind, for errors and the audit trail."""
        return [f"{self.path.name} ({self.kind.value}): {p}" for p in self.problems]

    def raise_for_problems(self) -> None:
        if self.problems:
            raise ValidationFailed(
                f"preflight failed for {self.kind.value} {self.path.name}", self.reasons()
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class PreflightItem:
    """One file to check; ``expected_pages`` is the product's extent (interior PDFs)."""

    path: Path
    kind: AssetKind
    expected_pages: int | None = None


@dataclass(slots=True)
class _Log:
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def preflight(
    path: Path,
    kind: AssetKind,
    rules: PreflightRules = DEFAULT_RULES,
    *,
    expected_pages: int | None = None,
) -> PreflightReport:
    """Check one file as an asset of ``kind``; never raises for a bad file, reports it."""
    log = _Log()

    def report(found: str, problems: Iterable[str]) -> PreflightReport:
        return PreflightReport(
            path, kind, found, tuple(log.notes), tuple(log.skipped), tuple(problems)
        )

    try:
        size = path.stat().st_size
    except OSError as exc:
        return report("missing", [f"cannot read the file: {exc.strerror or exc}"])
    if size == 0:
        return report("empty", ["zero-byte file"])
    found = sniff(read_head(path))
    problems: list[str] = []
    if mismatch := extension_mismatch(path, found):
        problems.append(mismatch)
    allowed = KIND_TYPES[kind]
    if allowed is not None and found not in allowed:
        wanted = " or ".join(sorted(t.upper() for t in allowed))
        problems.append(f"content is {found.upper()}; {kind.value} files must be {wanted}")
    if rules.max_file_bytes is not None and size > rules.max_file_bytes:
        problems.append(
            f"{size:,} bytes is more than the partner's limit of {rules.max_file_bytes:,}"
        )
    if problems:
        # The type is wrong: the format-specific checks would only add noise.
        return report(found, problems)
    problems.extend(_by_type(path, kind, found, rules, expected_pages, log))
    return report(found, problems)


def _by_type(
    path: Path,
    kind: AssetKind,
    found: str,
    rules: PreflightRules,
    expected_pages: int | None,
    log: _Log,
) -> list[str]:
    if found == "pdf":
        interior = kind is AssetKind.INTERIOR_PDF
        return check_pdf(
            path,
            pdf_x=rules.pdf_x and kind in (AssetKind.INTERIOR_PDF, AssetKind.COVER_PDF),
            pdf_x_versions=rules.pdf_x_versions,
            expected_pages=expected_pages if interior else None,
            page_count=rules.page_count,
            min_pages=rules.min_pages if interior else None,
            notes=log.notes,
        )
    if found in ("jpeg", "png", "tiff", "gif", "webp"):
        return check_image(
            path,
            formats=rules.image_formats,
            modes=rules.image_modes,
            min_px=rules.image_min_px,
            max_px=rules.image_max_px,
            notes=log.notes,
        )
    if kind is AssetKind.EPUB or (found == "zip" and path.suffix.lower() == ".epub"):
        return check_epub(path, epubcheck=rules.epubcheck, notes=log.notes, skipped=log.skipped)
    if kind is AssetKind.AUDIO:
        return check_audio(
            path,
            found,
            formats=rules.audio_formats,
            min_kbps_mono=rules.audio_min_kbps_mono,
            min_kbps_stereo=rules.audio_min_kbps_stereo,
            min_sample_rate=rules.audio_min_sample_rate,
            min_bit_depth=rules.audio_min_bit_depth,
            cbr=rules.audio_cbr,
            notes=log.notes,
        )
    if found == "text":
        return _check_text(path, log)
    return []


def _check_text(path: Path, log: _Log) -> list[str]:
    if path.stat().st_size > MAX_TEXT_BYTES:
        return [f"text file larger than {MAX_TEXT_BYTES // (1024 * 1024)} MiB"]
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [f"not UTF-8 text: {exc}"]
    if path.suffix.lower() == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            return [f"not valid JSON: {exc}"]
    if not text.strip():
        return ["the text is blank"]
    log.notes.append(f"UTF-8 text, {len(text):,} characters")
    return []


def check_package(
    items: Sequence[PreflightItem], rules: PreflightRules = DEFAULT_RULES
) -> list[PreflightReport]:
    """Check every file; raise one ``ValidationFailed`` listing all problems, or return the
    reports (with their notes and skipped checks) when everything passed."""
    reports = [
        preflight(item.path, item.kind, rules, expected_pages=item.expected_pages) for item in items
    ]
    reasons = [reason for r in reports for reason in r.reasons()]
    if reasons:
        failed = sum(1 for r in reports if not r.ok)
        raise ValidationFailed(
            f"preflight failed for {failed} of {len(reports)} files; nothing was sent", reasons
        )
    return reports
