"""Reading an archive back (``consonance-sftp archive verify|restore``): its sidecar checked,
decrypted when it is age-encrypted (with the identity file given), and every file re-hashed
against the bag's manifest (``formats.archive``). Nothing in the archive is trusted before it
is hashed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

import pyrage

from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.formats.archive import BagReport, OpenBag, extract_bag, verify_bag
from consonance_sftp.formats.packaging import sha256_file
from consonance_sftp.models import AuditAction
from consonance_sftp.ports.store import AuditEvent, Store

AGE_MAGIC = b"age-encryption.org/v1"


@dataclass(frozen=True, slots=True)
class ArchiveCheck:
    """What reading an archive found: the sidecar's verdict and the bag's report."""

    path: Path
    sidecar: str  # "ok", "mismatch: ...", or "none" when there is no sidecar
    report: BagReport
    problems: list[str] = field(default_factory=list)  # the sidecar's, before the bag's

    @property
    def ok(self) -> bool:
        return not self.problems and self.report.ok


def _identities(path: Path) -> list[Any]:
    """The private keys in an age identity file (``age-keygen``'s) or an SSH private key."""
    text = path.read_bytes()
    if b"AGE-SECRET-KEY-" in text:
        return [
            pyrage.x25519.Identity.from_str(line.strip())
            for line in text.decode().splitlines()
            if line.strip().startswith("AGE-SECRET-KEY-")
        ]
    try:
        return [pyrage.ssh.Identity.from_buffer(text)]
    except pyrage.IdentityError as exc:
        raise ConsonanceSftpError(
            f"{path} holds no age identity (AGE-SECRET-KEY-...) or SSH private key: {exc}"
        ) from None


@contextlib.contextmanager
def _plain(path: Path, identity: Path | None) -> Iterator[BinaryIO]:
    """The archive's tar stream: the file itself, or its decryption through a pipe (no
    decrypted copy on disk)."""
    with path.open("rb") as head:
        encrypted = head.read(len(AGE_MAGIC)) == AGE_MAGIC
    if not encrypted:
        with path.open("rb") as stream:
            yield stream
        return
    if identity is None:
        raise ConsonanceSftpError(
            f"{path.name} is age-encrypted", hint="Pass --identity KEY_FILE (the private key)."
        )
    keys = _identities(identity)
    read_fd, write_fd = os.pipe()
    failed: list[BaseException] = []

    def decrypt() -> None:
        try:
            with path.open("rb") as source, os.fdopen(write_fd, "wb") as pipe:
                pyrage.decrypt_io(source, cast(Any, pipe), keys)
        except BaseException as exc:  # raised below, in the caller's thread
            failed.append(exc)

    worker = threading.Thread(target=decrypt, name="archive-decrypt", daemon=True)
    worker.start()
    with os.fdopen(read_fd, "rb") as stream:
        yield stream
        while stream.read(1 << 20):  # let the decryption finish whatever was not read
            pass
    worker.join()
    if failed:
        raise ConsonanceSftpError(f"{path.name} cannot be decrypted: {failed[0]}") from None


def _sidecar(path: Path) -> tuple[str, list[str]]:
    side = path.with_name(path.name + ".sha256")
    if not side.exists():
        return "none", []
    words = side.read_text().split()
    expected = words[0] if words else ""
    _, digest = sha256_file(path)
    if digest == expected:
        return "ok", []
    why = f"{path.name}: SHA-256 {digest} is not its sidecar's {expected}"
    return f"mismatch: {why}", [why]


@contextlib.contextmanager
def _damaged(problems: list[str]) -> Iterator[None]:
    """An archive that cannot be decrypted: say first what its sidecar already found."""
    try:
        yield
    except ConsonanceSftpError as exc:
        if not problems:
            raise
        raise ConsonanceSftpError(f"{problems[0]}; {exc}", hint=exc.hint) from None


def verify(path: Path, *, identity: Path | None = None, sample: float = 1.0) -> ArchiveCheck:
    """Re-read an archive: its sidecar (when beside it), then every file of the bag (or a
    random ``sample`` share of them) against the manifest."""
    if not path.is_file():
        raise ConsonanceSftpError(f"no archive file {path}")
    verdict, problems = _sidecar(path)
    with _damaged(problems), _plain(path, identity) as stream:
        report = verify_bag(stream, sample=sample)
    return ArchiveCheck(path, verdict, report, problems)


def restore(path: Path, dest: Path, *, identity: Path | None = None) -> ArchiveCheck:
    """Unpack an archive into ``dest`` (missing or empty), keeping only files whose hash
    matches the manifest. An incremental archive's referenced files are fetched from the
    archives its fetch.txt names, found beside it (``sibling_bags``)."""
    if not path.is_file():
        raise ConsonanceSftpError(f"no archive file {path}")
    verdict, problems = _sidecar(path)
    with _damaged(problems), _plain(path, identity) as stream:
        report = extract_bag(stream, dest, open_bag=sibling_bags(path, identity))
    return ArchiveCheck(path, verdict, report, problems)


def sibling_bags(path: Path, identity: Path | None) -> OpenBag:
    """Opens the archive of a named bag in ``path``'s folder (``<bag>.tar[.zst][.age]``),
    its sidecar checked first, decrypted with ``identity`` when it is encrypted."""

    @contextlib.contextmanager
    def open_bag(bag: str) -> Iterator[BinaryIO]:
        found = sorted(
            p
            for p in path.parent.glob(f"{glob.escape(bag)}.tar*")
            if p.is_file() and not p.name.endswith(".sha256")
        )
        if not found:
            raise FileNotFoundError(f"no archive {bag}.tar... beside {path.name}")
        _, problems = _sidecar(found[0])
        if problems:
            raise ValueError(problems[0])
        with _plain(found[0], identity) as stream:
            yield stream

    return open_bag


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """An archive a flow wrote, and its last verification (from the audit trail)."""

    name: str
    flow: str
    path: str
    sha256: str
    size: int
    files: int
    written_at: datetime
    verified_at: datetime | None = None
    verified_by: str | None = None
    verified_ok: bool | None = None


def record_verification(store: Store, check: ArchiveCheck, *, by: str, sample: float) -> None:
    """``archive.verified`` on the audit trail: what was read back and what was found."""
    r = check.report
    store.append_audit(
        f"user:{by}",
        AuditAction.ARCHIVE_VERIFIED,
        f"archive:{check.path.name}",
        {
            "path": str(check.path),
            "sha256": r.archive_sha256,
            "ok": check.ok,
            "files_verified": r.files_verified,
            "bytes_verified": r.bytes_verified,
            "sample": sample,
            "problems": check.problems + [f"{p.kind}: {p.path}: {p.message}" for p in r.problems],
        },
    )


def list_archives(store: Store, *, flow: str | None = None) -> list[ArchiveEntry]:
    """Every archive the flows wrote and the retention did not remove (``archive.deleted``),
    newest first, each with its latest verification."""
    removed = {
        e.subject
        for e in store.list_audit(action=AuditAction.ARCHIVE_DELETED, limit=None)
        if e.details.get("complete", True)
    }
    verified: dict[str, AuditEvent] = {}
    for event in store.list_audit(action=AuditAction.ARCHIVE_VERIFIED, limit=None):
        verified.setdefault(event.subject, event)  # newest first: the first is the latest
    out: list[ArchiveEntry] = []
    for event in store.list_audit(action=AuditAction.ARCHIVE_WRITTEN, limit=None):
        d = event.details
        if (flow is not None and d.get("flow") != flow) or event.subject in removed:
            continue
        last = verified.get(event.subject)
        out.append(
            ArchiveEntry(
                name=event.subject.removeprefix("archive:"),
                flow=str(d.get("flow", "")),
                path=str(d.get("path", "")),
                sha256=str(d.get("sha256", "")),
                size=int(d.get("size", 0)),
                files=int(d.get("files", 0)),
                written_at=event.ts,
                verified_at=last.ts if last else None,
                verified_by=last.actor if last else None,
                verified_ok=bool(last.details.get("ok")) if last else None,
            )
        )
    return out
