"""Reading an archive back (``consonance-sftp archive verify|restore``): its sidecar checked,
decrypted when it is age-encrypted (with the identity file given), and every file re-hashed
against the bag's manifest (``formats.archive``). Nothing in the archive is trusted before it
is hashed.

A copy on a partner (``--partner``) is first downloaded through that partner's SFTP
connection (``App.remote_fs``: its host key pinned, its connection cap, like a delivery) into a
folder under ``state_dir/archive-readback`` (``fetch``, ``staged``), where it is read exactly as
a local file, then removed. The delivery ledger says where each copy is (``holders``) and the
``archive.written`` event what its SHA-256 and size were when written (``expected_of``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import pyrage

from consonance_sftp.config.flows import ArchiveFlow
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.formats.archive import BagReport, OpenBag, extract_bag, verify_bag
from consonance_sftp.formats.packaging import join_remote, sha256_file
from consonance_sftp.models import AuditAction, DeliveryOutcome
from consonance_sftp.ports.store import AuditEvent, Store

if TYPE_CHECKING:
    from consonance_sftp.app import App

AGE_MAGIC = b"age-encryption.org/v1"


@dataclass(frozen=True, slots=True)
class ArchiveCheck:
    """What reading an archive found: the sidecar's verdict and the bag's report."""

    path: Path
    sidecar: str  # "ok", "mismatch: ...", or "none" when there is no sidecar
    report: BagReport
    problems: list[str] = field(default_factory=list)  # the sidecar's, before the bag's
    # "full": every file re-hashed; "sample": a share of them; "sidecar only": an encrypted
    # archive checked as a whole file (its sidecar and the ledger), not opened.
    mode: str = "full"

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
    if not is_encrypted(path):
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


def _file_checks(path: Path, expected: tuple[str, int] | None) -> tuple[str, list[str]]:
    """The archive file as a whole: its hash against its ``.sha256`` sidecar (when beside it)
    and against the ledger (``expected``: the SHA-256 and size recorded when it was written)."""
    size, digest = sha256_file(path)
    problems: list[str] = []
    verdict = "none"
    side = path.with_name(path.name + ".sha256")
    if side.exists():
        words = side.read_text().split()
        recorded = words[0] if words else ""
        if digest == recorded:
            verdict = "ok"
        else:
            why = f"{path.name}: SHA-256 {digest} is not its sidecar's {recorded}"
            verdict = f"mismatch: {why}"
            problems.append(why)
    if expected is not None:
        sha, length = expected
        if size != length:
            problems.append(
                f"{path.name}: {size:,} bytes, not the {length:,} recorded when it was written"
            )
        if digest != sha:
            problems.append(
                f"{path.name}: SHA-256 {digest} is not the {sha} recorded when it was written"
            )
    return verdict, problems


def is_encrypted(path: Path) -> bool:
    """Is the file age-encrypted (by its header)?"""
    with path.open("rb") as head:
        return head.read(len(AGE_MAGIC)) == AGE_MAGIC


@contextlib.contextmanager
def _damaged(problems: list[str]) -> Iterator[None]:
    """An archive that cannot be decrypted: say first what its sidecar already found."""
    try:
        yield
    except ConsonanceSftpError as exc:
        if not problems:
            raise
        raise ConsonanceSftpError(f"{problems[0]}; {exc}", hint=exc.hint) from None


def _unread() -> BagReport:
    """The report of a bag that was not opened (an encrypted archive and no identity)."""
    return BagReport(
        name=None,
        problems=(),
        files_in_manifest=0,
        files_verified=0,
        bytes_verified=0,
        files_skipped=0,
        payload_files=0,
        payload_bytes=0,
        info=(),
        archive_bytes=0,
        archive_sha256="",
    )


def verify(
    path: Path,
    *,
    identity: Path | None = None,
    sample: float = 1.0,
    expected: tuple[str, int] | None = None,
    sidecar_only_if_encrypted: bool = False,
) -> ArchiveCheck:
    """Re-read an archive: its sidecar (when beside it) and the ledger's hash and size
    (``expected``, when known), then every file of the bag (or a random ``sample`` share of
    them) against the manifest. ``sidecar_only_if_encrypted``: an encrypted archive with no
    ``identity`` is checked as a whole file only (``mode`` says so) instead of refused."""
    if not path.is_file():
        raise ConsonanceSftpError(f"no archive file {path}")
    verdict, problems = _file_checks(path, expected)
    if identity is None and sidecar_only_if_encrypted and is_encrypted(path):
        return ArchiveCheck(path, verdict, _unread(), problems, mode="sidecar only")
    with _damaged(problems), _plain(path, identity) as stream:
        report = verify_bag(stream, sample=sample)
    return ArchiveCheck(path, verdict, report, problems, mode="full" if sample >= 1 else "sample")


def restore(
    path: Path,
    dest: Path,
    *,
    identity: Path | None = None,
    expected: tuple[str, int] | None = None,
) -> ArchiveCheck:
    """Unpack an archive into ``dest`` (missing or empty), keeping only files whose hash
    matches the manifest. An incremental archive's referenced files are fetched from the
    archives its fetch.txt names, found beside it (``sibling_bags``)."""
    if not path.is_file():
        raise ConsonanceSftpError(f"no archive file {path}")
    verdict, problems = _file_checks(path, expected)
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
        _, problems = _file_checks(found[0], None)
        if problems:
            raise ValueError(problems[0])
        with _plain(found[0], identity) as stream:
            yield stream

    return open_bag


# --- copies on partners ------------------------------------------------------------------

HELD = (DeliveryOutcome.SENT, DeliveryOutcome.SKIPPED)
"""Ledger outcomes that leave the file on the partner."""


def readback_dir(state_dir: Path) -> Path:
    """Where copies fetched from partners are staged while they are read (removed after)."""
    return state_dir / "archive-readback"


def written(store: Store, name: str) -> AuditEvent | None:
    """The ``archive.written`` event of the archive of that file name (None: not one a flow
    of this config wrote)."""
    events = store.list_audit(
        subject=f"archive:{name}", action=AuditAction.ARCHIVE_WRITTEN, limit=1
    )
    return events[0] if events else None


def expected_of(event: AuditEvent | None) -> tuple[str, int] | None:
    """The SHA-256 and size the ledger recorded for an archive when it was written."""
    if event is None or not event.details.get("sha256"):
        return None
    return str(event.details["sha256"]), int(cast(int, event.details.get("size", 0)))


def remote_path_of(app: App, name: str, partner: str) -> str:
    """Where the archive of that file name is on the partner: as the delivery ledger
    recorded it, else in the archive flow's folder on that partner."""
    for row in app.store.list_deliveries(partner=partner, package=f"archive {name}", limit=None):
        if PurePosixPath(row.remote_path).name == name and row.outcome in HELD:
            return row.remote_path
    event = written(app.store, name)
    if event is not None:
        flow = app.settings.flows.get(str(event.details.get("flow", "")))
    else:
        # No record of it here (the local state lost, a restore elsewhere): the archive flow
        # that names its archives ``<flow>-<time>`` and delivers to this partner.
        flow = _writer_of(app, name, partner)
    folders = app.partner_config(partner).folders
    if flow is not None and flow.folder in folders:
        return join_remote(folders[flow.folder], name)
    raise ConsonanceSftpError(
        f"archive {name} was never delivered to partner {partner!r} (not in the delivery ledger)",
        hint="'consonance-sftp archive list' shows which partners hold each archive.",
    )


