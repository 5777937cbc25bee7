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
from collections.abc import Iterable, Sequence
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


def _json(records: Iterable[Any]) -> bytes:
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

    @property
    def products(self) -> int:
        return sum(len(w.products) for w in self.works)


def _history(store: Store, versions: Sequence[AssetVersion]) -> list[tuple[str, bytes]]:
    return [
        ("history/deliveries.jsonl", _lines(store.list_deliveries(limit=None))),
        ("history/intakes.jsonl", _lines(store.list_intakes(limit=None))),
        ("history/asset_versions.jsonl", _lines(versions)),
        ("history/sales_reports.jsonl", _lines(store.list_sales_reports(limit=10**9))),
        ("history/audit.jsonl", _lines(reversed(store.list_audit(limit=None)))),
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
    """The bag of one run, streamed into ``out``."""
    versions = [v for w in catalogue.works for v in store.list_asset_versions(w.id)]
    assets = _assets(versions) if config.include_assets else []
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
    sender = config.organisation or "consonance-sftp archive"
    with BagWriter(out, name=name, info=info, compression=config.compression, created=now) as bag:
        bag.add_bytes("metadata/works.json", _json(catalogue.works))
        bag.add_bytes("metadata/contacts.json", _json(catalogue.contacts))
        bag.add_bytes("metadata/contracts.json", _json(catalogue.contracts))
        bag.add_bytes("metadata/onix.xml", _onix(catalogue.works, sender, now))
        for path, data in _history(store, versions):
            bag.add_bytes(path, data)
        for path, local in assets:
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
