"""A zip a partner uploads to an intake flow that accepts archives (``screening.allow_archives``):
unpacked once into a folder of its own, each entry screened, then matched and processed one by
one (``flows.intake.IntakeProcessor``), and one result for the intake row.

* **Where**: ``state_dir/unpacked/<flow>/<partner>/<intake id>/files``: one folder per intake
  row, so an entry's local path is the same however often the hand-off runs (the processor
  finds its own version by that path: a crash mid-archive and a re-run attach nothing twice),
  and a re-upload of the same zip (a new row) is a new folder whose entries are duplicates of
  the versions the first one made. The unpacking goes into a fresh folder
  (``intake_screen.extract_archive``) that is renamed to ``files`` once complete, with the
  list of entries written beside it (``entries.json``); a partial unpacking left by a crash is
  removed and redone.
* **Each entry** is screened on its own (``entry_refusal``): empty, over the size limit, and
  *any archive inside the archive* (zip, gzip, tar, 7z, rar...) is refused (``nested-archive``,
  never opened); a zip-based document (EPUB, DOCX) is not an archive and has its structure
  checked like an uploaded one.
* **One row** (``summarise``): ``attached`` when every entry landed (some may be duplicates),
  ``duplicate`` when every entry was a duplicate, ``quarantined`` when an entry could not be
  landed (the reason, labelled ``archive entries not landed``, names each such entry and why,
  then the entries that did land: they stay landed, their versions and attachments on the
  record), ``failed`` when Consonance refused an entry. Each entry's result is an
  ``intake.entry`` event on the zip's audit trail.
"""

from __future__ import annotations

import json
import posixpath
import shutil
from collections.abc import Sequence
from pathlib import Path

from consonance_sftp.config.flows import IntakeScreening
from consonance_sftp.flows.intake_screen import (
    ArchiveEntry,
    ArchiveRefused,
    archive_format,
    extract_archive,
    screen_file,
)
from consonance_sftp.formats.preflight.sniff import read_head
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.ports.intake import HandOffResult, Refusal

__all__ = [
    "ARCHIVE_PARTIAL",
    "ArchiveEntry",
    "ArchiveRefused",
    "entry_refusal",
    "is_archive",
    "summarise",
    "unpack_once",
]

ARCHIVE_PARTIAL = "archive entries not landed"
"""The label of a quarantined archive's reason (some or all of its entries did not land)."""

FILES = "files"
LISTING = "entries.json"


def is_archive(path: Path, name: str, settings: IntakeScreening | None) -> bool:
    """Whether this stored file is a zip to unpack: the flow accepts archives and the bytes
    are a zip (not a zip-based document such as an EPUB or a DOCX)."""
    if settings is None or not settings.allow_archives:
        return False
    return archive_format(read_head(path, 512), name) == "zip"


def unpack_once(archive: Path, dest: Path, settings: IntakeScreening) -> list[ArchiveEntry]:
    """The archive's file entries, unpacked under ``dest`` (``dest/files/<entry name>``):
    read back from ``dest/entries.json`` when an earlier run finished unpacking (the same
    paths, nothing written again), else unpacked afresh. Raises ``ArchiveRefused`` (nothing
    left on disk) for an archive the checks refuse."""
    listing = dest / LISTING
    files = dest / FILES
    if listing.is_file() and files.is_dir():
        data = json.loads(listing.read_text(encoding="utf-8"))
        return [
            ArchiveEntry(e["name"], files / e["name"], int(e["size"]), e["sha256"]) for e in data
        ]
    # A crash mid-unpacking leaves a partial folder: start again from nothing.
    shutil.rmtree(dest, ignore_errors=True)
    entries = extract_archive(archive, dest, settings)
    # extract_archive made one fresh folder under dest (it was empty): it becomes `files`.
    [fresh] = list(dest.glob("unpacked-*"))
    fresh.rename(files)
    moved = [ArchiveEntry(e.name, files / e.name, e.size, e.sha256) for e in entries]
    tmp = dest / (LISTING + ".tmp")
    tmp.write_text(
        json.dumps([{"name": e.name, "size": e.size, "sha256": e.sha256} for e in moved]),
        encoding="utf-8",
    )
    tmp.replace(listing)  # last: its presence means the unpacking is complete
    return moved


def entry_refusal(entry: ArchiveEntry, settings: IntakeScreening) -> Refusal | None:
    """Why one unpacked entry is not processed (None: it is matched like an upload)."""
    name = posixpath.basename(entry.name)
    kind = archive_format(read_head(entry.path, 512), name)
    if kind not in (None, "zip-document"):
        return Refusal(
            "nested-archive",
            f"the entry is a {kind} archive inside the archive; archives inside an archive "
            "are not opened",
        )
    return screen_file(entry.path, name, entry.size, settings)


def summarise(archive: str, results: Sequence[tuple[str, HandOffResult]]) -> HandOffResult:
    """The intake row's outcome and reason for an archive whose entries were processed."""
    outcomes = {r.outcome for _, r in results}
    products = {(r.work_id, r.product_id) for _, r in results if r.product_id is not None}
    work_id, product_id = next(iter(products)) if len(products) == 1 else (None, None)
    landed = [(n, r) for n, r in results if r.outcome in _LANDED]
    missed = [(n, r) for n, r in results if r.outcome not in _LANDED]

    def listed(items: Sequence[tuple[str, HandOffResult]]) -> str:
        return "; ".join(f"{name} ({r.reason or r.outcome.value})" for name, r in items)

    if not results:
        return HandOffResult(
            outcome=IntakeOutcome.QUARANTINED,
            reason=f"{ARCHIVE_PARTIAL}: the archive {archive} holds no files",
        )
    if missed:
        failed = IntakeOutcome.FAILED in outcomes
        head = "Consonance refused" if failed else ARCHIVE_PARTIAL
        reason = (
            f"{head}: {len(missed)} of {len(results)} entries of {archive} not landed: "
            f"{listed(missed)}"
        )
        if landed:
            reason += f"; landed: {listed(landed)}"
        return HandOffResult(
            outcome=IntakeOutcome.FAILED if failed else IntakeOutcome.QUARANTINED,
            reason=reason,
            work_id=work_id,
            product_id=product_id,
        )
    every = IntakeOutcome.DUPLICATE if outcomes == {IntakeOutcome.DUPLICATE} else None
    return HandOffResult(
        outcome=every or IntakeOutcome.ATTACHED,
        reason=f"{'duplicate: ' if every else ''}{len(results)} entries of {archive}: "
        f"{listed(landed)}",
        work_id=work_id,
        product_id=product_id,
    )


_LANDED = frozenset({IntakeOutcome.ATTACHED, IntakeOutcome.DUPLICATE})
