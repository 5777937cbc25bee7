"""Screening a received file before anything processes it: the rules, and the screen the
intake workflow runs as its own step (``engine.intake``: after ``fetch``, before ``record``).

In order, the first that applies is the file's quarantine reason (``Refusal``, codes listed
in docs/reference/intake.md):

1. ``zero-bytes``: an empty file (a failed export, or a name probe);
2. ``too-large``: over the flow's ``screening.max_file_size``;
3. ``malware``: clamd found something (only when the flow names a ``clamd_socket``);
4. archives, recognised by their first bytes (never by their name): a zip when the flow does
   not accept archives (``archive-not-accepted``), any other archive format
   (``archive-format``), and for a zip that is accepted, or a zip-based document (EPUB, DOCX,
   XLSX...), its central directory: an entry that would land outside its folder (``zip-slip``:
   absolute, ``..``, a drive letter, a backslash), a symbolic link (``archive-symlink``), an
   encrypted entry (``archive-encrypted``), too many entries, too many bytes or too high an
   expansion ratio (a zip bomb), a dangerous entry name (``archive-entry-name``, the name
   rules of ``formats.names``), or an archive ``zipfile`` cannot read (``archive-corrupt``).

``extract_archive`` unpacks an accepted zip into a fresh folder, checking everything again
while it writes (declared sizes can lie: bytes are counted as they are written), and returns
the entries for the flow's matcher to take one by one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from consonance_sftp.config.flows import IntakeScreening
from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.names import name_refusal
from consonance_sftp.formats.preflight.sniff import read_head
from consonance_sftp.ports.intake import (
    FetchedFile,
    IntakeRequest,
    MalwareScanner,
    Refusal,
)

__all__ = [
    "ArchiveEntry",
    "ArchiveRefused",
    "IntakeScreener",
    "Refusal",
    "archive_format",
    "check_archive",
    "extract_archive",
    "screen_file",
]

HEAD = 512  # enough for the tar magic at offset 257
RATIO_FLOOR = 1024 * 1024
"""Expansion ratios are judged only past this many expanded bytes: a few kilobytes of blank
text compress a thousandfold and harm nobody; a bomb matters because it is big."""
CHUNK = 1024 * 1024

# Zip-based document formats: a zip inside, but one document, not an archive of files. Their
# structure is still checked (a DOCX can carry a zip-slip entry as well as any zip).
ZIP_DOCUMENTS = frozenset(
    {"epub", "docx", "docm", "xlsx", "xlsm", "pptx", "odt", "ods", "odp", "odg", "idml"}
)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_OTHER_ARCHIVES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x1f\x8b", "gzip"),
    (0, b"BZh", "bzip2"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"),
    (0, b"Rar!\x1a\x07", "rar"),
    (257, b"ustar", "tar"),
)
_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveRefused(ValidationFailed):
    """An archive that is not unpacked, and why (``refusal``); nothing of it is left on disk."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.detail)
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One file unpacked from an archive: its path inside the archive (``/``-separated,
    folders included: ``9781.../interior/file.pdf``), where it is now, its size and SHA-256."""

    name: str
    path: Path
    size: int
    sha256: str


# --- the rules -----------------------------------------------------------------------------


def archive_format(head: bytes, name: str) -> str | None:
    """What archive the first bytes of a file show (``zip``, ``gzip``, ``tar``...), or None.
    A zip-based document (by its extension: EPUB, DOCX...) is ``zip-document``."""
    if head.startswith(_ZIP_MAGIC):
        ext = name.rpartition(".")[2].lower() if "." in name else ""
        return "zip-document" if ext in ZIP_DOCUMENTS else "zip"
    for offset, magic, kind in _OTHER_ARCHIVES:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


def _entry_refusal(info: zipfile.ZipInfo, *, document: bool = False) -> Refusal | None:
    """Why one central-directory entry makes the whole archive unacceptable (None: fine).
    ``document``: the zip is one document (XLSX, DOCX, EPUB...), never unpacked here, so the
    name rules for files that land in a folder do not apply to its parts (every XLSX and DOCX
    holds ``_rels/.rels``); escaping paths, links and encryption still do."""
    name = info.filename
    shown = repr(name)
    parts = name.rstrip("/").split("/")
    if name.startswith("/") or "\\" in name or _DRIVE.match(name) or ".." in parts:
        return Refusal(
            "zip-slip",
            f"the archive entry {shown} would be written outside the folder it is unpacked "
            "into (an absolute path, '..', a drive letter or a backslash)",
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        return Refusal(
            "archive-symlink",
            f"the archive entry {shown} is a symbolic link (it could point anywhere)",
        )
    if info.flag_bits & 0x1:
        return Refusal(
            "archive-encrypted",
            f"the archive entry {shown} is encrypted (it cannot be checked)",
        )
    for part in () if document else parts:
        problem = name_refusal(part)
        if problem is not None:
            return Refusal(
                "archive-entry-name",
                f"the archive entry {shown} has a dangerous name ({problem.code}): "
                f"{problem.detail}",
            )
    return None


def check_archive(
    path: Path, settings: IntakeScreening, *, document: bool = False
) -> Refusal | None:
    """The central directory of a zip against the flow's limits and the entry rules (None:
    it may be unpacked). Reads the directory only, never an entry's bytes. ``document``: a
    zip-based document (see ``_entry_refusal``)."""
    archive_size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        return Refusal("archive-corrupt", f"the zip archive cannot be read: {exc}")
    if len(infos) > settings.archive_max_entries:
        return Refusal(
            "archive-too-many-entries",
            f"the archive has {len(infos):,} entries, more than the flow's "
            f"archive_max_entries ({settings.archive_max_entries:,})",
        )
    seen: set[str] = set()
    total = 0
    for info in infos:
        refusal = _entry_refusal(info, document=document)
        if refusal is not None:
            return refusal
        if info.filename in seen:
            return Refusal(
                "archive-duplicate-entry",
                f"the archive holds {info.filename!r} twice (which one is meant?)",
            )
        seen.add(info.filename)
        total += info.file_size
        if info.file_size > RATIO_FLOOR and (
            info.file_size / max(info.compress_size, 1) > settings.archive_max_ratio
        ):
            return Refusal(
                "archive-ratio",
                f"the archive entry {info.filename!r} expands {info.compress_size:,} bytes to "
                f"{info.file_size:,} (more than {settings.archive_max_ratio:g} times: a zip "
                "bomb)",
            )
    if total > settings.archive_max_total_size:
        return Refusal(
            "archive-too-large",
            f"the archive expands to {total:,} bytes, more than the flow's "
            f"archive_max_total_size ({settings.archive_max_total_size:,})",
        )
    if total > RATIO_FLOOR and total / max(archive_size, 1) > settings.archive_max_ratio:
        return Refusal(
            "archive-ratio",
            f"the archive expands {archive_size:,} bytes to {total:,} (more than "
            f"{settings.archive_max_ratio:g} times: a zip bomb)",
        )
    return None


def screen_file(path: Path, name: str, size: int, settings: IntakeScreening) -> Refusal | None:
    """The checks that need only the file (no scanner): empty, too large, archives."""
    if size == 0:
        return Refusal("zero-bytes", "the file is empty (0 bytes)")
    if size > settings.max_file_size:
        return Refusal(
            "too-large",
            f"the file is {size:,} bytes, more than the flow's max_file_size "
            f"({settings.max_file_size:,})",
        )
    return _archive_refusal(path, name, settings)


def _archive_refusal(path: Path, name: str, settings: IntakeScreening) -> Refusal | None:
    kind = archive_format(read_head(path, HEAD), name)
    if kind is None:
        return None
    if kind not in ("zip", "zip-document"):
        return Refusal(
            "archive-format",
            f"the file is a {kind} archive; only zip archives are opened (and only when the "
            "flow accepts archives)",
        )
    if kind == "zip" and not settings.allow_archives:
        return Refusal(
            "archive-not-accepted",
            "the file is a zip archive, and this flow does not accept archives "
            "(screening.allow_archives)",
        )
    return check_archive(path, settings, document=kind == "zip-document")


# --- unpacking -----------------------------------------------------------------------------


def extract_archive(path: Path, dest_root: Path, settings: IntakeScreening) -> list[ArchiveEntry]:
    """Unpack an accepted zip into a fresh folder made under ``dest_root`` (which the caller
    keeps under the state dir) and return its files, in archive order.

    Every rule of ``check_archive`` is applied first; then, while writing, the bytes actually
    written are counted against the declared sizes and the flow's limits (a lying header is
    caught), every path is checked to stay inside the fresh folder, and files are created
    exclusively, never through a link. On any refusal the folder is removed and
    ``ArchiveRefused`` raised: nothing of a refused archive stays on disk.
    """
    refusal = check_archive(path, settings)
    if refusal is not None:
        raise ArchiveRefused(refusal)
    dest_root.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix="unpacked-", dir=dest_root)).resolve()
    try:
        return _unpack(path, dest, settings)
    except ArchiveRefused:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, OSError, NotImplementedError, EOFError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise ArchiveRefused(
            Refusal("archive-corrupt", f"the zip archive cannot be unpacked: {exc}")
        ) from None


def _unpack(path: Path, dest: Path, settings: IntakeScreening) -> list[ArchiveEntry]:
    entries: list[ArchiveEntry] = []
    written = 0
    archive_size = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(dest):  # check_archive refused these; belt and braces
                raise ArchiveRefused(
                    Refusal("zip-slip", f"the archive entry {info.filename!r} leaves its folder")
                )
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            size = 0
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            with zf.open(info) as src, os.fdopen(os.open(target, flags, 0o600), "wb") as out:
                while chunk := src.read(CHUNK):
                    size += len(chunk)
                    written += len(chunk)
                    if size > info.file_size or written > settings.archive_max_total_size:
                        raise ArchiveRefused(
                            Refusal(
                                "archive-too-large",
                                f"the archive entry {info.filename!r} expands past its "
                                "declared size or the flow's archive_max_total_size",
                            )
                        )
                    if written > RATIO_FLOOR and written / archive_size > (
                        settings.archive_max_ratio
                    ):
                        raise ArchiveRefused(
                            Refusal(
                                "archive-ratio",
                                f"the archive expands past {settings.archive_max_ratio:g} "
                                "times its size while unpacking (a zip bomb)",
                            )
                        )
                    digest.update(chunk)
                    out.write(chunk)
            entries.append(ArchiveEntry(info.filename, target, size, digest.hexdigest()))
    return entries


# --- the screen the intake workflow runs ---------------------------------------------------


class IntakeScreener:
    """``ports.intake.IntakeScreen``: the flow's screening settings (looked up at each file,
    so a reloaded config applies) and its malware scanner, if any."""

    def __init__(
        self,
        settings_for: Callable[[str], IntakeScreening],
        scanner_for: Callable[[IntakeScreening], MalwareScanner | None],
    ) -> None:
        self.settings_for = settings_for
        self.scanner_for = scanner_for

    async def screen(self, request: IntakeRequest, file: FetchedFile) -> Refusal | None:
        settings = self.settings_for(request.flow)
        local = Path(file.local_path)
        name = local.name
        if file.size == 0 or file.size > settings.max_file_size:
            return await asyncio.to_thread(screen_file, local, name, file.size, settings)
        scanner = self.scanner_for(settings)
        if scanner is not None:
            found = await scanner.scan(file.local_path)
            if found is not None:
                return Refusal("malware", f"the malware scan (clamd) found {found}")
        return await asyncio.to_thread(screen_file, local, name, file.size, settings)
