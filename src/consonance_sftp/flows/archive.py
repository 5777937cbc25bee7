"""Archive (flow 7): one dated, self-describing, checksummed copy of the catalogue and its
history per run, readable in twenty years without this tool.

Each run writes ONE BagIt bag (RFC 8493, ``formats.archive``) as a tar stream, zstd-compressed
by default, age-encrypted when the flow names recipients, into ``local_dir``, with a
``sha256sum`` sidecar beside it, and delivers both to the flow's ``partners`` like any package
(temporary name, verify, rename; the ledger). The bag holds:

* ``metadata/``: every work with its products, contributions, prices, subjects and to-dos
  (``works.json``), every contact (``contacts.json``) and contract (``contracts.json``), as
  the client reads them, and the whole catalogue as one ONIX 3.0 message (``onix.xml``);
* ``history/``: this service's records as JSON lines: deliveries, files taken in, asset
  versions, sales reports, and the audit trail with each event's chain hash;
* ``assets/``: the current version of every asset the store holds a file for (approved
  interiors, covers, EPUBs, audio masters...), under ``<work>/<product>/<kind>/``.

Incremental runs (``mode = "incremental"``): an asset whose SHA-256 an earlier archive of the
flow still holds (the last full one, or an incremental one since) is not carried again. The
bag lists it in its manifest as usual, and its ``fetch.txt`` (RFC 8493 §2.2.3) names where it
is: ``bag://<earlier bag>/data/assets/...``, the member of the archive ``<earlier bag>.tar...``
beside it; ``Consonance-Base-Archives`` in bag-info.txt names those archives. Each reference
points at the archive that carries the bytes (never at another reference), so a restore needs
that archive and the bases it names, nothing more. Every ``full_every``-th run is full
(self-contained), and so is a run whose last full archive is gone or failed its verification.
Which asset hashes each archive carries is recorded in its ``archive.written`` audit event.

Read it back by hand: ``sha256sum -c NAME.sha256``, ``age -d -i KEY NAME.age > NAME`` when
encrypted, ``tar --zstd -xf NAME``, then ``sha256sum -c manifest-sha256.txt`` in the bag.
``consonance-sftp archive verify`` and ``archive restore`` do the same and name every file
that is missing or damaged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO, cast

from consonance_sftp.config.flows import ArchiveFlow
from consonance_sftp.flows.archive_resume import undelivered_archive
from consonance_sftp.flows.base import FlowContext, PlannedRun
from consonance_sftp.formats.archive import BagSummary, BagWriter, HashingWriter, sidecar_line
from consonance_sftp.formats.archive.encrypt import encrypt_produced
from consonance_sftp.formats.archive.rfc8493 import FetchEntry, bag_url
from consonance_sftp.formats.finance.protect import age_recipient
from consonance_sftp.formats.onix.feed import write_feed
from consonance_sftp.formats.onix.rules import RecipientRules
from consonance_sftp.formats.onix.writer import MessageHeader
from consonance_sftp.formats.packaging import PackagePlan, PlannedFile, sha256_file
from consonance_sftp.models import AuditAction, ChangeEvent, Work
from consonance_sftp.ports.store import AssetVersion, Store

ACTOR = "flow:archive"


def archive_dir(config: ArchiveFlow, state_dir: Path, name: str) -> Path:
    """Where the flow's archives are written."""
    return config.local_dir or state_dir / "archive" / name


