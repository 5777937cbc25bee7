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
from collections.abc import Sequence
from datetime import datetime

from consonance_sftp.config import ProductionFlow
from consonance_sftp.flows.base import (
    FlowContext,
    PlannedRun,
)
from consonance_sftp.flows.packages import (
    APPROVED,
    Skipped,
    TitlePackage,
    TitlePackager,
    files_on,
    plan_titles,
)
from consonance_sftp.formats.packaging import SourceAsset
from consonance_sftp.formats.specsheet import build_spec_sheet, write_spec_sheets
from consonance_sftp.models import (
    AssetKind,
    ChangeEvent,
    Product,
    ProductionFile,
    ProductionRun,
    Work,
)
from consonance_sftp.ports.store import AssetVersion

PRINT_FILES = {"INTERIOR": AssetKind.INTERIOR_PDF, "COVER": AssetKind.COVER_PDF}


def _approved_print_files(product: Product) -> dict[AssetKind, ProductionFile]:
    files = {
        PRINT_FILES[f.file_variant]: f
        for f in product.production_files
        if f.file_variant in PRINT_FILES and f.approval_status == APPROVED and f.url
    }
    return files if len(files) == len(PRINT_FILES) else {}


def _why_not_printable(product: Product) -> str:
    """Why a product gets no print package, naming the files it does have."""
    approved = {
        f.file_variant
        for f in product.production_files
        if f.file_variant in PRINT_FILES and f.approval_status == APPROVED and f.url
    }
    if product.typename != "PhysicalBookProduct" or not any(
        f.file_variant in PRINT_FILES for f in product.production_files
    ):
        return f"no print-ready interior PDF among its files (it has: {files_on(product)})"
    missing = [v.lower() for v in PRINT_FILES if v not in approved]
    return (
        f"its {' and '.join(missing)} PDF{'s are' if len(missing) > 1 else ' is'} not approved "
        f"in Consonance (it has: {files_on(product)})"
    )


def _run_for(work: Work, product: Product) -> ProductionRun | None:
    runs = [r for r in work.production_runs if not r.product_ids or product.id in r.product_ids]
    return runs[-1] if runs else None


class ProductionHandoff(TitlePackager):
    """Prepares production packages; the engine delivers them."""

    kind = "production"

    async def prepare(
        self, flow: ProductionFlow, work: Work, *, now: datetime
    ) -> tuple[list[TitlePackage], list[Skipped]]:
        """A package per (print product with approved files, partner) of the flow."""
        packages: list[TitlePackage] = []
        skipped: list[Skipped] = []
        for product in work.products:
            # An ebook or audiobook has no print files: say so, or "nothing to send" for an
            # ebook's ISBN reads like a fault.
            approved = (
                _approved_print_files(product) if product.typename == "PhysicalBookProduct" else {}
            )
            if not approved:
                skipped.append(Skipped(product=product, reason=_why_not_printable(product)))
                continue
            if not product.isbn13:
                skipped.append(Skipped(product=product, reason="the product has no ISBN-13"))
                continue
            folder = self.staging / str(work.id) / product.isbn13
            assets: list[SourceAsset] = []
            versions: list[AssetVersion] = []
            for kind, pf in approved.items():
                path, version = await self.fetch(work, product, pf, kind.value, folder)
                versions.append(version)
                assets.append(SourceAsset(kind=kind, path=path, version_id=version.id))
            run = _run_for(work, product)
            if run is not None:
                sheet = build_spec_sheet(run, product, work)
                pdf, _json = await asyncio.to_thread(write_spec_sheets, sheet, folder / "spec")
                assets.append(SourceAsset(kind=AssetKind.SPEC_SHEET, path=pdf))
            for partner in flow.partners:
                package = await self.package(
                    partner,
                    flow.profile_for(partner),
                    assets,
                    versions,
                    work,
                    product,
                    now=now,
                    folder=folder,
                    skipped=skipped,
                )
                if package is not None:
                    packages.append(package)
        return packages, skipped


async def plan(
    ctx: FlowContext,
    name: str,
    flow: ProductionFlow,
    isbns: Sequence[str],
    event: ChangeEvent | None,
) -> PlannedRun:
    """Flow 1: each title's approved print files and spec sheet, per printer."""
    packager = ProductionHandoff(ctx.api, ctx.store, ctx.state_dir / "packages")
    return await plan_titles(ctx, name, flow, packager, isbns, event)