def _writer_of(app: App, name: str, partner: str) -> ArchiveFlow | None:
    """The archive flow of the config whose archives are named like ``name`` (``<flow>-...``,
    the longest such flow name) and delivered to ``partner``."""
    candidates = [
        (flow_name, flow)
        for flow_name, flow in app.settings.flows.items()
        if isinstance(flow, ArchiveFlow)
        and partner in flow.partners
        and name.startswith(f"{flow_name}-")
    ]
    return max(candidates, key=lambda c: len(c[0]))[1] if candidates else None


async def fetch(app: App, name: str, partner: str, into: Path) -> Path:
    """Download the archive of that file name and its ``.sha256`` sidecar from the partner
    into the folder ``into`` (through the partner's pinned SFTP connection, like a
    delivery). A missing archive is an error naming the partner and the path; a missing
    sidecar is left missing (``verify`` reports ``sidecar none``)."""
    remote = remote_path_of(app, name, partner)
    local = into / PurePosixPath(remote).name
    async with app.remote_fs(partner) as fs:
        entry = await fs.stat(remote)
        if entry is None or not entry.is_file:
            raise ConsonanceSftpError(
                f"archive {name} is not on partner {partner!r}: no file {remote}",
                hint="It was delivered there (the ledger says so): it has been moved or "
                "removed on the partner's server since.",
            )
        await fs.download(remote, local, expected_size=entry.size)
        side = await fs.stat(remote + ".sha256")
        if side is not None and side.is_file:
            await fs.download(remote + ".sha256", into / (local.name + ".sha256"))
    return local


@dataclass(frozen=True, slots=True)
class ReadBack:
    """An archive file to read, where it came from, and what the ledger expects of it."""

    path: Path
    source: str  # "local" or "partner:<name>"
    expected: tuple[str, int] | None
    store: Store | None


