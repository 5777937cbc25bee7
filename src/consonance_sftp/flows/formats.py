"""Flow 6, format packages: EPUB, audio masters and accessibility files to specialised vendors.

When a work meets the flow's ``when`` condition, each product's approved format files in
Consonance (production files of variant ``EPUB``, ``AUDIO``, ``ACCESSIBILITY``) are fetched,
checksummed and recorded as asset versions, and every vendor of the flow gets a package planned
by *its own* delivery profile (``FormatsFlow.profile_for``): a vendor whose profile names only
``epub`` never receives an audio master, and each package is delivered over that vendor's own
partner connection (its own SFTP account), so one vendor's files cannot land on another's
server. Only files some vendor's profile asks for are downloaded (audio masters run to GBs).

Entry point for ``run formats`` / ``serve``: ``FormatPackages(api, store, staging).prepare(flow,
work, now=...)`` returns ``(packages, skipped)``; each package is a ``flows.outbound.Outbound``
that ``app.delivery.delivery_request`` turns into an engine request (as for production).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from consonance_sftp.config import FormatsFlow
from consonance_sftp.config.profiles import DeliveryProfile
from consonance_sftp.errors import ValidationFailed
from consonance_sftp.flows.production import APPROVED, Skipped
from consonance_sftp.formats.packaging import PackagePlan, SourceAsset, plan_package
from consonance_sftp.formats.preflight import PreflightItem, check_package
from consonance_sftp.models import (
    Alert,
    AlertSeverity,
    AssetKind,
    Product,
    ProductionFile,
    Work,
)
from consonance_sftp.ports.consonance import ConsonanceAPI
from consonance_sftp.ports.store import AssetVersion, Store

FORMAT_FILES: dict[str, AssetKind] = {
    "EPUB": AssetKind.EPUB,
    "AUDIO": AssetKind.AUDIO,
    "ACCESSIBILITY": AssetKind.ACCESSIBILITY,
}
"""Consonance production-file variants this flow sends, and the asset kind of each."""

_TRACK = re.compile(r"(\d+)\.[A-Za-z0-9]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class FormatPackage:
    """One product's format package for one vendor (a ``flows.outbound.Outbound``)."""

    partner: str
    work: Work
    product: Product
    plan: PackagePlan
    versions: tuple[AssetVersion, ...]

    @property
    def label(self) -> str:
        return f"{self.product.isbn13} formats"

    @property
    def isbn(self) -> str | None:
        return self.product.isbn13


@dataclass(frozen=True, slots=True, kw_only=True)
class _Approved:
    kind: AssetKind
    file: ProductionFile
    track: int | None
    slot: str  # the asset-version kind: one version history per track / file


def _approved_files(flow: FormatsFlow, product: Product) -> list[_Approved]:
    wanted = {v.upper() for v in flow.file_variants}
    files = sorted(
        (
            f
            for f in product.production_files
            if f.file_variant in FORMAT_FILES
            and (not wanted or f.file_variant in wanted)
            and f.approval_status == APPROVED
            and f.url
        ),
        key=lambda f: (f.file_variant, f.filename, f.id),
    )
    out: list[_Approved] = []
    seen: dict[AssetKind, int] = {}
    for f in files:
        kind = FORMAT_FILES[f.file_variant]
        seen[kind] = seen.get(kind, 0) + 1
        if kind is AssetKind.AUDIO:
            # Masters are numbered in their names (``..._audio_03.wav``); else by name order.
            match = _TRACK.search(f.filename)
            track = int(match.group(1)) if match else seen[kind]
            out.append(_Approved(kind=kind, file=f, track=track, slot=f"audio:{track:03d}"))
        elif kind is AssetKind.ACCESSIBILITY:
            slot = f"accessibility:{seen[kind]:02d}"
            out.append(_Approved(kind=kind, file=f, track=None, slot=slot))
        else:
            out.append(_Approved(kind=kind, file=f, track=None, slot=kind.value))
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


