"""Finance out (flow 4a): royalty statements to their payees, rights reports and contract
data to rights partners and finance.

Statements. Consonance computes royalties and makes statement batches inside itself; its API
has none of it. Finance exports a batch (a folder or a zip of PDFs, one per payee) into the
flow's ``statements`` folder. Each run of the flow:

1. takes in every new batch that has settled (``take_batch``): the PDFs are copied into
   the flow's store of originals and recorded, ``received``;
2. resolves each statement (``resolve_batch``) to exactly one Consonance contact by its file
   name **and** its text (``formats.finance.statements.resolve``): the text must name that
   payee and no other payee of the batch. Anything else is ``quarantined`` with the reason; a
   payee with no destination in the config is ``held``, never guessed;
3. never sends a statement: ``consonance-sftp finance approve`` and ``finance send`` do
   (``app.finance_handler``), each statement a package per destination with its own ledger
   rows, keyed by (partner, the payee's folder and file, SHA-256).

Reports. With ``reports``, each run (its ``schedule``, or ``run`` by hand) renders the rights
report and the contract export from Consonance's contracts and delivers them to ``partners``
like any package (``plan``).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Literal

from consonance_sftp.config.finance import PayeeRoute, Protection
from consonance_sftp.config.flows import FinanceOutFlow, IntakeScreening
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.flows.base import FlowContext, PlannedRun, SkippedItem
from consonance_sftp.flows.intake_screen import check_archive
from consonance_sftp.formats import finance_reports
from consonance_sftp.formats.finance import companion, protect
from consonance_sftp.formats.finance.periods import period_dates, period_of
from consonance_sftp.formats.finance.statements import (
    Payee,
    StatementUnreadable,
    contact_in_name,
    pdf_text,
    resolve,
)
from consonance_sftp.formats.names import name_refusal
from consonance_sftp.formats.packaging import PackagePlan, PlannedFile, sha256_file
from consonance_sftp.logs import get_logger
from consonance_sftp.models import ChangeEvent, Contract, Work
from consonance_sftp.ports.consonance import ConsonanceAPI
from consonance_sftp.ports.delivery import DeliveryRequest, FileToSend
from consonance_sftp.ports.finance import (
    BatchRecord,
    Destination,
    NewStatement,
    StatementRecord,
)
from consonance_sftp.ports.store import Store

log = get_logger(__name__)

ACTOR = "flow:finance_out"
CHUNK = 1 << 20

FolderOf = Callable[[str, str], str]
"""(partner, folder key) -> that folder's remote path."""


def statements_dir(cfg: FinanceOutFlow, state_dir: Path) -> Path:
    """Where finance drops the batches."""
    return cfg.statements or state_dir / "finance" / "statements"


def originals_dir(state_dir: Path, flow: str) -> Path:
    """Where each batch's untouched originals are kept (``<flow>/<batch>/``)."""
    return state_dir / "finance" / "batches" / flow


def prepared_dir(state_dir: Path, flow: str) -> Path:
    """Where the files sent for each statement are made (encrypted copies, companions)."""
    return state_dir / "finance" / "out" / flow


# --- taking batches in ----------------------------------------------------------------------


def settled_batches(
    folder: Path, settle_s: int, now: float, taken: Callable[[str], bool] = lambda _: False
) -> list[Path]:
    """The batches in ``folder`` ready to take: sub-folders in which nothing changed for
    ``settle_s`` seconds, and zips that open whole. Hidden names, and batches ``taken``
    already (by name), are passed over without reading them."""
    if not folder.is_dir():
        return []
    ready: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or taken(batch_name(entry)):
            continue
        if entry.is_dir():
            stamps = [entry.stat().st_mtime] + [
                p.stat().st_mtime for p in entry.rglob("*") if p.is_file()
            ]
            if now - max(stamps) >= settle_s:
                ready.append(entry)
        elif entry.suffix.lower() == ".zip" and now - entry.stat().st_mtime >= settle_s:
            try:
                with zipfile.ZipFile(entry) as archive:
                    if archive.testzip() is None:
                        ready.append(entry)
            except (zipfile.BadZipFile, OSError):
                log.info("finance: %s is not a whole zip yet; looked at again next run", entry)
    return ready


