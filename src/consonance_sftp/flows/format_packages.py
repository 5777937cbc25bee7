"""Flow 6, format packages: EPUB, audio masters and accessibility files to specialised vendors.

When a work meets the flow's ``when`` condition, each product's approved format files in
Consonance (production files of variant ``EPUB``, ``AUDIO``, ``ACCESSIBILITY``) are fetched,
checksummed and recorded as asset versions, and every vendor of the flow gets a package planned
by *its own* delivery profile (``FormatsFlow.profile_for``): a vendor whose profile names only
``epub`` never receives an audio master, and each package is delivered over that vendor's own
partner connection (its own SFTP account), so one vendor's files cannot land on another's
server. Only files some vendor's profile asks for are downloaded (audio masters run to GBs).

Entry point for ``run formats`` / ``serve``: ``FormatPackages(api, store, staging).prepare(flow,
work, now=...)`` returns ``(packages, skipped)``; each package is a ``flows.base.Outbound``
that ``app.dispatch.delivery_request`` turns into an engine request (as for production).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from consonance_sftp.config import FormatsFlow
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
from consonance_sftp.models import AssetKind, ChangeEvent, Product, ProductionFile, Work
from consonance_sftp.ports.store import AssetVersion

FORMAT_FILES: dict[str, AssetKind] = {
    "EPUB": AssetKind.EPUB,
    "AUDIO": AssetKind.AUDIO,
    "ACCESSIBILITY": AssetKind.ACCESSIBILITY,
}
"""Consonance production-file variants this flow sends, and the asset kind of each."""

_TRACK = re.compile(r"(\d+)\.[A-Za-z0-9]+$")


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


class FormatPackages(TitlePackager):
    """Prepares format packages per vendor; the engine delivers them."""

    kind = "formats"

    async def prepare(
        self, flow: FormatsFlow, work: Work, *, now: datetime
    ) -> tuple[list[TitlePackage], list[Skipped]]:
        """A package per (product with approved format files, vendor whose profile names
        at least one of their kinds)."""
        packages: list[TitlePackage] = []
        skipped: list[Skipped] = []
        profiles = {partner: flow.profile_for(partner) for partner in flow.partners}
        wanted_kinds = {k for p in profiles.values() for k in p.assets}
        # The Consonance file variants this flow can send, named in a skipped title's reason.
        variants = {v.upper() for v in flow.file_variants} or set(FORMAT_FILES)
        sendable = sorted(
            v for v in variants & set(FORMAT_FILES) if FORMAT_FILES[v] in wanted_kinds
        )
        for product in work.products:
            approved = [a for a in _approved_files(flow, product) if a.kind in wanted_kinds]
            if not approved:
                reason = (
                    f"no approved file of the package's kinds ({', '.join(sendable)}); "
                    f"it has: {files_on(product)}"
                )
                skipped.append(Skipped(product=product, reason=reason))
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
                package = await self.package(
                    partner,
                    profile,
                    [a for a, _ in mine],
                    [v for _, v in mine],
                    work,
                    product,
                    now=now,
                    folder=folder,
                    skipped=skipped,
                )
                if package is not None:
                    packages.append(package)
        return packages, skipped

    async def _fetch(
        self, work: Work, product: Product, approved: list[_Approved], folder: Path
    ) -> list[tuple[SourceAsset, AssetVersion]]:
        out: list[tuple[SourceAsset, AssetVersion]] = []
        for item in approved:
            path, version = await self.fetch(work, product, item.file, item.slot, folder)
            asset = SourceAsset(kind=item.kind, path=path, track=item.track, version_id=version.id)
            out.append((asset, version))
        return out


async def plan(
    ctx: FlowContext,
    name: str,
    flow: FormatsFlow,
    isbns: Sequence[str],
    event: ChangeEvent | None,
) -> PlannedRun:
    """Flow 6: EPUB, audio masters, accessibility files; each vendor only its own package."""
    packager = FormatPackages(ctx.api, ctx.store, ctx.state_dir / "packages" / name)
    return await plan_titles(ctx, name, flow, packager, isbns, event)