class FormatPackages:
    """Prepares format packages per vendor; the engine delivers them."""

    actor = "flow:formats"

    def __init__(self, api: ConsonanceAPI, store: Store, staging: Path) -> None:
        self.api = api
        self.store = store
        self.staging = staging

    async def prepare(
        self, flow: FormatsFlow, work: Work, *, now: datetime
    ) -> tuple[list[FormatPackage], list[Skipped]]:
        """A package per (product with approved format files, vendor whose profile names
        at least one of their kinds)."""
        packages: list[FormatPackage] = []
        skipped: list[Skipped] = []
        profiles = {partner: flow.profile_for(partner) for partner in flow.partners}
        wanted_kinds = {k for p in profiles.values() for k in p.assets}
        for product in work.products:
            approved = [a for a in _approved_files(flow, product) if a.kind in wanted_kinds]
            if not approved:
                continue
            if not product.isbn13:
                skipped.append(Skipped(product=product, reason="the product has no ISBN-13"))
                continue
            folder = self.staging / str(work.id) / product.isbn13
            fetched = await self._fetch(work, product, approved, folder)
            for partner, profile in profiles.items():
                mine = [(a, v) for a, v in fetched if a.kind in profile.assets]
                if not mine:
                    continue  # this vendor's profile names none of the product's formats
                assets = [a for a, _ in mine]
                try:
                    plan = await asyncio.to_thread(
                        self._plan, profile, assets, product, work, now, folder / _safe(partner)
                    )
                except ValidationFailed as exc:
                    skipped.append(Skipped(product=product, reason=str(exc)))
                    await asyncio.to_thread(self._blocked, partner, product, exc)
                    continue
                package = FormatPackage(
                    partner=partner,
                    work=work,
                    product=product,
                    plan=plan,
                    versions=tuple(v for _, v in mine),
                )
                packages.append(package)
                await asyncio.to_thread(self._prepared, package)
        return packages, skipped

    async def _fetch(
        self, work: Work, product: Product, approved: Sequence[_Approved], folder: Path
    ) -> list[tuple[SourceAsset, AssetVersion]]:
        out: list[tuple[SourceAsset, AssetVersion]] = []
        for item in approved:
            assert item.file.url is not None
            dest = folder / "source" / _safe(item.file.filename)
            size, sha = await self.api.download_file(item.file.url, dest)
            version = await asyncio.to_thread(
                self._record_version, work, product, item, sha, size, dest
            )
            asset = SourceAsset(kind=item.kind, path=dest, track=item.track, version_id=version.id)
            out.append((asset, version))
        return out

    def _record_version(
        self, work: Work, product: Product, item: _Approved, sha: str, size: int, path: Path
    ) -> AssetVersion:
        current = self.store.current_asset_version(work.id, product.id, item.slot)
        if current is not None and current.sha256 == sha:
            return current
        return self.store.add_asset_version(
            AssetVersion(
                work_id=work.id,
                product_id=product.id,
                kind=item.slot,
                sha256=sha,
                size=size,
                source=f"consonance:production_file:{item.file.id}",
                local_path=str(path),
                approved_at=item.file.created_at,
            )
        )

    @staticmethod
    def _plan(
        profile: DeliveryProfile,
        assets: Sequence[SourceAsset],
        product: Product,
        work: Work,
        now: datetime,
        work_dir: Path,
    ) -> PackagePlan:
        check_package([PreflightItem(path=a.path, kind=a.kind) for a in assets], profile.preflight)
        values = {"isbn13": product.isbn13, "work_id": work.id, "product_id": product.id}
        plan = plan_package(profile, assets, values=values, now=now, work_dir=work_dir)
        if not plan.files:
            raise ValidationFailed(f"the {product.isbn13} package is empty for this profile")
        return plan.materialize(work_dir)

    def _prepared(self, package: FormatPackage) -> None:
        self.store.append_audit(
            actor=self.actor,
            action="package.prepared",
            subject=f"{package.partner}:{package.product.isbn13}",
            details={
                "work_id": package.work.id,
                "files": [f.remote_path for f in package.plan.files],
                "versions": {v.kind: v.version for v in package.versions},
                "bytes": package.plan.total_bytes,
            },
        )

    def _blocked(self, partner: str, product: Product, exc: ValidationFailed) -> None:
        self.store.append_audit(
            actor=self.actor,
            action="package.blocked",
            subject=f"{partner}:{product.isbn13}",
            details={"reason": exc.message, "problems": exc.reasons},
        )
        self.store.raise_alert(
            Alert(
                severity=AlertSeverity.WARNING,
                kind="preflight_failed",
                message=f"{product.isbn13} formats were not sent to {partner}: {exc.message}",
                partner=partner,
                flow="formats",
                details={"problems": "; ".join(exc.reasons)},
            )
        )