def _plain(value: Any) -> Any:
    """A value as JSON can hold it (dates ISO 8601, decimals as strings, enums by value)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON")


def records_json(records: Iterable[Any]) -> bytes:
    """Records as the bag's metadata JSON (also how a restore's read-back is encoded)."""
    rows = [dataclasses.asdict(r) for r in records]
    return json.dumps(rows, default=_plain, sort_keys=True, indent=1, ensure_ascii=False).encode()


def _lines(records: Iterable[Any]) -> bytes:
    return b"".join(
        json.dumps(
            dataclasses.asdict(r), default=_plain, sort_keys=True, ensure_ascii=False
        ).encode()
        + b"\n"
        for r in records
    )


@dataclass(frozen=True, slots=True)
class CatalogueRead:
    """What the run read from Consonance."""

    works: list[Work]
    contacts: list[Any]
    contracts: list[Any]
    base: IncrementalBase | None = None  # an incremental run: what earlier archives hold

    @property
    def products(self) -> int:
        return sum(len(w.products) for w in self.works)


def _rows(rows: Iterable[Any]) -> bytes:
    return b"".join(
        json.dumps(r, sort_keys=True, ensure_ascii=False).encode() + b"\n" for r in rows
    )


def _history(store: Store, versions: Sequence[AssetVersion]) -> list[tuple[str, bytes]]:
    """The records as JSON lines; ``audit.jsonl`` and ``tables/`` are the raw rows of the audit
    trail and of what it covers, so ``audit verify --archive`` can check the copy."""
    raw = store.export_audit()
    return [
        ("history/deliveries.jsonl", _lines(store.list_deliveries(limit=None))),
        ("history/intakes.jsonl", _lines(store.list_intakes(limit=None))),
        ("history/asset_versions.jsonl", _lines(versions)),
        ("history/sales_reports.jsonl", _lines(store.list_sales_reports(limit=10**9))),
        ("history/audit.jsonl", _rows(raw.pop("audit_events", []))),
        *((f"history/tables/{table}.jsonl", _rows(rows)) for table, rows in sorted(raw.items())),
    ]


def _assets(versions: Sequence[AssetVersion]) -> list[tuple[str, Path]]:
    """The current version of each asset the store holds a file for."""
    out: list[tuple[str, Path]] = []
    for v in versions:
        if v.superseded_by is not None or not v.local_path:
            continue
        local = Path(v.local_path)
        if local.is_file():
            where = v.product_id if v.product_id is not None else "work"
            out.append((f"assets/{v.work_id}/{where}/{v.kind}/v{v.version}-{local.name}", local))
    return out


@dataclass(frozen=True, slots=True)
class IncrementalBase:
    """What an incremental run may refer to instead of carrying: per asset SHA-256, the bag
    that carries it and its path there (``data/assets/...``)."""

    held: dict[str, tuple[str, str]]
    full: str  # the bag name of the full archive the chain starts from


def bag_name_of(details: Mapping[str, Any], subject: str) -> str:
    """The bag (folder in the tar) of an ``archive.written`` event."""
    bag = details.get("bag")
    if isinstance(bag, str) and bag:
        return bag
    return subject.removeprefix("archive:").split(".tar", 1)[0]


def removed_archives(store: Store) -> set[str]:
    """The subjects (``archive:<file>``) of archives the retention removed."""
    return {e.subject for e in store.list_audit(action=AuditAction.ARCHIVE_DELETED, limit=None)}


def incremental_base(store: Store, flow: str, config: ArchiveFlow) -> IncrementalBase | None:
    """The chain an incremental run of ``flow`` refers to, or None when this run must be
    full: no full archive yet, the last full one removed, missing from ``local_dir`` or
    failed its last verification, or ``full_every`` runs reached. Incremental archives since
    that full one add what they carry, when they too are still there and not failed."""
    if config.mode != "incremental" or config.full_every <= 1:
        return None
    removed = removed_archives(store)
    failed: set[str] = set()
    checked: set[str] = set()
    for event in store.list_audit(action=AuditAction.ARCHIVE_VERIFIED, limit=None):
        if event.subject not in checked:  # newest first: the first is the latest
            checked.add(event.subject)
            if not event.details.get("ok"):
                failed.add(event.subject)
    chain = []
    since_full = 0
    for event in store.list_audit(action=AuditAction.ARCHIVE_WRITTEN, limit=None):
        d = event.details
        if d.get("flow") != flow:
            continue
        usable = (
            event.subject not in removed
            and event.subject not in failed
            and Path(str(d.get("path", ""))).is_file()
        )
        if d.get("mode", "full") == "full":
            if not usable:
                return None
            chain.append(event)
            break
        since_full += 1
        if usable:
            chain.append(event)
    else:
        return None  # no full archive yet
    if since_full + 1 >= config.full_every:
        return None  # this is the full_every-th run since the last full one
    held: dict[str, tuple[str, str]] = {}
    for event in reversed(chain):  # oldest first: the full archive's copy is preferred
        assets = event.details.get("assets")
        if not isinstance(assets, dict):
            continue
        bag = bag_name_of(event.details, event.subject)
        for sha, path in assets.items():
            held.setdefault(str(sha), (bag, str(path)))
    return IncrementalBase(held=held, full=bag_name_of(chain[-1].details, chain[-1].subject))


def bases_of(summary: BagSummary) -> list[str]:
    """The bags an archive's fetch.txt refers to."""
    members = (FetchEntry(r.url, r.size, r.path).bag_member for r in summary.referenced)
    return sorted({member[0] for member in members if member is not None})


