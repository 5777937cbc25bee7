"""Flow 1, production handoff: a title's approved print files and spec sheet to the printer.

When a work meets the flow's ``when`` condition (a project stage, say), every print product of
the work whose interior and cover PDFs are approved in Consonance gets a package per printer:
the approved PDFs, downloaded and checksummed, and a spec sheet generated from the production
run, planned by the printer's delivery profile and preflighted. Nothing of a package that fails
preflight is sent; the reason goes on the record.

What was approved is recorded as asset versions (SHA-256 per file). A file whose bytes match
the current version is the same version; different bytes are a new version, superseding the
previous one, so the ledger can say which version a printer received.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from consonance_sftp.config import ProductionFlow
from consonance_sftp.config.profiles import DeliveryProfile
from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.packaging import PackagePlan, SourceAsset, plan_package
from consonance_sftp.formats.preflight import PreflightItem, check_package
from consonance_sftp.formats.specsheet import build_spec_sheet, write_spec_sheets
from consonance_sftp.models import (
    Alert,
    AlertSeverity,
    AssetKind,
    Product,
    ProductionFile,
    ProductionRun,
    Work,
)
from consonance_sftp.ports.consonance import ConsonanceAPI
from consonance_sftp.ports.store import AssetVersion, Store

PRINT_FILES = {"INTERIOR": AssetKind.INTERIOR_PDF, "COVER": AssetKind.COVER_PDF}
APPROVED = "APPROVED"


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedPackage:
    """One product's package for one partner, planned and preflighted (a ``flows.outbound.
    Outbound``)."""

    partner: str
    work: Work
    product: Product
    plan: PackagePlan
    versions: tuple[AssetVersion, ...]

    @property
    def label(self) -> str:
        return f"{self.product.isbn13} production"

    @property
    def isbn(self) -> str | None:
        return self.product.isbn13


@dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    """A product that gets no package, and why (shown in dry runs and on the record)."""

    product: Product
    reason: str


def _approved_print_files(product: Product) -> dict[AssetKind, ProductionFile]:
    files = {
        PRINT_FILES[f.file_variant]: f
        for f in product.production_files
        if f.file_variant in PRINT_FILES and f.approval_status == APPROVED and f.url
    }
    return files if len(files) == len(PRINT_FILES) else {}


def _run_for(work: Work, product: Product) -> ProductionRun | None:
    runs = [r for r in work.production_runs if not r.product_ids or product.id in r.product_ids]
    return runs[-1] if runs else None


def _extent(asset: SourceAsset, product: Product) -> int | None:
    # The interior PDF's page count is checked against the product's extent when known.
    return product.page_count if asset.kind is AssetKind.INTERIOR_PDF else None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


class ProductionHandoff:
    """Prepares production packages; the engine delivers them."""

    def __init__(self, api: ConsonanceAPI, store: Store, staging: Path) -> None:
        self.api = api
        self.store = store
        self.staging = staging

    async def prepare(
        self, flow: ProductionFlow, work: Work, *, now: datetime
    ) -> tuple[list[PreparedPackage], list[Skipped]]:
        """A package per (print product with approved files, partner) of the flow."""
        packages: list[PreparedPackage] = []
        skipped: list[Skipped] = []
        for product in work.products:
            if product.typename != "PhysicalBookProduct":
                continue
            approved = _approved_print_files(product)
            if not product.isbn13:
                skipped.append(Skipped(product=product, reason="the product has no ISBN-13"))
                continue
            if not approved:
                skipped.append(
                    Skipped(product=product, reason="interior and cover PDFs are not both approved")
                )
                continue
            folder = self.staging / str(work.id) / product.isbn13
            assets, versions = await self._fetch(work, product, approved, folder)
            run = _run_for(work, product)
            if run is not None:
                sheet = build_spec_sheet(run, product, work)
                pdf, _json = await asyncio.to_thread(write_spec_sheets, sheet, folder / "spec")
                assets.append(SourceAsset(kind=AssetKind.SPEC_SHEET, path=pdf))
            for partner in flow.partners:
                profile = flow.profile_for(partner)
                try:
                    plan = await asyncio.to_thread(
                        self._plan, profile, assets, product, work, now, folder / _safe(partner)
                    )
                except ValidationFailed as exc:
                    # Nothing of a package that fails its checks is sent; the reason is kept.
                    skipped.append(Skipped(product=product, reason=str(exc)))
                    await asyncio.to_thread(self._blocked, partner, product, exc)
                    continue
                package = PreparedPackage(
                    partner=partner,
                    work=work,
                    product=product,
                    plan=plan,
                    versions=tuple(versions),
                )
                packages.append(package)
                await asyncio.to_thread(self._prepared, package)
        return packages, skipped

    def _prepared(self, package: PreparedPackage) -> None:
        self.store.append_audit(
            actor="flow:production",
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
        subject = f"{partner}:{product.isbn13}"
        self.store.append_audit(
            actor="flow:production",
            action="package.blocked",
            subject=subject,
            details={"reason": exc.message, "problems": exc.reasons},
        )
        self.store.raise_alert(
            Alert(
                severity=AlertSeverity.WARNING,
                kind="preflight_failed",
                message=f"{product.isbn13} was not sent to {partner}: {exc.message}",
                partner=partner,
                flow="production",
                details={"problems": "; ".join(exc.reasons)},
            )
        )

    async def _fetch(
        self,
        work: Work,
        product: Product,
        approved: dict[AssetKind, ProductionFile],
        folder: Path,
    ) -> tuple[list[SourceAsset], list[AssetVersion]]:
        assets: list[SourceAsset] = []
        versions: list[AssetVersion] = []
        for kind, pf in approved.items():
            assert pf.url is not None
            dest = folder / "source" / _safe(pf.filename)
            size, sha = await self.api.download_file(pf.url, dest)
            version = await asyncio.to_thread(
                self._record_version, work, product, kind, sha, size, dest, pf
            )
            versions.append(version)
            assets.append(SourceAsset(kind=kind, path=dest, version_id=version.id))
        return assets, versions

    def _record_version(
        self,
        work: Work,
        product: Product,
        kind: AssetKind,
        sha: str,
        size: int,
        path: Path,
        pf: ProductionFile,
    ) -> AssetVersion:
        current = self.store.current_asset_version(work.id, product.id, kind.value)
        if current is not None and current.sha256 == sha:
            return current
        return self.store.add_asset_version(
            AssetVersion(
                work_id=work.id,
                product_id=product.id,
                kind=kind.value,
                sha256=sha,
                size=size,
                source=f"consonance:production_file:{pf.id}",
                local_path=str(path),
                approved_at=pf.created_at,
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
        items = [
            PreflightItem(path=a.path, kind=a.kind, expected_pages=_extent(a, product))
            for a in assets
        ]
        check_package(items, profile.preflight)
        values = {"isbn13": product.isbn13, "work_id": work.id, "product_id": product.id}
        plan = plan_package(profile, assets, values=values, now=now, work_dir=work_dir)
        if not plan.files:
            raise ValidationFailed(f"the {product.isbn13} package is empty for this profile")
        return plan.materialize(work_dir)
