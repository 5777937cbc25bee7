"""Flow 5, marketing release: approved covers, jacket copy, author bios and promo material to
sales, marketing and retail partners, only once the title is released.

The release condition is the approval (the newest approved cover in Consonance, plus the
flow's ``when`` trigger where one is set) *and* the embargo: with ``embargo =
"publication_date"`` nothing goes out before the title's earliest publication date, less
``release_days_before``. "Now" comes from the ``Clock`` port, so a test moves time and sees a
held title released. Before its date a title is held: ``prepare`` returns no package and the
hold is on the audit trail.

Every partner receives the same approved set: the cover master (or the rendition its profile
asks for, made from the master and recorded as a *derivative* asset version of it), jacket copy
and author bios written from approved, released marketing texts and contributors, and the
approved promotional material. A replaced cover is a new master version superseding the old
one; its renditions are new derivative versions, so the next run sends the new cover.

A title whose publishing status is one of ``withdrawn_statuses`` gets no package;
``withdrawals`` plans, for every partner whose profile has ``withdraw = true``, the removal of
what the ledger says was sent (a ``flows.base.Withdrawal``: the engine removes the files like
any other remote write, with pauses, delivery windows and the host-key check, then marks those
ledger rows ``withdrawn`` and records ``package.withdrawn``); each partner left alone gets
``package.withdraw_kept``. Nothing is removed while planning. A title released again afterwards
goes out as the next generation.

Entry points for ``run marketing`` / ``serve``: ``MarketingRelease(api, store, staging,
clock).prepare(flow, work)`` returns ``(packages, skipped)`` of ``flows.base.Outbound``
packages (as production's ``prepare``; pass each package's ``generation`` to
``delivery_request``); ``withdrawn(flow, work)`` says when to call
``withdrawals(flow, flow_name, work, folder=...)`` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from consonance_sftp.config import MarketingFlow
from consonance_sftp.config.profiles import DeliveryProfile, ImageRendition
from consonance_sftp.errors import ValidationFailed
from consonance_sftp.flows.base import (
    FlowContext,
    PlannedRun,
    SentFile,
    SkippedItem,
    Withdrawal,
    works_for,
)
from consonance_sftp.flows.packages import APPROVED, safe_name
from consonance_sftp.formats.derivatives import (
    author_bios,
    jacket_copy,
    make_rendition,
    rendition_suffix,
    text_suffix,
    write_text,
)
from consonance_sftp.formats.packaging import PackagePlan, SourceAsset, plan_package, why_empty
from consonance_sftp.formats.preflight import PreflightItem, check_package
from consonance_sftp.models import (
    Alert,
    AlertSeverity,
    AssetKind,
    ChangeEvent,
    DeliveryOutcome,
    FlowKind,
    SupportingResource,
    Work,
)
from consonance_sftp.ports.clock import Clock, SystemClock
from consonance_sftp.ports.consonance import ConsonanceAPI
from consonance_sftp.ports.store import AssetVersion, Store

ACTOR = "flow:marketing"


def lead_isbn(work: Work) -> str | None:
    """The ISBN-13 marketing files are named by: the work's first product that has one."""
    return next((p.isbn13 for p in work.products if p.isbn13), None)


def release_date(flow: MarketingFlow, work: Work) -> date | None:
    """The day the embargo lifts (``None``: no publication date known, so never by date)."""
    dates = [p.publication_date for p in work.products if p.publication_date is not None]
    if not dates:
        return None
    return min(dates) - timedelta(days=flow.release_days_before)