@contextlib.contextmanager
def staged(state_dir: Path) -> Iterator[Path]:
    """A fresh folder under the state folder for one read-back, removed afterwards."""
    root = readback_dir(state_dir)
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="fetch-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """An archive a flow wrote, where its copies are, and its last verification (from the
    audit trail): who verified it (``user:<who>`` or ``drill:<flow>``) and which copy
    (``local`` or ``partner:<name>``)."""

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
    partners: tuple[str, ...] = ()  # partners the delivery ledger says hold a copy
    verified_from: str | None = None  # "local" or "partner:<name>"
    local: bool = True  # the local copy is still there


def record_verification(
    store: Store,
    check: ArchiveCheck,
    *,
    by: str,
    sample: float,
    source: str = "local",
    actor: str | None = None,
) -> None:
    """``archive.verified`` on the audit trail: what was read back (``source``: ``local`` or
    ``partner:<name>``), by whom (``user:<by>``, or ``actor``: a drill), what was found."""
    r = check.report
    store.append_audit(
        actor or f"user:{by}",
        AuditAction.ARCHIVE_VERIFIED,
        f"archive:{check.path.name}",
        {
            "path": str(check.path),
            "source": source,
            "mode": check.mode,
            "sha256": r.archive_sha256,
            "ok": check.ok,
            "files_verified": r.files_verified,
            "bytes_verified": r.bytes_verified,
            "sample": sample,
            "problems": problems_of(check),
        },
    )


def problems_of(check: ArchiveCheck) -> list[str]:
    """Every problem a read found, one line each (the file's, then each file of the bag's)."""
    return check.problems + [f"{p.kind}: {p.path}: {p.message}" for p in check.report.problems]


def holders(store: Store, flow: str) -> dict[str, list[str]]:
    """Archive file name -> the partners the delivery ledger says hold a copy of it."""
    out: dict[str, list[str]] = {}
    for row in store.list_deliveries(flow=flow, limit=None):
        if row.outcome in HELD and row.package == f"archive {PurePosixPath(row.remote_path).name}":
            names = out.setdefault(PurePosixPath(row.remote_path).name, [])
            if row.partner not in names:
                names.append(row.partner)
    return {name: sorted(partners) for name, partners in out.items()}


def deleted_archives(store: Store) -> set[str]:
    """The subjects (``archive:<file name>``) of the archives retention removed: those with
    an ``archive.deleted`` event on the audit trail."""
    return {
        e.subject
        for e in store.list_audit(action=AuditAction.ARCHIVE_DELETED, limit=None)
        if e.details.get("complete", True)  # a copy left on a partner: tried again next run
    }


def is_deleted(subject: str, deleted: set[str]) -> bool:
    """Did retention remove the archive of that subject (``archive:<file name>``)? ``deleted``
    is ``deleted_archives(store)``, read once per listing. The one place that says what
    "removed" means: an ``archive.deleted`` event for the archive's subject."""
    return subject in deleted


def list_archives(
    store: Store,
    *,
    flow: str | None = None,
    partner: str | None = None,
    include_deleted: bool = False,
) -> list[ArchiveEntry]:
    """Every archive the flows wrote, newest first, each with the partners holding a copy and
    its latest verification. ``partner``: only the archives that partner holds. An archive
    retention removed (``is_deleted``) is left out unless ``include_deleted``."""
    verified: dict[str, AuditEvent] = {}
    for event in store.list_audit(action=AuditAction.ARCHIVE_VERIFIED, limit=None):
        verified.setdefault(event.subject, event)  # newest first: the first is the latest
    deleted = set() if include_deleted else deleted_archives(store)
    held: dict[str, dict[str, list[str]]] = {}
    out: list[ArchiveEntry] = []
    for event in store.list_audit(action=AuditAction.ARCHIVE_WRITTEN, limit=None):
        d = event.details
        owner = str(d.get("flow", ""))
        if flow is not None and owner != flow:
            continue
        if is_deleted(event.subject, deleted):
            continue
        name = event.subject.removeprefix("archive:")
        if owner not in held:
            held[owner] = holders(store, owner)
        partners = tuple(held[owner].get(name, ()))
        if partner is not None and partner not in partners:
            continue
        last = verified.get(event.subject)
        out.append(
            ArchiveEntry(
                name=name,
                flow=owner,
                path=str(d.get("path", "")),
                sha256=str(d.get("sha256", "")),
                size=int(cast(int, d.get("size", 0))),
                files=int(cast(int, d.get("files", 0))),
                written_at=event.ts,
                verified_at=last.ts if last else None,
                verified_by=last.actor if last else None,
                verified_ok=bool(last.details.get("ok")) if last else None,
                partners=partners,
                verified_from=str(last.details.get("source", "local")) if last else None,
                local=Path(str(d.get("path", ""))).is_file(),
            )
        )
    return out