def _onix(works: Sequence[Work], sender: str, now: datetime) -> bytes:
    sink = io.BytesIO()
    write_feed(
        works,
        sink,
        rules=RecipientRules(),
        header=MessageHeader(sender_name=sender, sent_at=now),
        kind="full",
        validate="none",
        today=now.date(),
    )
    return sink.getvalue()


def write_bag(
    out: BinaryIO,
    *,
    name: str,
    config: ArchiveFlow,
    catalogue: CatalogueRead,
    store: Store,
    now: datetime,
) -> BagSummary:
    """The bag of one run, streamed into ``out``. With ``catalogue.base`` (an incremental
    run), an asset whose SHA-256 the base holds is referenced (fetch.txt), not carried."""
    versions = [v for w in catalogue.works for v in store.list_asset_versions(w.id)]
    assets = _assets(versions) if config.include_assets else []
    references: dict[str, tuple[str, int, str]] = {}  # path: sha256, size, url
    bases: set[str] = set()
    if catalogue.base is not None:
        for path, local in assets:
            size, sha = sha256_file(local)
            if sha in catalogue.base.held:
                bag_of, member = catalogue.base.held[sha]
                references[path] = (sha, size, bag_url(bag_of, member))
                bases.add(bag_of)
    info = {
        "Source-Organization": config.organisation or "(not configured)",
        "External-Identifier": name,
        "External-Description": "Consonance catalogue, workflow history and final assets, "
        "archived by consonance-sftp",
        "Consonance-Works": str(len(catalogue.works)),
        "Consonance-Products": str(catalogue.products),
        "Consonance-Contacts": str(len(catalogue.contacts)),
        "Consonance-Contracts": str(len(catalogue.contracts)),
        "Archived-Assets": str(len(assets)),
    }
    if catalogue.base is not None:
        info["Consonance-Archive-Mode"] = "incremental"
        info["Referenced-Assets"] = str(len(references))
        if bases:  # bag names hold no space
            info["Consonance-Base-Archives"] = " ".join(sorted(bases))
    sender = config.organisation or "consonance-sftp archive"
    with BagWriter(out, name=name, info=info, compression=config.compression, created=now) as bag:
        bag.add_bytes("metadata/works.json", records_json(catalogue.works))
        bag.add_bytes("metadata/contacts.json", records_json(catalogue.contacts))
        bag.add_bytes("metadata/contracts.json", records_json(catalogue.contracts))
        bag.add_bytes("metadata/onix.xml", _onix(catalogue.works, sender, now))
        for path, data in _history(store, versions):
            bag.add_bytes(path, data)
        for path, local in assets:
            if path in references:
                sha, size, url = references[path]
                bag.add_reference(path, sha256=sha, size=size, url=url)
            else:
                bag.add_file(path, local)
    return bag.summary


@dataclass(frozen=True, slots=True)
class Written:
    """An archive file on disk and its sidecar."""

    path: Path
    sidecar: Path
    sha256: str
    size: int
    summary: BagSummary