def withdrawn(flow: MarketingFlow, work: Work) -> bool:
    """Every product of the work has a withdrawing publishing status."""
    statuses = {p.publishing_status for p in work.products}
    return bool(work.products) and statuses <= set(flow.withdrawn_statuses)


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketingPackage:
    """One title's marketing package for one partner (a ``flows.base.Outbound``)."""

    partner: str
    work: Work
    isbn13: str
    plan: PackagePlan
    versions: tuple[AssetVersion, ...]
    generation: int = 0
    """Pass to ``delivery_request``: bumped by each withdrawal, so a title released again
    after a withdrawal is sent again (the ledger's rows of the earlier generation say
    ``withdrawn``)."""

    @property
    def label(self) -> str:
        return f"{self.isbn13} marketing"

    @property
    def isbn(self) -> str | None:
        return self.isbn13


@dataclass(frozen=True, slots=True, kw_only=True)
class Held:
    """A title that gets no package now, and why (embargo, no approved cover, withdrawn...)."""

    work: Work
    reason: str
    partner: str | None = None


@dataclass(slots=True)
class _Material:
    """The approved set for a title, the same for every partner."""

    cover: SourceAsset | None = None
    cover_version: AssetVersion | None = None
    others: list[SourceAsset] = field(default_factory=list)
    versions: list[AssetVersion] = field(default_factory=list)


def _newest_approved(resources: Sequence[SupportingResource]) -> SupportingResource | None:
    approved = [r for r in resources if (r.status or "").upper() == APPROVED and r.url]
    # A replacement is uploaded later: the newest approved one is current.
    return max(approved, key=lambda r: (r.created_at is not None, r.created_at, r.id), default=None)


def _spec_key(spec: ImageRendition) -> str:
    return f"{spec.format}-{spec.mode}-{spec.max_long_side or 'full'}-q{spec.quality}"


