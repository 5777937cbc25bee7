"""Per-title packages, shared by the production handoff and the format packages flows.

Both fetch a product's approved production files from Consonance, record what was approved as
asset versions (same bytes: the same version; new bytes: a new version superseding the old),
then plan one package per partner from that partner's delivery profile, preflighted. A package
that fails its checks is not sent: the reason goes to the audit trail and an alert is raised.
Each step is on the record under the flow's own actor (``flow:production``, ``flow:formats``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from consonance_sftp.config.profiles import DeliveryProfile
from consonance_sftp.errors import ValidationFailed
from consonance_sftp.flows.base import (
    FlowContext,
    PlannedRun,
    SkippedItem,
    titles_needed,
    works_for,
)
from consonance_sftp.formats.packaging import PackagePlan, SourceAsset, plan_package, why_empty
from consonance_sftp.formats.preflight import PreflightItem, check_package
from consonance_sftp.models import (
    Alert,
    AlertSeverity,
    AssetKind,
    ChangeEvent,
    Product,
    ProductionFile,
    Work,
)
from consonance_sftp.ports.consonance import ConsonanceAPI
from consonance_sftp.ports.store import AssetVersion, Store

APPROVED = "APPROVED"


@dataclass(frozen=True, slots=True, kw_only=True)
class TitlePackage:
    """One product's package for one partner, planned and preflighted (a ``flows.base.
    Outbound``). ``kind`` names the flow kind in labels: ``9780000000001 production``."""

    kind: str
    partner: str
    work: Work
    product: Product
    plan: PackagePlan
    versions: tuple[AssetVersion, ...]

    @property
    def label(self) -> str:
        return f"{self.product.isbn13} {self.kind}"

    @property
    def isbn(self) -> str | None:
        return self.product.isbn13


@dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    """A product that gets no package, and why (shown in dry runs and on the record)."""

    product: Product
    reason: str


def files_on(product: Product) -> str:
    """What production files a product has, for a reason a person reads: ``"EPUB,
    ACCESSIBILITY"``, ``"AUDIO x3 (not approved)"``, or ``"no production files"``."""
    variants: dict[str, list[ProductionFile]] = {}
    for f in product.production_files:
        variants.setdefault(f.file_variant, []).append(f)
    if not variants:
        return "no production files"
    parts = []
    for variant, files in variants.items():
        count = f" x{len(files)}" if len(files) > 1 else ""
        approved = any(f.approval_status == APPROVED for f in files)
        parts.append(f"{variant}{count}{'' if approved else ' (not approved)'}")
    return ", ".join(parts)


def safe_name(name: str) -> str:
    """A local file or folder name made from a partner name or a Consonance file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _extent(asset: SourceAsset, product: Product) -> int | None:
    # The interior PDF's page count is checked against the product's extent when known.
    return product.page_count if asset.kind is AssetKind.INTERIOR_PDF else None


class TitlePackager:
    """Fetch, version, plan and check per-title packages for one flow kind."""

    kind = ""  # set by each flow: "production", "formats"

    def __init__(self, api: ConsonanceAPI, store: Store, staging: Path) -> None:
        self.api = api
        self.store = store
        self.staging = staging

    @property
    def actor(self) -> str:
        return f"flow:{self.kind}"

    async def fetch(
        self,
        work: Work,
        product: Product,
        pf: ProductionFile,
        slot: str,
        folder: Path,
    ) -> tuple[Path, AssetVersion]:
        """Download one approved file and record it as the current version of ``slot``
        (the asset-version kind: one history per slot, e.g. per audio track)."""
        assert pf.url is not None
        dest = folder / "source" / safe_name(pf.filename)
        size, sha = await self.api.download_file(pf.url, dest)
        version = await asyncio.to_thread(
            self._record_version, work, product, pf, slot, sha, size, dest
        )
        return dest, version

    def _record_version(
        self,
        work: Work,
        product: Product,
        pf: ProductionFile,
        slot: str,
        sha: str,
        size: int,
        path: Path,
    ) -> AssetVersion:
        current = self.store.current_asset_version(work.id, product.id, slot)
        if current is not None and current.sha256 == sha:
            return current
        return self.store.add_asset_version(
            AssetVersion(
                work_id=work.id,
                product_id=product.id,
                kind=slot,
                sha256=sha,
                size=size,
                source=f"consonance:production_file:{pf.id}",
                local_path=str(path),
                approved_at=pf.created_at,
            )
        )

    async def package(
        self,
        partner: str,
        profile: DeliveryProfile,
        assets: Sequence[SourceAsset],
        versions: Sequence[AssetVersion],
        work: Work,
        product: Product,
        *,
        now: datetime,
        folder: Path,
        skipped: list[Skipped],
    ) -> TitlePackage | None:
        """The partner's package, or None (with the reason in ``skipped`` and on the record)
        when it fails its checks: nothing of a failed package is sent."""
        try:
            plan = await asyncio.to_thread(
                self._plan, profile, assets, product, work, now, folder / safe_name(partner)
            )
        except ValidationFailed as exc:
            skipped.append(Skipped(product=product, reason=str(exc)))
            await asyncio.to_thread(self._blocked, partner, product, exc)
            return None
        package = TitlePackage(
            kind=self.kind,
            partner=partner,
            work=work,
            product=product,
            plan=plan,
            versions=tuple(versions),
        )
        await asyncio.to_thread(self._prepared, package)
        return package

    @staticmethod
    def _plan(
        profile: DeliveryProfile,
        assets: Sequence[SourceAsset],
        product: Product,
        work: Work,
        now: datetime,
        work_dir: Path,
    ) -> PackagePlan:
        items = [
            PreflightItem(path=a.path, kind=a.kind, expected_pages=_extent(a, product))
            for a in assets
        ]
        check_package(items, profile.preflight)
        values = {"isbn13": product.isbn13, "work_id": work.id, "product_id": product.id}
        plan = plan_package(profile, assets, values=values, now=now, work_dir=work_dir)
        if not plan.assets:  # a manifest and a done-marker alone are not a package
            raise ValidationFailed(
                f"the {product.isbn13} package is empty: {why_empty(profile, assets)}"
            )
        return plan.materialize(work_dir)

    def _prepared(self, package: TitlePackage) -> None:
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
                message=f"the {self.kind} package of {product.isbn13} was not sent to "
                f"{partner}: {exc.message}",
                partner=partner,
                flow=self.kind,
                details={"problems": "; ".join(exc.reasons)},
            )
        )


class _Preparer(Protocol):
    kind: str

    async def prepare(
        self, flow: Any, work: Work, *, now: datetime
    ) -> tuple[list[TitlePackage], list[Skipped]]: ...


async def plan_titles(
    ctx: FlowContext,
    name: str,
    flow: Any,
    packager: _Preparer,
    isbns: Sequence[str],
    event: ChangeEvent | None,
) -> PlannedRun:
    """One run of a title-at-a-time flow: each title's packages (only the ISBNs asked for,
    when some are), and why each product that gets none was passed over."""
    titles_needed(name, packager.kind, isbns, event)
    run = PlannedRun(flow=name, kind=packager.kind)
    wanted = set(isbns)
    for work in await works_for(ctx, isbns, event):
        packages, skipped = await packager.prepare(flow, work, now=ctx.now)
        run.outbounds.extend(p for p in packages if not wanted or p.isbn in wanted)
        for s in skipped:
            if not wanted or s.product.isbn13 in wanted:
                run.skipped.append(SkippedItem(str(s.product.isbn13 or s.product.id), s.reason))
    return run