def write_archive(
    folder: Path,
    *,
    name: str,
    config: ArchiveFlow,
    catalogue: CatalogueRead,
    store: Store,
    now: datetime,
) -> Written:
    """Write the bag into ``folder`` (encrypted to ``age_recipients`` when set), its
    ``.sha256`` sidecar beside it; a ``.part`` file until it is whole."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".tar" + (".zst" if config.compression == "zstd" else "")
    suffix += ".age" if config.age_recipients else ""
    final = folder / f"{name}{suffix}"
    part = final.with_name(f".{final.name}.part")
    with part.open("wb") as raw:
        hashing = cast(BinaryIO, HashingWriter(raw))
        if config.age_recipients:
            summary = _encrypted(
                hashing, config, name=name, catalogue=catalogue, store=store, now=now
            )
        else:
            summary = write_bag(
                hashing, name=name, config=config, catalogue=catalogue, store=store, now=now
            )
        raw.flush()
        os.fsync(raw.fileno())
    part.replace(final)
    sidecar = final.with_name(final.name + ".sha256")
    digest = cast(HashingWriter, hashing).hexdigest()
    sidecar.write_text(sidecar_line(digest, final.name))
    return Written(final, sidecar, digest, final.stat().st_size, summary)


def _encrypted(
    out: BinaryIO,
    config: ArchiveFlow,
    *,
    name: str,
    catalogue: CatalogueRead,
    store: Store,
    now: datetime,
) -> BagSummary:
    """The bag written in a thread into a pipe that age encrypts into ``out``: no plain copy
    is ever on disk (``formats.archive.encrypt``)."""
    recipients = [age_recipient(r) for r in config.age_recipients]
    return encrypt_produced(
        lambda pipe: write_bag(
            pipe, name=name, config=config, catalogue=catalogue, store=store, now=now
        ),
        out,
        recipients,
    )


@dataclass(frozen=True, slots=True)
class ArchivePackage:
    """One partner's copy of a run's archive (a ``flows.base.Outbound``)."""

    partner: str
    plan: PackagePlan
    file_name: str

    @property
    def label(self) -> str:
        return f"archive {self.file_name}"

    @property
    def isbn(self) -> str | None:
        return None


async def read_catalogue(ctx: FlowContext) -> CatalogueRead:
    works = [w async for w in ctx.api.iter_works()]
    contacts = [c async for c in ctx.api.iter_contacts()]
    contracts = [c async for c in ctx.api.iter_contracts()]
    return CatalogueRead(works, contacts, contracts)


async def plan(
    ctx: FlowContext,
    name: str,
    config: ArchiveFlow,
    isbns: Sequence[str],
    event: ChangeEvent | None,
) -> PlannedRun:
    """Read the catalogue, write this run's archive (not in a dry run) and plan its copy to
    each partner."""
    run = PlannedRun(flow=name, kind="archive")
    catalogue = await read_catalogue(ctx)
    bag_name = f"{name}-{ctx.now:%Y%m%dT%H%M%SZ}"
    if ctx.dry_run:
        run.notes.append(
            f"would archive {len(catalogue.works)} works, {catalogue.products} products, "
            f"{len(catalogue.contracts)} contracts as {bag_name}"
        )
        return run
    folder = archive_dir(config, ctx.state_dir, name)
    # An archive an interrupted run wrote whole and did not finish delivering is delivered,
    # not written again (flows.archive_resume): the same files, the same delivery workflow.
    pending = await asyncio.to_thread(undelivered_archive, ctx.store, name, list(config.partners))
    if pending is not None:
        path, sidecar, sha, size = pending.path, pending.sidecar, pending.sha256, pending.size
        run.notes.append(
            f"archive {path} ({size:,} bytes, {pending.files} files, written "
            f"{pending.written_at:%Y-%m-%d %H:%M:%S} UTC by an earlier run, not yet delivered "
            f"to {', '.join(pending.partners)}): delivered now, not written again"
        )
    else:
        base = await asyncio.to_thread(incremental_base, ctx.store, name, config)
        if config.mode == "incremental":
            catalogue = dataclasses.replace(catalogue, base=base)
            run.notes.append(
                f"incremental run on {base.full} and its chain ({len(base.held)} assets held)"
                if base is not None
                else "full run (incremental flow: no usable full archive, or full_every reached)"
            )
        written = await asyncio.to_thread(
            write_archive,
            folder,
            name=bag_name,
            config=config,
            catalogue=catalogue,
            store=ctx.store,
            now=ctx.now,
        )
        ctx.store.append_audit(
            ACTOR,
            AuditAction.ARCHIVE_WRITTEN,
            f"archive:{written.path.name}",
            {
                "flow": name,
                "path": str(written.path),
                "sha256": written.sha256,
                "size": written.size,
                "files": len(written.summary.files),
                "payload_bytes": written.summary.payload_bytes,
                "bag": bag_name,
                "created": ctx.now.isoformat(),
                "mode": "full" if catalogue.base is None else "incremental",
                # what this archive carries, for the next incremental run to refer to
                "assets": {
                    f.sha256: f.path
                    for f in written.summary.files
                    if f.path.startswith("data/assets/")
                },
                "referenced": len(written.summary.referenced),
                "referenced_bytes": sum(r.size for r in written.summary.referenced),
                "bases": bases_of(written.summary),
            },
        )
        run.notes.append(
            f"archive {written.path} ({written.size:,} bytes, {len(written.summary.files)} files, "
            f"sha256 {written.sha256[:12]}...)"
        )
        path, sidecar, sha, size = written.path, written.sidecar, written.sha256, written.size
    side_size, side_sha = sha256_file(sidecar)
    files = (
        PlannedFile(
            role="asset",
            remote_path=path.name,
            source=path,
            sha256=sha,
            size=size,
        ),
        PlannedFile(
            role="asset",
            remote_path=sidecar.name,
            source=sidecar,
            sha256=side_sha,
            size=side_size,
        ),
    )
    for partner in config.partners:
        run.outbounds.append(
            ArchivePackage(partner, PackagePlan(files=files, planned_at=ctx.now), path.name)
        )
    return run