class MarketingRelease:
    """Prepares marketing packages once a title is released; withdraws them where asked."""

    def __init__(self, api: ConsonanceAPI, store: Store, staging: Path, clock: Clock) -> None:
        self.api = api
        self.store = store
        self.staging = staging
        self.clock = clock

    # --- release -------------------------------------------------------------------------

    def hold_reason(self, flow: MarketingFlow, work: Work) -> str | None:
        """Why the title may not go out now (``None``: it is released)."""
        if withdrawn(flow, work):
            return "the title is withdrawn"
        if lead_isbn(work) is None:
            return "the work has no product with an ISBN-13"
        if flow.embargo == "publication_date":
            today = self.clock.now().date()
            lifts = release_date(flow, work)
            if lifts is None:
                return "embargoed: no publication date is known"
            if today < lifts:
                return f"embargoed until {lifts.isoformat()}"
        if _newest_approved(self._resources(work, flow.cover_variants)) is None:
            return "no approved cover"
        return None

    async def prepare(
        self, flow: MarketingFlow, work: Work
    ) -> tuple[list[MarketingPackage], list[Held]]:
        """A package per partner of the flow when the title is released, else why not."""
        now = self.clock.now()
        reason = self.hold_reason(flow, work)
        if reason is not None:
            await asyncio.to_thread(self._audit, "package.held", str(work.id), {"reason": reason})
            return [], [Held(work=work, reason=reason)]
        isbn = lead_isbn(work)
        assert isbn is not None
        folder = self.staging / str(work.id) / "marketing"
        material = await self._material(flow, work, folder, now.date())
        packages: list[MarketingPackage] = []
        held: list[Held] = []
        for partner in flow.partners:
            profile = flow.profile_for(partner)
            try:
                assets, versions = await asyncio.to_thread(
                    self._partner_assets, profile, work, material, folder
                )
                plan = await asyncio.to_thread(
                    self._plan, profile, assets, work, isbn, now, folder / safe_name(partner)
                )
            except ValidationFailed as exc:
                held.append(Held(work=work, reason=str(exc), partner=partner))
                await asyncio.to_thread(self._blocked, partner, isbn, exc)
                continue
            withdrawals = await asyncio.to_thread(
                self.store.list_audit, subject=f"{partner}:{isbn}", action="package.withdrawn"
            )
            package = MarketingPackage(
                partner=partner,
                work=work,
                isbn13=isbn,
                plan=plan,
                versions=tuple(versions),
                generation=len(withdrawals),
            )
            packages.append(package)
            await asyncio.to_thread(
                self._audit,
                "package.prepared",
                f"{partner}:{isbn}",
                {
                    "work_id": work.id,
                    "files": [f.remote_path for f in plan.files],
                    "versions": {v.kind: v.version for v in versions},
                    "bytes": plan.total_bytes,
                },
            )
        return packages, held

    @staticmethod
    def _resources(work: Work, variants: Sequence[str]) -> list[SupportingResource]:
        wanted = {v.upper() for v in variants}
        return [r for r in work.supporting_resources if r.variant.upper() in wanted]

    async def _material(
        self, flow: MarketingFlow, work: Work, folder: Path, today: date
    ) -> _Material:
        out = _Material()
        cover = _newest_approved(self._resources(work, flow.cover_variants))
        if cover is not None:
            path, version = await self._download(work, cover, AssetKind.COVER_IMAGE.value, folder)
            out.cover = SourceAsset(kind=AssetKind.COVER_IMAGE, path=path, version_id=version.id)
            out.cover_version = version
        promos = [
            r
            for r in self._resources(work, flow.promo_variants)
            if (r.status or "").upper() == APPROVED and r.url
        ]
        for index, resource in enumerate(sorted(promos, key=lambda r: r.id), start=1):
            slot = f"{AssetKind.PROMO.value}:{index:02d}"
            path, version = await self._download(work, resource, slot, folder)
            out.others.append(SourceAsset(kind=AssetKind.PROMO, path=path, version_id=version.id))
            out.versions.append(version)
        texts = await asyncio.to_thread(self._texts, work, folder, today)
        for asset, version in texts:
            out.others.append(asset)
            out.versions.append(version)
        return out

    async def _download(
        self, work: Work, resource: SupportingResource, slot: str, folder: Path
    ) -> tuple[Path, AssetVersion]:
        assert resource.url is not None
        dest = folder / "source" / f"{resource.id}_{safe_name(resource.filename)}"
        size, sha = await self.api.download_file(resource.url, dest)
        version = await asyncio.to_thread(
            self._version,
            work.id,
            slot,
            sha,
            size,
            dest,
            f"consonance:supporting_resource:{resource.id}",
            None,
            resource.created_at,
        )
        return dest, version

    def _version(
        self,
        work_id: int,
        slot: str,
        sha: str,
        size: int,
        path: Path,
        source: str,
        derived_from: int | None,
        approved_at: datetime | None,
    ) -> AssetVersion:
        current = self.store.current_asset_version(work_id, None, slot)
        if current is not None and current.sha256 == sha and current.derived_from == derived_from:
            return current
        return self.store.add_asset_version(
            AssetVersion(
                work_id=work_id,
                kind=slot,
                sha256=sha,
                size=size,
                source=source,
                local_path=str(path),
                derived_from=derived_from,
                approved_at=approved_at,
            )
        )

    def _texts(
        self, work: Work, folder: Path, today: date
    ) -> list[tuple[SourceAsset, AssetVersion]]:
        out: list[tuple[SourceAsset, AssetVersion]] = []
        copy = jacket_copy(work, on=today)
        if copy is not None:
            made = write_text(copy.text, folder / "text" / f"jacket_copy{text_suffix(copy)}")
            version = self._version(
                work.id,
                AssetKind.JACKET_COPY.value,
                made.sha256,
                made.size,
                made.path,
                f"consonance:marketing_text:{copy.id}",
                None,
                None,
            )
            asset = SourceAsset(kind=AssetKind.JACKET_COPY, path=made.path, version_id=version.id)
            out.append((asset, version))
        for index, (contribution, bio) in enumerate(author_bios(work, on=today), start=1):
            made = write_text(bio, folder / "text" / f"author_bio_{index:02d}.txt")
            version = self._version(
                work.id,
                f"{AssetKind.AUTHOR_BIO.value}:{index:02d}",
                made.sha256,
                made.size,
                made.path,
                f"consonance:contact:{contribution.contributor.id}",
                None,
                None,
            )
            asset = SourceAsset(kind=AssetKind.AUTHOR_BIO, path=made.path, version_id=version.id)
            out.append((asset, version))
        return out

    def _partner_assets(
        self, profile: DeliveryProfile, work: Work, material: _Material, folder: Path
    ) -> tuple[list[SourceAsset], list[AssetVersion]]:
        assets = list(material.others)
        versions = list(material.versions)
        cover, master = material.cover, material.cover_version
        if cover is not None and master is not None:
            spec = profile.cover_rendition
            if spec is None:
                assets.insert(0, cover)
                versions.insert(0, master)
            else:
                key = _spec_key(spec)
                dest = folder / "renditions" / f"cover_{key}_v{master.version}"
                made = make_rendition(cover.path, dest.with_suffix(rendition_suffix(spec)), spec)
                derived = self._version(
                    work.id,
                    f"{AssetKind.COVER_IMAGE.value}@{key}",
                    made.sha256,
                    made.size,
                    made.path,
                    "derived",
                    master.id,
                    master.approved_at,
                )
                assets.insert(
                    0,
                    SourceAsset(kind=AssetKind.COVER_IMAGE, path=made.path, version_id=derived.id),
                )
                versions.insert(0, derived)
        return assets, versions

    @staticmethod
    def _plan(
        profile: DeliveryProfile,
        assets: Sequence[SourceAsset],
        work: Work,
        isbn: str,
        now: datetime,
        work_dir: Path,
    ) -> PackagePlan:
        chosen = [a for a in assets if a.kind in profile.assets]
        check_package([PreflightItem(path=a.path, kind=a.kind) for a in chosen], profile.preflight)
        values = {"isbn13": isbn, "work_id": work.id}
        plan = plan_package(profile, assets, values=values, now=now, work_dir=work_dir)
        if not plan.assets:
            raise ValidationFailed(
                f"the {isbn} marketing package is empty: {why_empty(profile, assets)}"
            )
        return plan.materialize(work_dir)

    def pending_releases(self) -> list[int]:
        """Works held at some point (approved, but embargoed or without a cover) that no
        package has been prepared for since: what a scheduled run re-checks, because nothing
        in Consonance changes on the day an embargo lifts. Synchronous (the store)."""
        held = self.store.list_audit(action="package.held")
        prepared = self.store.list_audit(action="package.prepared")
        last_prepared: dict[int, datetime] = {}
        for event in prepared:
            work_id = event.details.get("work_id")
            if event.actor == ACTOR and isinstance(work_id, int):
                last_prepared[work_id] = max(event.ts, last_prepared.get(work_id, event.ts))
        pending: set[int] = set()
        for event in held:
            if event.actor != ACTOR or not event.subject.isdigit():
                continue
            work_id = int(event.subject)
            done = last_prepared.get(work_id)
            if done is None or done < event.ts:
                pending.add(work_id)
        return sorted(pending)

    # --- withdrawal ----------------------------------------------------------------------

    async def withdrawals(
        self,
        flow: MarketingFlow,
        flow_name: str,
        work: Work,
        *,
        folder: Callable[[str], str] | None = None,
        record: bool = True,
    ) -> tuple[list[Withdrawal], list[str]]:
        """What to remove for this title from each partner whose profile withdraws, and the
        partners whose profile keeps what they have. Removes nothing: the engine does.

        The delivery ledger says what was sent (flow, partner, ISBN, outcome ``sent``); a
        partner with nothing sent gets no withdrawal. ``folder`` limits it to paths under the
        partner's folder for the flow (a guard against a ledger row pointing elsewhere). The
        generation withdrawn is the one the title's packages went out as (one per withdrawal
        before). ``record``: put each partner left alone on the audit trail
        (``package.withdraw_kept``; not on a dry run)."""
        isbn = lead_isbn(work)
        planned: list[Withdrawal] = []
        kept: list[str] = []
        for partner in flow.partners:
            subject = f"{partner}:{isbn}"
            if not flow.profile_for(partner).withdraw:
                if record:
                    await asyncio.to_thread(
                        self._audit, "package.withdraw_kept", subject, {"work_id": work.id}
                    )
                kept.append(partner)
                continue
            rows = await asyncio.to_thread(
                self.store.list_deliveries,
                isbn=isbn,
                partner=partner,
                flow=flow_name,
                outcome=DeliveryOutcome.SENT,
            )
            base = folder(partner).rstrip("/") + "/" if folder is not None else ""
            # One file per path: the newest row says what the partner holds there.
            newest: dict[str, SentFile] = {}
            for row in sorted(rows, key=lambda r: r.id or 0):
                if row.remote_path.startswith(base):
                    newest[row.remote_path] = SentFile(row.remote_path, row.sha256, row.size)
            if not newest:
                continue
            withdrawals = await asyncio.to_thread(
                self.store.list_audit, subject=subject, action="package.withdrawn"
            )
            planned.append(
                Withdrawal(
                    partner=partner,
                    isbn=isbn,
                    files=tuple(newest[p] for p in sorted(newest)),
                    generation=len(withdrawals),
                    label=f"{isbn} marketing withdrawal",
                    work_id=work.id,
                )
            )
        return planned, kept

    # --- records -------------------------------------------------------------------------

    def _audit(self, action: str, subject: str, details: dict[str, object]) -> None:
        self.store.append_audit(actor=ACTOR, action=action, subject=subject, details=details)

    def _blocked(self, partner: str, isbn: str, exc: ValidationFailed) -> None:
        self._audit(
            "package.blocked", f"{partner}:{isbn}", {"reason": exc.message, "problems": exc.reasons}
        )
        self.store.raise_alert(
            Alert(
                severity=AlertSeverity.WARNING,
                kind="preflight_failed",
                message=f"{isbn} marketing material was not sent to {partner}: {exc.message}",
                partner=partner,
                flow="marketing",
                details={"problems": "; ".join(exc.reasons)},
            )
        )


