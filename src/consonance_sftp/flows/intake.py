"""The ``intake`` flow: revised files from designers, typesetters, indexers and cover artists.

Fired by its inbox: each partner's ``folder`` is polled every ``poll_interval``.

* **Which files it takes** (``take``): of one listing of a partner's inbox, every regular,
  visible file matching the flow's ``patterns`` that is not a done-marker, a manifest (read
  with the file it describes) nor one of our own temporary upload names (the shared decision
  in ``flows.inbox``); the app then waits for the partner to finish writing it and starts one
  intake workflow per file version, which stores it (``state_dir/inbox``, checksummed, one
  intake ledger row).
* **What it does with a stored file** (``IntakeProcessor``, the engine's hand-off for the
  ``intake`` kind), when the flow has ``match`` set for the partner: match it to a product
  (manifest, pattern, ISBN in the name: ``flows.intake_match``), decide and confirm its kind
  by content, make it version N of (product, kind) in the asset versions store (identical
  bytes to the current version: a duplicate, no new version), attach it to the product in
  Consonance (production file or supporting resource) and complete the work's to-do or add a
  note. Anything that cannot be matched is quarantined with its reason. Without ``match``
  the file stays stored, awaiting processing.
* **An accepted zip** (``screening.allow_archives``; ``flows.intake_archive``): unpacked under
  ``state_dir/unpacked/<flow>/<partner>/<intake id>`` and each entry processed as above, as if
  it had been uploaded alone (its name and path inside the archive, below the archive's
  folder; a manifest beside it inside the archive); one result for the archive's row.

``consonance-sftp quarantine assign`` runs the same ``IntakeProcessor.process`` with the
ISBN and kind a person gave (``assigned``), so an assigned file lands exactly as if a rule had
matched it.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consonance_sftp.config.flows import (
    IntakeFlow,
    IntakeFlowBase,
    IntakeMatching,
    IntakeScreening,
)
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.errors import ConsonanceError, ConsonanceSftpError
from consonance_sftp.flows import inbox
from consonance_sftp.flows import intake_archive as archive
from consonance_sftp.flows import intake_match as m
from consonance_sftp.flows.inbox import Ignored, Taking
from consonance_sftp.formats.preflight.sniff import read_head, sniff
from consonance_sftp.logs import get_logger
from consonance_sftp.models import (
    AuditAction,
    IntakeOutcome,
    Product,
    ProductionFile,
    SupportingResource,
    Work,
)
from consonance_sftp.ports.consonance import AttachTarget, ConsonanceAPI
from consonance_sftp.ports.intake import FetchedFile, HandOffResult, IntakeRequest
from consonance_sftp.ports.remote_fs import RemoteEntry
from consonance_sftp.ports.store import AssetVersion, Store

log = get_logger(__name__)

MANIFEST = "a manifest (read with the file it describes)"
SUBFOLDER_LEFT = "a folder not entered (hidden, the processed or temporary folder, or too deep)"
MAX_ENTRY_MANIFEST = 1024 * 1024  # a manifest is a few lines; a bigger one is not read
CLOCK_SLACK = timedelta(minutes=10)
"""How much earlier than our version's record an attachment may say it was created and still
be taken for ours (Consonance's clock and ours differ a little)."""


def take(
    flow: IntakeFlowBase, listing: Iterable[tuple[RemoteEntry, str]], ts: TransferSettings
) -> Taking:
    """Of one listing of (entry, kind) of a partner's inbox, the files this flow takes in and
    those it leaves alone (with why): manifests are read with their file, not taken."""
    taking = inbox.take(flow, listing, ts)
    if isinstance(flow, IntakeFlow) and flow.subfolders:
        # The app entered every other folder: say why it left these alone.
        taking.ignored = [
            Ignored(i.entry, SUBFOLDER_LEFT, i.noted) if i.reason == inbox.FOLDER else i
            for i in taking.ignored
        ]
    templates = manifest_templates(flow)
    if not templates:
        return taking
    kept: list[RemoteEntry] = []
    for entry in taking.candidates:
        if m.is_manifest_name(templates, entry.name):
            taking.ignored.append(Ignored(entry, MANIFEST, noted=False))
        else:
            kept.append(entry)
    taking.candidates = kept
    return taking


def manifest_templates(flow: IntakeFlowBase) -> list[str]:
    """Every manifest name template of the flow (its own and its partners')."""
    if not isinstance(flow, IntakeFlow):
        return []
    out: list[str] = []
    for matching in (flow.match, *flow.partner_match.values()):
        if matching is not None and "manifest" in matching.rules:
            out += [t for t in matching.manifests if t not in out]
    return out


def relative_path(remote_path: str, folder: str) -> str:
    """The file's path below the flow's folder (what a pattern sees: folder names count)."""
    root = folder.rstrip("/") + "/"
    if folder and remote_path.startswith(root):
        return remote_path[len(root) :]
    return posixpath.basename(remote_path)


# --- the hand-off --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntakeContext:
    """What the processor needs to know about the flow a file came in by."""

    matching: IntakeMatching | None  # None: store only
    folder: str  # the partner's folder the flow polls (a path on the partner's server)
    screening: IntakeScreening | None = None  # the flow's (archives: ``allow_archives``)


@dataclass(frozen=True, slots=True)
class _Item:
    """One file the rules see: an upload, or one entry of an uploaded archive."""

    path: str  # below the flow's folder (what a pattern sees)
    name: str  # its file name (what Consonance gets)
    original: str  # the name its versions record (``batch.zip/cover.pdf`` for an entry)
    file: FetchedFile  # its bytes, stored locally


EntryManifests = Callable[[list[str]], Awaitable[tuple[str, bytes] | None]]


ManifestReader = Callable[[IntakeRequest, list[str]], Awaitable[tuple[str, bytes] | None]]
"""Given a request and the manifest names to look for beside it, the first one present on the
partner's server and its bytes (None: none is there)."""


class Quarantine(Exception):
    """Internal: the file goes to quarantine with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IntakeProcessor:
    """The ``intake`` kind's ``IntakeHandler``: match, confirm the kind, version, attach,
    complete the to-do; or quarantine with a reason.

    Safe to run again after a crash at any point (the engine's hand-off step is at-least-once):

    * the version is recorded *before* anything goes to Consonance, with this intake's local
      path; a re-run finds it by that path and reuses it (no second version, and not taken for
      a duplicate of itself);
    * before attaching, the product's attachments are read back: one with the same file name
      and size, created no earlier than our version (less ``CLOCK_SLACK``), is downloaded and
      its SHA-256 compared; if it is these bytes, it is ours from the run that was killed and
      is not attached again. Comparing bytes, not just name and size, means a different file
      that happens to have the same name and size is never taken for ours; the time bound
      means an older attachment of the same bytes (a partner re-sending version 1 after
      version 2) is attached anew, so it is the newest again;
    * completing a to-do twice is harmless. A note (``todo_action = "note"``) is the one act
      that a crash between it and the record can repeat: Consonance's notes cannot be read
      back through the client.

    A Consonance error that may pass (network, 5xx, rate limit) is raised: the engine retries
    the step. A terminal one returns ``failed`` with the reason; the file stays stored.
    """

    def __init__(
        self,
        *,
        consonance: Callable[[], AbstractAsyncContextManager[ConsonanceAPI]],
        store: Store,
        context: Callable[[IntakeRequest], IntakeContext],
        read_manifest: ManifestReader,
        unpack_root: Path | None = None,
    ) -> None:
        self.consonance = consonance
        self.store = store
        self.context = context
        self.read_manifest = read_manifest
        # Where accepted archives are unpacked (``state_dir/unpacked``); None: not unpacked.
        self.unpack_root = unpack_root

    def applies(self, request: IntakeRequest) -> bool:
        """Whether this file is processed at all: its flow sets ``match`` for its partner
        (otherwise it stays stored, and the engine skips the hand-off)."""
        return self.context(request).matching is not None

    async def handle(self, request: IntakeRequest, file: FetchedFile) -> HandOffResult:
        return await self.process(request, file)

    async def process(
        self, request: IntakeRequest, file: FetchedFile, *, assigned: m.Claim | None = None
    ) -> HandOffResult:
        """Everything after the file is stored. ``assigned``: the ISBN and kind a person gave
        (``quarantine assign``), used instead of the rules."""
        ctx = self.context(request)
        if ctx.matching is None and assigned is None:
            return HandOffResult(outcome=IntakeOutcome.STORED)
        matching = ctx.matching or IntakeMatching()
        name = posixpath.basename(request.remote_path)
        local = Path(file.local_path)
        if self.unpack_root is not None and await asyncio.to_thread(
            archive.is_archive, local, name, ctx.screening
        ):
            assert ctx.screening is not None
            return await self._archive(request, file, ctx, ctx.screening, matching, assigned)
        item = _Item(relative_path(request.remote_path, ctx.folder), name, name, file)

        async def beside(names: list[str]) -> tuple[str, bytes] | None:
            return await self.read_manifest(request, names)

        return await self._one(request, item, matching, beside, assigned=assigned)

    async def _one(
        self,
        request: IntakeRequest,
        item: _Item,
        matching: IntakeMatching,
        manifests: EntryManifests,
        *,
        assigned: m.Claim | None = None,
        fallback: m.Claim | None = None,
    ) -> HandOffResult:
        """Match, check, version, attach one file (``fallback``: the claim for a file no
        rule matched, for an archive's entries under ``quarantine assign``)."""
        path, name, file = item.path, item.name, item.file
        try:
            try:
                claim = assigned or await self._match(matching, path, manifests)
            except Quarantine as q:
                if fallback is None or not q.reason.startswith(m.UNMATCHED):
                    raise
                claim = fallback
            kind = m.decide_kind(claim, path, matching.kind, matching.kinds)
            if kind is None:
                raise Quarantine(
                    f"{m.UNKNOWN_KIND}: neither the {claim.rule} rule, a word of the name, its "
                    "extension nor the flow's `kind` says what kind of file this is"
                )
            found = await asyncio.to_thread(lambda: sniff(read_head(Path(file.local_path))))
            if matching.check_content and (problem := m.content_problem(kind, found, name)):
                raise Quarantine(problem)
            async with self.consonance() as api:
                product = await api.get_product_by_isbn(claim.isbn)
                if product is None:
                    raise Quarantine(
                        f"{m.UNKNOWN_PRODUCT}: no product with ISBN {claim.isbn} in Consonance "
                        f"(from the {claim.rule} rule)"
                    )
                return await self._land(api, request, item, claim, kind, found, product, matching)
        except Quarantine as q:
            return HandOffResult(outcome=IntakeOutcome.QUARANTINED, reason=q.reason)
        except ConsonanceSftpError as exc:
            if exc.retryable:
                raise
            # Terminal: Consonance refused (a bad token, a mutation's errors), or the manifest
            # could not be read from the partner (permission denied). The file stays stored.
            said = "Consonance refused it" if isinstance(exc, ConsonanceError) else "failed"
            return HandOffResult(outcome=IntakeOutcome.FAILED, reason=f"{said}: {exc.message}")

    async def _archive(
        self,
        request: IntakeRequest,
        file: FetchedFile,
        ctx: IntakeContext,
        screening: IntakeScreening,
        matching: IntakeMatching,
        assigned: m.Claim | None,
    ) -> HandOffResult:
        """An accepted zip: unpacked into its own folder, each entry processed as if it had
        been uploaded alone (``flows.intake_archive``); one result for the row."""
        assert self.unpack_root is not None
        zip_name = posixpath.basename(request.remote_path)
        row = await asyncio.to_thread(
            self.store.find_intake,
            request.partner,
            request.remote_path,
            request.size,
            request.mtime,
        )
        key = str(row.id) if row is not None and row.id is not None else file.sha256[:32]
        root = self.unpack_root.resolve()
        dest = (root / request.flow / request.partner / key).resolve()
        if not dest.is_relative_to(root) or dest == root:
            return HandOffResult(
                outcome=IntakeOutcome.FAILED,
                reason=f"failed: the archive's folder {dest} would be outside {root}",
            )
        try:
            entries = await asyncio.to_thread(
                archive.unpack_once, Path(file.local_path), dest, screening
            )
        except archive.ArchiveRefused as exc:
            refused = exc.refusal
            return HandOffResult(
                outcome=IntakeOutcome.QUARANTINED,
                reason=f"{refused.reason_code}: {refused.detail}",
            )
        folder = posixpath.dirname(relative_path(request.remote_path, ctx.folder))
        templates = matching.manifests if "manifest" in matching.rules else []
        by_name = {e.name: e for e in entries}
        results: list[tuple[str, HandOffResult]] = []
        for entry in entries:
            base = posixpath.basename(entry.name)
            if templates and m.is_manifest_name(templates, base):
                continue  # read with the entry it describes, not processed itself
            refusal = await asyncio.to_thread(archive.entry_refusal, entry, screening)
            if refusal is not None:
                result = HandOffResult(
                    outcome=IntakeOutcome.QUARANTINED,
                    reason=f"{refusal.reason_code}: {refusal.detail}",
                )
            else:
                item = _Item(
                    posixpath.join(folder, entry.name),
                    base,
                    f"{zip_name}/{entry.name}",
                    FetchedFile(local_path=str(entry.path), size=entry.size, sha256=entry.sha256),
                )
                result = await self._one(
                    request,
                    item,
                    matching,
                    _entry_manifests(by_name, entry.name),
                    fallback=assigned,
                )
            results.append((entry.name, result))
            await asyncio.to_thread(self._entry_event, request, entry.name, entry.sha256, result)
        return archive.summarise(zip_name, results)

    def _entry_event(
        self, request: IntakeRequest, entry: str, sha256: str, result: HandOffResult
    ) -> None:
        """One ``intake.entry`` event per entry on the archive's audit trail (once: a re-run
        that comes to the same result adds none)."""
        subject = f"{request.partner}:{request.remote_path}"
        details: dict[str, str | int | None] = {
            "flow": request.flow,
            "entry": entry,
            "sha256": sha256,
            "outcome": result.outcome.value,
            "reason": result.reason,
            "work_id": result.work_id,
            "product_id": result.product_id,
        }
        for event in self.store.list_audit(subject=subject, action=AuditAction.INTAKE_ENTRY):
            if all(event.details.get(k) == details[k] for k in ("entry", "outcome", "reason")):
                return
        self.store.append_audit(
            actor="engine", action=AuditAction.INTAKE_ENTRY, subject=subject, details=details
        )

    async def _match(
        self, matching: IntakeMatching, path: str, manifests: EntryManifests
    ) -> m.Claim:
        misses: list[m.Unmatched] = []
        name = posixpath.basename(path)
        for rule in matching.rules:
            found: m.MatchOutcome
            if rule == "manifest":
                names = m.manifest_names(matching.manifests, name)
                read = await manifests(names)
                if read is None:
                    found = m.Unmatched("manifest", f"no manifest beside it ({', '.join(names)})")
                else:
                    found = m.parse_manifest(read[1], read[0], name, matching.kinds)
            elif rule == "pattern":
                if matching.pattern is None:
                    continue  # the default rules name it; no pattern is configured
                found = m.match_pattern(matching.pattern, path, matching.kinds)
            else:
                found = m.find_isbn(name)
            if isinstance(found, m.Claim):
                return found
            if isinstance(found, m.Refusal):
                raise Quarantine(found.reason)
            misses.append(found)
        raise Quarantine(m.unmatched_reason(misses))

    async def _land(
        self,
        api: ConsonanceAPI,
        request: IntakeRequest,
        item: _Item,
        claim: m.Claim,
        kind: str,
        found: str,
        product: Product,
        matching: IntakeMatching,
    ) -> HandOffResult:
        name, file = item.name, item.file
        version, previous, duplicate = await asyncio.to_thread(
            self._version, request, item, product, m.asset_kind(kind, found)
        )
        said = f" (the partner's version {claim.version})" if claim.version else ""
        what = f"{kind.replace('_', ' ')} of ISBN {product.isbn13}"
        if duplicate:
            return HandOffResult(
                outcome=IntakeOutcome.DUPLICATE,
                reason=f"duplicate: the same bytes as version {version.version} of the {what} "
                "(nothing attached)",
                work_id=product.work_id,
                product_id=product.id,
            )
        target, variant = m.attach_target(kind, found)
        work = await api.get_work(product.work_id)
        record = await self._ours(api, work, product, file, name, target, version)
        if record is None:
            record = await api.attach_file(
                work_id=product.work_id,
                source=Path(file.local_path),
                filename=name,
                target=target,
                variant=variant,
                product_ids=[product.id],
                status=approval_status(target, matching.approve),
            )
        parts = [
            f"version {version.version} of the {what}{said}"
            + (f", superseding version {previous}" if previous else ""),
            f"matched by {claim.rule}",
            f"attached as {target.value.replace('_', ' ')} {variant} #{record.id}",
        ]
        if todo := await self._todo(api, work, claim, matching, kind, version, request, name):
            parts.append(todo)
        return HandOffResult(
            outcome=IntakeOutcome.ATTACHED,
            reason="; ".join(parts),
            work_id=product.work_id,
            product_id=product.id,
        )

    def _version(
        self, request: IntakeRequest, item: _Item, product: Product, kind: str
    ) -> tuple[AssetVersion, int | None, bool]:
        """(the version, the number it supersedes, whether it is a duplicate of the current
        one). Recorded before attaching (intent first): a re-run finds its own version by
        this intake's local path."""
        file = item.file
        mine = [
            v
            for v in self.store.list_asset_versions(
                product.work_id, product_id=product.id, kind=kind
            )
            if v.local_path == file.local_path and v.sha256 == file.sha256
        ]
        if mine:
            earlier = [
                v.version
                for v in self.store.list_asset_versions(
                    product.work_id, product_id=product.id, kind=kind
                )
                if v.superseded_by == mine[-1].id
            ]
            return mine[-1], (earlier[-1] if earlier else None), False
        current = self.store.current_asset_version(product.work_id, product.id, kind)
        if current is not None and current.sha256 == file.sha256:
            # The same bytes again: a duplicate, unless they never reached Consonance (the
            # intake that recorded the version then failed): then these are attached now.
            return current, None, self._landed(current)
        # Who sent it, under which name, matched to which ISBN: what `assets ISBN` shows (and
        # how it finds the title in our own records).
        row = self.store.find_intake(
            request.partner, request.remote_path, request.size, request.mtime
        )
        added = self.store.add_asset_version(
            AssetVersion(
                work_id=product.work_id,
                product_id=product.id,
                kind=kind,
                sha256=file.sha256,
                size=file.size,
                source=f"intake:{request.partner}",
                local_path=file.local_path,
                isbn=product.isbn13,
                partner=request.partner,
                original_name=item.original,
                intake_id=row.id if row is not None else None,
            )
        )
        return added, (current.version if current else None), False

    def _landed(self, version: AssetVersion) -> bool:
        """Whether the intake that recorded this version got it into Consonance (a version
        from elsewhere than an intake is taken as there)."""
        source = version.source or ""
        if not source.startswith("intake:") or not version.local_path:
            return True
        rows = self.store.list_intakes(partner=source.removeprefix("intake:"))
        recorded = [r for r in rows if r.local_path == version.local_path]
        if not recorded and version.intake_id is not None:
            # An archive's entry: its row is the archive's; until that row is decided (or when
            # Consonance refused it) the entry may not be in Consonance.
            row = [r for r in rows if r.id == version.intake_id]
            if row and row[0].outcome in (IntakeOutcome.STORED, IntakeOutcome.FAILED):
                return False
        if not recorded or any(r.outcome is IntakeOutcome.ATTACHED for r in recorded):
            return True
        # Its own intake failed; a later copy of the same bytes may have landed it since.
        return any(
            r.sha256 == version.sha256 and r.product_id == version.product_id
            for r in self.store.list_intakes(outcome=IntakeOutcome.ATTACHED)
        )

    async def _ours(
        self,
        api: ConsonanceAPI,
        work: Work | None,
        product: Product,
        file: FetchedFile,
        name: str,
        target: AttachTarget,
        version: AssetVersion,
    ) -> SupportingResource | ProductionFile | None:
        """The attachment a killed run of this very intake made, if there is one (see the
        class docstring): same name and size, not older than our version, same bytes."""
        if work is None:
            return None
        records: list[SupportingResource | ProductionFile]
        if target is AttachTarget.PRODUCTION_FILE:
            records = [f for p in work.products if p.id == product.id for f in p.production_files]
        else:
            records = [r for r in work.supporting_resources if product.id in r.product_ids]
        since = version.created_at - CLOCK_SLACK if version.created_at else None
        candidates = [
            r
            for r in records
            if r.filename == name
            and r.file_size == file.size
            and r.url
            and (since is None or r.created_at is None or _aware(r.created_at) >= _aware(since))
        ]
        if not candidates:
            return None
        folder = Path(tempfile.mkdtemp(prefix=".check-", dir=Path(file.local_path).parent))
        try:
            for record in sorted(candidates, key=lambda r: r.id, reverse=True):
                assert record.url is not None
                size, sha = await api.download_file(record.url, folder / "copy")
                if (size, sha) == (file.size, file.sha256):
                    log.info(
                        "%s is already attached (#%s, from an earlier run): not attached again",
                        name,
                        record.id,
                    )
                    return record
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        return None

    async def _todo(
        self,
        api: ConsonanceAPI,
        work: Work | None,
        claim: m.Claim,
        matching: IntakeMatching,
        kind: str,
        version: AssetVersion,
        request: IntakeRequest,
        name: str,
    ) -> str | None:
        """Complete the work's to-do, or add a note; what was done, for the row's reason."""
        wanted = claim.todo or (
            matching.todo.format(kind=kind.replace("_", " ")) if matching.todo else None
        )
        if matching.todo_action == "none" or work is None:
            return None
        if matching.todo_action == "note":
            text = (
                f"Received {kind.replace('_', ' ')} version {version.version} from "
                f"{request.partner}: {name} "
                f"(SHA-256 {version.sha256})"
            )
            note = await api.add_note(text, work_id=work.id)
            return f"note #{note} added to the work"
        if wanted is None:
            return None
        todos = [
            t
            for t in work.todos
            if (wanted.isdigit() and t.id == int(wanted))
            or t.name.strip().casefold() == wanted.strip().casefold()
        ]
        if not todos:
            return f"no to-do {wanted!r} on the work to complete"
        todo = sorted(todos, key=lambda t: t.completed)[0]
        if not todo.completed:
            await api.update_todo(todo.id, completed=True)
        return f"to-do {todo.name!r} completed"


def _entry_manifests(entries: dict[str, archive.ArchiveEntry], entry: str) -> EntryManifests:
    """The ``manifest`` rule for an archive's entry: a manifest beside it in the archive."""
    folder = posixpath.dirname(entry)

    async def read(names: list[str]) -> tuple[str, bytes] | None:
        for name in names:
            found = entries.get(posixpath.join(folder, name))
            if found is not None and found.size <= MAX_ENTRY_MANIFEST:
                return name, await asyncio.to_thread(found.path.read_bytes)
        return None

    return read


def approval_status(target: AttachTarget, approve: bool) -> str:
    """The status a received file is attached with: approved only when the flow says so."""
    if approve:
        return "APPROVED"
    return "AWAITING_APPROVAL" if target is AttachTarget.PRODUCTION_FILE else "DRAFT"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def file_sha256(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a local file (for ``quarantine assign`` of an older row)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


__all__ = [
    "IntakeContext",
    "IntakeProcessor",
    "ManifestReader",
    "file_sha256",
    "manifest_templates",
    "relative_path",
    "take",
]