def batch_name(source: Path) -> str:
    return source.stem if source.suffix.lower() == ".zip" else source.name


def _copy_out(read: Iterable[bytes], target: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    part = target.with_name(target.name + ".part")
    with part.open("wb") as out:
        for chunk in read:
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    part.replace(target)
    return digest.hexdigest(), size


def _members(source: Path) -> Iterable[tuple[str, Callable[[], Iterable[bytes]]]]:
    """(file name, its bytes) of each statement file of a batch, flattened: a batch is a
    flat set of statements, so a name inside sub-folders keeps only its last part (a zip's
    paths were checked by ``check_archive`` first). Hidden files (``.DS_Store``, macOS's
    ``__MACOSX/._*``) are not statements and are passed over."""

    def chunks_of(path: Path) -> Callable[[], Iterable[bytes]]:
        def read() -> Iterable[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk

        return read

    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            if not path.name.startswith("."):
                yield path.name, chunks_of(path)
        return
    archive = zipfile.ZipFile(source)
    for info in sorted(archive.infolist(), key=lambda i: i.filename):
        name = PurePosixPath(info.filename.replace("\\", "/")).name
        if info.is_dir() or not name or name.startswith("."):
            continue

        def read(info: zipfile.ZipInfo = info) -> Iterable[bytes]:
            with archive.open(info) as f:
                while chunk := f.read(CHUNK):
                    yield chunk

        yield name, read


def take_batch(store: Store, flow: str, source: Path, state_dir: Path) -> BatchRecord:
    """Copy a batch's files into the store of originals and record it (all ``received``).
    A batch of that name already taken is returned unchanged."""
    name = batch_name(source)
    if (known := store.find_finance_batch(flow, name)) is not None:
        return known
    refusal = check_archive(source, IntakeScreening(), document=True) if source.is_file() else None
    if refusal is not None:
        raise ConsonanceSftpError(
            f"statement batch {source.name} is refused: {refusal.detail}",
            hint="Export the batch again from Consonance as a plain zip of PDFs.",
        )
    members = list(_members(source))
    names = [file_name for file_name, _ in members]
    for file_name in names:
        if (problem := name_refusal(file_name)) is not None:
            raise ConsonanceSftpError(
                f"statement batch {source.name} is refused: its file {file_name!r} has a "
                f"dangerous name ({problem.code}): {problem.detail}",
                hint="Export the batch again from Consonance.",
            )
        if names.count(file_name) > 1:
            raise ConsonanceSftpError(
                f"statement batch {source.name} holds two files named {file_name!r}",
                hint="Each statement needs its own file name; export the batch again.",
            )
    keep = originals_dir(state_dir, flow) / name
    keep.mkdir(parents=True, exist_ok=True)
    statements: list[NewStatement] = []
    for file_name, read in members:
        digest, size = _copy_out(read(), keep / file_name)
        statements.append(
            NewStatement(
                file_name=file_name, original_path=str(keep / file_name), sha256=digest, size=size
            )
        )
    return store.add_finance_batch(
        flow=flow, name=name, source=str(keep), period=period_of(name), statements=statements
    )


# --- resolving each statement ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PayeeContract:
    """A contract of a work the payee contributed to, with the work's title."""

    contract: Contract
    title: str


async def contracts_by_payee(api: ConsonanceAPI) -> dict[int, list[PayeeContract]]:
    """Each contact's contracts: those of the works it contributed to (a contract's payees
    are not in Consonance's API; a work's contributors are)."""
    works: dict[int, Work] = {}
    async for work in api.iter_works():
        works[work.id] = work
    out: dict[int, list[PayeeContract]] = {}
    async for contract in api.iter_contracts():
        on = works.get(contract.work_id or -1)
        if on is None:
            continue
        for contact in sorted({c.contributor.id for c in on.contributions}):
            out.setdefault(contact, []).append(PayeeContract(contract, on.title))
    return out


async def payees_known(
    api: ConsonanceAPI, contracts: dict[int, list[PayeeContract]]
) -> dict[int, Payee]:
    """Every Consonance contact as a possible payee, with its contract references (the names
    and IDs of its contracts)."""
    out: dict[int, Payee] = {}
    async for contact in api.iter_contacts():
        refs = [
            ref
            for c in contracts.get(contact.id, ())
            for ref in (c.contract.contract_name, f"contract {c.contract.id}")
            if ref
        ]
        out[contact.id] = Payee(contact_id=contact.id, name=contact.name, contract_refs=tuple(refs))
    return out


def _safe(text: str) -> str:
    """A name made safe for one path segment, in ASCII (some servers mangle the rest):
    ``Zoë O'Brien`` -> ``Zoe-O-Brien``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text).strip("-.")
    return cleaned or "payee"


def destinations(
    cfg: FinanceOutFlow, payee: Payee, batch: str, folder_of: FolderOf
) -> tuple[Destination, ...] | None:
    """Where a resolved payee's statement goes (None: no destination configured)."""
    found = cfg.route_of(payee.contact_id)
    if found is None or found[1].partner is None:
        return None
    role, route = found
    assert route.partner is not None
    sub = route.subfolder.format(contact=payee.contact_id, name=_safe(payee.name))
    base = folder_of(route.partner, route.folder)
    out = [Destination(partner=route.partner, folder=_join(base, sub), role=role)]
    if cfg.finance_copy is not None:
        copy = cfg.finance_copy
        base = folder_of(copy.partner, copy.folder)
        out.append(
            Destination(
                partner=copy.partner,
                folder=_join(base, copy.subfolder.format(batch=_safe(batch))),
                role="finance",
            )
        )
    return tuple(out)


def _join(base: str, sub: str) -> str:
    sub = sub.strip("/")
    return str(PurePosixPath(base) / sub) if sub else base


def resolve_statements(
    cfg: FinanceOutFlow,
    batch: BatchRecord,
    pending: Sequence[StatementRecord],
    everyone: Sequence[StatementRecord],
    contacts: dict[int, Payee],
    folder_of: FolderOf,
    store: Store,
) -> list[StatementRecord]:
    """Resolve the ``pending`` statements of a batch (``everyone``: all its statements, whose
    payees no statement may name but its own); returns them as recorded."""
    batch_ids = {
        c
        for s in everyone
        if (c := contact_in_name(cfg.statement_pattern, s.file_name)) is not None
    }
    done: list[StatementRecord] = []
    for statement in pending:
        try:
            text = pdf_text(Path(statement.original_path))
        except StatementUnreadable as exc:
            done.append(
                store.set_statement(statement.id, "quarantined", actor=ACTOR, reason=str(exc))
            )
            continue
        found = resolve(statement.file_name, text, cfg.statement_pattern, contacts, batch_ids)
        if not found.resolved or found.payee is None:  # a quarantined one may name a payee
            done.append(
                store.set_statement(
                    statement.id,
                    "quarantined",
                    actor=ACTOR,
                    reason=found.reason,
                    details={"kind": found.kind},
                )
            )
            continue
        payee = found.payee
        where = destinations(cfg, payee, batch.name, folder_of)
        if where is None:
            route = cfg.route_of(payee.contact_id)
            email = route[1].email if route and isinstance(route[1], PayeeRoute) else None
            reason = (
                f"held for e-mail to {email}: payee {payee.name} (contact {payee.contact_id}) "
                "has no partner (send it by hand; this release sends no e-mail)"
                if email
                else f"no destination for payee {payee.name} (contact {payee.contact_id}): "
                "add it to the flow's payees or to an agency's payees; nothing is guessed"
            )
            done.append(
                store.set_statement(
                    statement.id,
                    "held",
                    actor=ACTOR,
                    reason=reason,
                    payee_id=payee.contact_id,
                    payee_name=payee.name,
                )
            )
            continue
        done.append(
            store.set_statement(
                statement.id,
                "resolved",
                actor=ACTOR,
                reason="",  # clears a hold's reason
                payee_id=payee.contact_id,
                payee_name=payee.name,
                destinations=where,
            )
        )
    return done


# --- what each destination receives ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """One file a destination receives: made once, then the same bytes at every attempt."""

    local: Path
    name: str
    sha256: str
    size: int


def _route_for(cfg: FinanceOutFlow, destination: Destination, payee: int) -> Protection | None:
    if destination.role == "finance":
        return None
    found = cfg.route_of(payee)
    return found[1] if found is not None else None


def prepare(
    cfg: FinanceOutFlow,
    batch: BatchRecord,
    statement: StatementRecord,
    destination: Destination,
    *,
    state_dir: Path,
    contracts: Sequence[PayeeContract],
    publisher: str,
    now: datetime,
) -> list[Prepared]:
    """The files one destination receives for one statement: the PDF (encrypted or
    password-protected when its route says so) and its CSV and JSON companions. Made once
    under ``state_dir`` and reused, so a retried or resumed delivery sends the same bytes
    (age encryption is not deterministic)."""
    assert statement.payee_id is not None and statement.payee_name is not None
    where = prepared_dir(state_dir, batch.flow) / str(batch.id) / str(statement.id)
    where = where / f"{destination.partner}-{_safe(destination.role)}"
    done = where / ".done"
    original = Path(statement.original_path)
    stem = original.stem
    route = _route_for(cfg, destination, statement.payee_id)
    mode: Literal["none", "age", "pdf_password"] = route.encrypt if route is not None else "none"
    if not done.exists():
        where.mkdir(parents=True, exist_ok=True)
        plain: list[Path] = [where / original.name]
        shutil.copyfile(original, plain[0])
        if cfg.companions and mode != "pdf_password":
            start, end = period_dates(batch.period) if batch.period else (None, None)
            facts = companion.StatementFacts(
                file_name=original.name,
                sha256=statement.sha256,
                payee_contact_id=statement.payee_id,
                payee_name=statement.payee_name,
                licensor=publisher,
                statement_date=now.date(),
                period_start=start,
                period_end=end,
                contracts=tuple(c.contract for c in contracts),
                titles={c.contract.id: c.title for c in contracts},
                currency=cfg.currency,
                isbns=companion.isbns_in_text(pdf_text(original)),
            )
            csv_bytes, json_bytes = companion.companion_csv(facts), companion.companion_json(facts)
            for suffix, data in ((".csv", csv_bytes), (".json", json_bytes)):
                (where / f"{stem}{suffix}").write_bytes(data)
                plain.append(where / f"{stem}{suffix}")
        if mode == "age":
            assert route is not None
            for path in plain:
                protect.age_encrypt(path, path.with_name(path.name + ".age"), route.age_recipients)
                path.unlink()
        elif mode == "pdf_password":
            assert route is not None and route.pdf_password is not None
            protected = plain[0].with_name(plain[0].name + ".tmp")
            protect.pdf_protect(plain[0], protected, route.pdf_password.get_secret_value())
            protected.replace(plain[0])
        done.write_text(mode + "\n")
    files = sorted(p for p in where.iterdir() if not p.name.startswith("."))
    made = [(p, *sha256_file(p)) for p in files]
    return [Prepared(p, p.name, digest, size) for p, size, digest in made]


def statement_request(
    flow: str,
    batch: BatchRecord,
    statement: StatementRecord,
    destination: Destination,
    files: Sequence[Prepared],
    *,
    trigger: str,
    generation: int = 0,
) -> DeliveryRequest:
    """One destination's package for one statement: its own ledger rows, keyed by (partner,
    the payee's folder and file name, SHA-256)."""
    return DeliveryRequest(
        flow=flow,
        partner=destination.partner,
        package=f"statement {statement.file_name} ({batch.name}, {destination.role})",
        files=tuple(
            FileToSend(
                source=str(f.local),
                remote_path=str(PurePosixPath(destination.folder) / f.name),
                sha256=f.sha256,
                size=f.size,
            )
            for f in files
        ),
        generation=generation,
        trigger=trigger,
    )


# --- reports (the flow's plan) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportPackage:
    """One partner's reports of one run (a ``flows.base.Outbound``)."""

    partner: str
    plan: PackagePlan
    stamp: str

    @property
    def label(self) -> str:
        return f"finance reports {self.stamp}"

    @property
    def isbn(self) -> str | None:
        return None


async def _contracts_and_works(api: ConsonanceAPI) -> tuple[list[Contract], list[Work]]:
    works = [w async for w in api.iter_works()]
    contracts = [c async for c in api.iter_contracts()]
    return contracts, works


def render_reports(
    cfg: FinanceOutFlow,
    contracts: Sequence[Contract],
    works: Sequence[Work],
    *,
    publisher: str,
    out: Path,
    now: datetime,
) -> list[Path]:
    """The configured reports in the configured formats, written into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for kind in cfg.reports:
        for fmt in cfg.report_formats:
            path = out / f"{kind}_{now:%Y%m%d}.{fmt}"
            path.write_bytes(
                finance_reports.render(
                    kind,
                    fmt,
                    contracts,
                    works,
                    publisher=publisher,
                    as_of=now.date(),
                    generated_at=now,
                )
            )
            written.append(path)
    return written


async def plan(
    ctx: FlowContext,
    name: str,
    config: FinanceOutFlow,
    isbns: Sequence[str],
    event: ChangeEvent | None,
) -> PlannedRun:
    """A run: take in and resolve new statement batches (not in a dry run), then render the
    reports for ``partners``. Statements never leave here: ``finance approve`` and ``finance
    send`` send them."""
    run = PlannedRun(flow=name, kind="finance_out")
    if not ctx.dry_run:
        source = statements_dir(config, ctx.state_dir)

        def taken(batch: str) -> bool:
            return ctx.store.find_finance_batch(name, batch) is not None

        for path in settled_batches(source, config.settle_seconds, ctx.now.timestamp(), taken):
            try:
                take_batch(ctx.store, name, path, ctx.state_dir)
            except ConsonanceSftpError as exc:
                run.skipped.append(SkippedItem(f"statement batch {path.name}", str(exc)))
        # New batches, and statements held for a destination the config may name by now.
        for batch in ctx.store.list_finance_batches(flow=name):
            waiting = batch.counts.get("received") or batch.counts.get("held")
            if waiting and await resolve_batch(ctx, name, config, batch):
                run.notes.append(_batch_note(ctx.store, batch))
    if not config.reports:
        return run
    contracts, works = await _contracts_and_works(ctx.api)
    publisher = config.publisher_name
    out = ctx.state_dir / "finance" / "reports" / name / ctx.now.strftime("%Y%m%dT%H%M%S")
    paths = render_reports(config, contracts, works, publisher=publisher, out=out, now=ctx.now)
    files = tuple(
        PlannedFile(role="asset", remote_path=p.name, source=p, sha256=d, size=s)
        for p in paths
        for s, d in (sha256_file(p),)
    )
    for partner in config.partners:
        run.outbounds.append(
            ReportPackage(
                partner=partner,
                plan=PackagePlan(files=files, planned_at=ctx.now),
                stamp=ctx.now.strftime("%Y-%m-%d"),
            )
        )
    return run


def _batch_note(store: Store, batch: BatchRecord) -> str:
    counts = (store.get_finance_batch(batch.id) or batch).counts
    states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()) if n)
    return (
        f"statement batch {batch.name}: {states or 'no statements'}; nothing is sent before "
        f"`consonance-sftp finance approve {batch.name}` and `finance send {batch.name}` "
        f"(`finance show {batch.name}` lists each one)"
    )


async def resolve_batch(
    ctx: FlowContext, name: str, config: FinanceOutFlow, batch: BatchRecord
) -> list[StatementRecord]:
    """Resolve the batch's statements still to resolve: those ``received``, and those
    ``held`` whose payee the config now routes (the others stay held without a look, so a
    held statement costs no Consonance read at each run)."""
    everyone = ctx.store.list_statements(batch.id)
    pending = [
        s
        for s in everyone
        if s.state == "received"
        or (
            s.state == "held"
            and s.payee_id is not None
            and (route := config.route_of(s.payee_id)) is not None
            and route[1].partner is not None
        )
    ]
    if not pending:
        return []
    contacts = await payees_known(ctx.api, await contracts_by_payee(ctx.api))

    def folder_of(partner: str, key: str) -> str:
        return ctx.folder(config.model_copy(update={"folder": key}), partner)

    return resolve_statements(config, batch, pending, everyone, contacts, folder_of, ctx.store)