async def plan(
    ctx: FlowContext,
    name: str,
    flow: MarketingFlow,
    isbns: Sequence[str],
    event: ChangeEvent | None,
) -> PlannedRun:
    """Flow 5: approved cover, copy, bios and promo material, once the embargo lifts."""
    run = PlannedRun(flow=name, kind=FlowKind.MARKETING.value)
    release = MarketingRelease(ctx.api, ctx.store, ctx.state_dir / "packages" / name, SystemClock())
    if isbns or event is not None:
        works = await works_for(ctx, isbns, event)
    else:
        # A scheduled run: nothing changes in Consonance on the day an embargo lifts, so the
        # titles held for their embargo are checked again.
        ids = await asyncio.to_thread(release.pending_releases)
        works = [w for w in [await ctx.api.get_work(i) for i in ids] if w is not None]
    for work in works:
        if withdrawn(flow, work):
            # Planned, not done: the engine removes the files (app.dispatch submits them).
            planned, _kept = await release.withdrawals(
                flow,
                name,
                work,
                folder=lambda partner: ctx.folder(flow, partner),
                record=not ctx.dry_run,
            )
            run.withdrawals.extend(planned)
            run.skipped.append(SkippedItem(f"work {work.id}", "withdrawn: assets withdrawn"))
            continue
        packages, held = await release.prepare(flow, work)
        run.outbounds.extend(packages)
        for h in held:
            who = f" for {h.partner}" if h.partner else ""
            run.skipped.append(SkippedItem(f"work {h.work.id}{who}", h.reason))
    return run
