"""The intake workflow: take one file in from a partner's inbox, exactly once, nothing lost.

One DBOS workflow per version of a partner's file: its ID is derived from (flow, partner, remote
path, size, mtime) (``ids.intake_workflow_id``), so the next poll, seeing the same file again,
attaches to this workflow instead of fetching it twice. Checkpointed steps, each safe to re-run
after a crash (steps are at-least-once):

* ``fetch`` downloads into a staging file with a resume journal, checks the remote file did
  not change, fsyncs and renames it into place under the inbox store (or, for a dangerous or
  unacceptable name, under a safe name in the quarantine folder); returns size and SHA-256. A
  re-run after a completed download finds the local file and only hashes it again.
* ``record`` writes the intake ledger row (one per partner, path, size and mtime) with outcome
  ``stored`` or ``quarantined`` and the reason, and the audit event.
* ``hand-off`` gives the stored file to the flow kind's handler when one is bound (none yet:
  the file stays "stored, awaiting processing").
* ``post-action`` only then leaves, deletes or moves the remote file as the partner's settings
  say, and only if the server still holds this very version (a newer upload under the same
  name is left for the next poll).

Retryable errors are retried inside the step with the deliveries' exponential backoff. A
terminal fetch error (or exhausted retries) records a ``failed`` row with the reason and ends the
workflow in DBOS's ``ERROR`` state; the remote file is then untouched. The collaborators are
bound by ``Engine.launch`` (``bind_dependencies``), as for deliveries.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbos import DBOS

from consonance_sftp.errors import ConsonanceSftpError, EngineError
from consonance_sftp.logs import get_logger, log_context
from consonance_sftp.models import Alert, AlertSeverity, AuditAction, IntakeOutcome
from consonance_sftp.ports.delivery import Fence
from consonance_sftp.ports.intake import (
    FetchedFile,
    HandOffResult,
    IntakeHandler,
    IntakeLedger,
    IntakeLedgerEntry,
    IntakeRequest,
    IntakeTransport,
)
from consonance_sftp.ports.store import IntakeRecord, Store

from .delivery import MAX_RECOVERY_ATTEMPTS, failure_reason, step_options
from .settings import RetryPolicy

log = get_logger(__name__)

INTAKE_WORKFLOW = "consonance.ingest"
"""The intake workflow's DBOS name. Persisted: DBOS records it with every workflow and recovers
a pending workflow by it, so it keeps the word it had before the intake path had one name (a
new name would orphan the intakes an older version left pending)."""
MAX_NAME_BYTES = 200
"""Longest name kept as is: the local staging name adds a few characters, and most file
systems stop at 255 bytes."""


class IntakeFailed(EngineError):
    """Taking a file in ended for good: a non-retryable error, or retries exhausted. The
    message is the reason the intake ledger and ``status`` show."""


# --- names ---------------------------------------------------------------------------------


def raw_bytes(text: str) -> bytes:
    """The bytes a name or path had on the server. The SFTP client decodes names as UTF-8
    with ``surrogateescape``, so a byte that is not UTF-8 survives as a lone surrogate."""
    return text.encode("utf-8", "surrogateescape")


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 as is (no surrogate code points)."""
    return not any("\ud800" <= c <= "\udfff" for c in text)


def printable_path(path: str) -> str:
    """A path (or a message naming one) as it can be stored, logged and shown: itself when it
    is UTF-8, else with each byte that is not shown as ``\\xNN`` (the ledger keeps the original
    bytes in hex)."""
    if is_utf8(path):
        return path
    try:
        return raw_bytes(path).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no SFTP name decodes to: show its code point
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


def name_problem(name: str) -> str | None:
    """Why a partner's file name is not acceptable as a local name (None: it is).

    Such a file is still taken in, under a safe name in the quarantine folder, with this
    reason on its ledger row: a name that could escape its folder, hide itself, pass as a
    command-line option or break a terminal is never used as is.
    """
    if not name:
        return "the file name is empty"
    if not is_utf8(name):
        return (
            "the file name is not valid UTF-8 (its bytes, in hex: "
            f"{raw_bytes(name).hex()}); kept under a safe name"
        )
    if "/" in name or "\\" in name:
        return "the file name contains a path separator"
    if name in (".", "..") or ".." in name.replace("\\", "/").split("/"):
        return "the file name is '.' or '..'"
    bad = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")})
    if bad:
        return "the file name contains control characters: " + ", ".join(
            f"U+{ord(c):04X}" for c in bad
        )
    if name.startswith("-"):
        return "the file name starts with '-' (it could pass as a command-line option)"
    if name.startswith("."):
        return "the file name starts with '.' (a hidden file)"
    if name != name.strip():
        return "the file name starts or ends with white space"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"the file name is longer than {MAX_NAME_BYTES} bytes"
    return None


# Scripts whose letters pass for one another (Latin "a", Cyrillic "а", Greek "α"): a name that
# mixes them may be made to look like another name. Other mixes (Kanji with Hiragana) are normal.
_LOOKALIKE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC"})


def _script(char: str) -> str | None:
    """The script of a letter, from its Unicode name (``CYRILLIC SMALL LETTER A``)."""
    if not char.isalpha():
        return None
    words = unicodedata.name(char, "").split()
    return words[0] if words else None


def name_notes(name: str) -> tuple[str | None, str | None]:
    """What a person should know about an acceptable name, and its NFC form when the name is
    not in it: ``(note, nfc)``, ``(None, None)`` for an ordinary name.

    Such a file is stored under its own name, but the note goes on its ledger row, its audit
    event and ``run``'s output: a name in NFD (decomposed accents, as macOS writes them) is a
    different name, byte for byte, from the same name typed on most other systems, and a name
    that mixes look-alike scripts can pass for another file. (Invisible and bidi control
    characters make a name dangerous: ``name_problem`` quarantines those.)
    """
    if not is_utf8(name):
        return None, None
    notes: list[str] = []
    nfc = unicodedata.normalize("NFC", name)
    if nfc != name:
        marks = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.combining(c)})
        notes.append(
            "the name is not in NFC form (decomposed characters"
            + (f": {', '.join(marks)}" if marks else "")
            + f"); it looks like {nfc!r} but is not the same bytes"
        )
    # Word by word: a Greek title with a ".pdf" suffix is fine, "pаypal" (a Cyrillic "а") is not.
    mixed: set[str] = set()
    for word in re.findall(r"[^\W\d_]+", nfc):
        scripts = {s for s in map(_script, word) if s is not None}
        if len(scripts & _LOOKALIKE_SCRIPTS) > 1:
            mixed |= scripts & _LOOKALIKE_SCRIPTS
    if mixed:
        shown = ", ".join(sorted(s.title() for s in mixed))
        notes.append(f"the name mixes look-alike scripts ({shown}): it may pass for another name")
    nfkc = unicodedata.normalize("NFKC", nfc)
    if nfkc != nfc:
        notes.append(f"the name has look-alike compatibility characters (NFKC: {nfkc!r})")
    return ("; ".join(notes) or None), (nfc if nfc != name else None)


_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+()-]+")


def safe_local_name(name: str) -> str:
    """A harmless local name for a quarantined file: letters, digits and ``._+()-`` only,
    never starting with ``.`` or ``-``, at most 100 characters; the original name stays on the
    ledger row (``remote_path``)."""
    cleaned = _UNSAFE_CHARS.sub("_", name).lstrip(".-_")[:100]
    return cleaned or "file"


# --- collaborators -------------------------------------------------------------------------


@dataclass(slots=True)
class Dependencies:
    transport: IntakeTransport
    ledger: IntakeLedger
    fence: Fence
    retry: RetryPolicy
    executor_id: str
    handlers: Mapping[str, IntakeHandler] = field(default_factory=dict)


_deps: Dependencies | None = None


def bind_dependencies(deps: Dependencies | None) -> None:
    global _deps
    _deps = deps


def _current() -> Dependencies:
    if _deps is None:
        raise EngineError(
            "the intake workflow has no transport in this process",
            hint="Start the engine with an intake transport and intake ledger (App.engine).",
        )
    return _deps


class StoreIntakeLedger:
    """``IntakeLedger`` on the Store port: the intake ledger row, the audit trail and alerts.

    Rows and events carry the path as ``printable_path`` shows it (a name that is not UTF-8
    could not be stored as text), with the original bytes in ``raw_name``.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, record: IntakeLedgerEntry) -> int:
        req = record.request
        fetched = record.fetched
        shown = printable_path(req.remote_path)
        name = posixpath.basename(req.remote_path)
        note, nfc = name_notes(name)
        wanted = IntakeRecord(
            partner=req.partner,
            remote_path=shown,
            size=req.size,
            remote_mtime=req.mtime,
            flow=req.flow,
            sha256=fetched.sha256 if fetched else None,
            local_path=fetched.local_path if fetched else None,
            outcome=record.outcome,
            # An error message may quote the name as the server has it.
            reason=None if record.reason is None else printable_path(record.reason),
            work_id=record.work_id,
            product_id=record.product_id,
            name_note=note,
            name_nfc=nfc,
            raw_name=None if is_utf8(name) else raw_bytes(name).hex(),
        )
        existing = self.store.find_intake(req.partner, shown, req.size, req.mtime)
        row = existing or self.store.record_intake(wanted)
        assert row.id is not None
        changed = [
            name
            for name in ("outcome", "reason", "sha256", "local_path", "work_id", "product_id")
            if getattr(wanted, name) is not None and getattr(row, name) != getattr(wanted, name)
        ]
        clear_reason = record.reason is None and bool(row.reason)
        if existing is not None and not changed and not clear_reason:
            return row.id  # a replayed step: already recorded, and on the audit trail
        if changed or clear_reason:
            # A retried file that succeeded clears the old reason ("" clears, None keeps).
            self.store.update_intake(
                row.id,
                outcome=wanted.outcome,
                reason="" if clear_reason else wanted.reason,
                sha256=wanted.sha256,
                local_path=wanted.local_path,
                work_id=wanted.work_id,
                product_id=wanted.product_id,
            )
        details: dict[str, Any] = {
            "workflow_id": record.workflow_id,
            "executor": record.executor_id,
            "sha256": wanted.sha256,
            "local_path": wanted.local_path,
            "reason": wanted.reason,
            "work_id": record.work_id,
            "product_id": record.product_id,
        }
        if note:
            details["name_note"] = note
        if nfc:
            details["name_nfc"] = nfc
        if wanted.raw_name:
            details["raw_name"] = wanted.raw_name
        self.event(AuditAction(f"intake.{record.outcome.value}"), req, details)
        if record.outcome is IntakeOutcome.FAILED:
            # Once per failure: a replayed step returned above, before this.
            self.alert(req, wanted.reason or "unknown error", record.workflow_id)
        return row.id

    def event(self, action: str, request: IntakeRequest, details: dict[str, Any]) -> None:
        if isinstance(details.get("reason"), str):
            details = {**details, "reason": printable_path(details["reason"])}
        self.store.append_audit(
            actor="engine",
            action=action,
            subject=f"{request.partner}:{printable_path(request.remote_path)}",
            details={
                "flow": request.flow,
                "size": request.size,
                "mtime": request.mtime,
                "trigger": request.trigger,
                **details,
            },
        )

    def alert(self, request: IntakeRequest, reason: str, workflow_id: str) -> None:
        """One alert for a final failure of taking a file in (after the last retry)."""
        shown = printable_path(request.remote_path)
        reason = printable_path(reason)
        self.store.raise_alert(
            Alert(
                severity=AlertSeverity.WARNING,
                kind="intake_failed",
                message=(
                    f"taking in {shown} from partner {request.partner!r} (flow "
                    f"{request.flow!r}) failed: {reason}"
                ),
                partner=request.partner,
                flow=request.flow,
                details={"path": shown, "workflow_id": workflow_id, "reason": reason},
            )
        )

    def supersede_incomplete(self, request: IntakeRequest, fetched: FetchedFile) -> list[int]:
        """Mark the earlier versions of this file that were taken before it was whole.

        An earlier row of the same partner and path, smaller, whose SHA-256 is the SHA-256 of
        this version's first bytes, was a copy of a file still being written (the partner
        paused longer than ``stable_interval``). It becomes ``superseded-incomplete``, with an
        audit event; this version's row names it in ``supersedes``. Returns their ids.
        """
        shown = printable_path(request.remote_path)
        earlier = [
            row
            for row in self.store.list_intakes(partner=request.partner, remote_path=shown)
            if row.outcome in (IntakeOutcome.STORED, IntakeOutcome.QUARANTINED)
            and row.sha256
            and 0 < row.size < fetched.size
        ]
        if not earlier:
            return []
        this = self.store.find_intake(request.partner, shown, request.size, request.mtime)
        prefixes = _prefix_hashes(Path(fetched.local_path), sorted({r.size for r in earlier}))
        marked: list[int] = []
        for row in earlier:
            assert row.id is not None
            if prefixes.get(row.size) != row.sha256:
                continue  # a different file under the same name, not a growing one
            reason = (
                f"incomplete: taken at {row.size:,} bytes while the partner was still writing "
                f"it; the later version ({fetched.size:,} bytes"
                + (f", intake #{this.id}" if this is not None else "")
                + ") begins with exactly these bytes"
            )
            self.store.update_intake(
                row.id, outcome=IntakeOutcome.SUPERSEDED_INCOMPLETE, reason=reason
            )
            self.event(
                AuditAction.INTAKE_SUPERSEDED_INCOMPLETE,
                request,
                {
                    "intake_id": row.id,
                    "incomplete_size": row.size,
                    "incomplete_sha256": row.sha256,
                    "incomplete_mtime": row.remote_mtime,
                    "superseded_by": this.id if this is not None else None,
                    "reason": reason,
                },
            )
            log.warning(
                "intake #%s of %s from %s was incomplete (%s of %s bytes): superseded",
                row.id,
                shown,
                request.partner,
                row.size,
                fetched.size,
            )
            marked.append(row.id)
        if marked and this is not None and this.id is not None:
            self.store.update_intake(this.id, supersedes=max(marked))
        return marked


def _prefix_hashes(path: Path, sizes: list[int]) -> dict[int, str]:
    """SHA-256 of the first ``size`` bytes of ``path``, for each size, in one read."""
    digest = hashlib.sha256()
    out: dict[int, str] = {}
    done = 0
    with path.open("rb") as fh:
        for size in sizes:
            while done < size:
                chunk = fh.read(min(size - done, 4 * 1024 * 1024))
                if not chunk:
                    return out
                digest.update(chunk)
                done += len(chunk)
            out[size] = digest.copy().hexdigest()
    return out


# --- steps ---------------------------------------------------------------------------------


async def _fetch(req: IntakeRequest, quarantine: bool) -> dict[str, Any]:
    deps = _current()
    deps.fence.check()
    fetched = await deps.transport.fetch(req, quarantine=quarantine, fence=deps.fence)
    if fetched.size != req.size:
        raise ConsonanceSftpError(
            f"fetched {fetched.size} bytes of {req.remote_path!r} from partner "
            f"{req.partner!r}, listed as {req.size}",
            retryable=False,
        )
    return fetched.to_dict()


async def _record(
    workflow_id: str,
    req: IntakeRequest,
    fetched: dict[str, Any] | None,
    outcome: str,
    reason: str | None,
    handed: dict[str, Any] | None = None,
) -> int:
    deps = _current()
    record = IntakeLedgerEntry(
        workflow_id=workflow_id,
        request=req,
        outcome=IntakeOutcome(outcome),
        executor_id=deps.executor_id,
        fetched=FetchedFile.from_dict(fetched) if fetched else None,
        reason=reason,
        work_id=(handed or {}).get("work_id"),
        product_id=(handed or {}).get("product_id"),
    )
    return await asyncio.to_thread(deps.ledger.record, record)


async def _hand_off(req: IntakeRequest, fetched: dict[str, Any]) -> dict[str, Any] | None:
    handler = _current().handlers.get(req.kind)
    if handler is None:
        return None
    result: HandOffResult = await handler.handle(req, FetchedFile.from_dict(fetched))
    return {
        "outcome": result.outcome.value,
        "reason": result.reason,
        "work_id": result.work_id,
        "product_id": result.product_id,
    }


def _handles(handler: IntakeHandler | None, req: IntakeRequest) -> bool:
    """Whether the hand-off runs for this file: a handler is bound for its kind and does not
    say it leaves this flow's files alone (``applies``, read from the config: an intake flow
    without ``match`` only stores). A config reload between a crash and its recovery may change
    the answer; the steps after it are then re-run, which each of them allows."""
    if handler is None:
        return False
    applies = getattr(handler, "applies", None)
    return applies is None or bool(applies(req))


async def _post_action(workflow_id: str, req: IntakeRequest) -> str:
    deps = _current()
    deps.fence.check()
    done = await deps.transport.post_action(req, deps.fence)
    await asyncio.to_thread(
        deps.ledger.event,
        AuditAction.INTAKE_POST_ACTION,
        req,
        {"workflow_id": workflow_id, "done": done},
    )
    return done


async def _note(workflow_id: str, req: IntakeRequest, action: AuditAction, reason: str) -> None:
    deps = _current()
    await asyncio.to_thread(
        deps.ledger.event, action, req, {"workflow_id": workflow_id, "reason": reason}
    )


async def _alert(workflow_id: str, req: IntakeRequest, reason: str) -> None:
    await asyncio.to_thread(_current().ledger.alert, req, reason, workflow_id)


async def _check_growth(req: IntakeRequest, fetched: dict[str, Any]) -> list[int]:
    ledger = _current().ledger
    return await asyncio.to_thread(ledger.supersede_incomplete, req, FetchedFile.from_dict(fetched))


# --- the workflow --------------------------------------------------------------------------


@DBOS.workflow(name=INTAKE_WORKFLOW, max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def intake(request: dict[str, Any]) -> dict[str, Any]:
    """Take one file version in from one partner; returns where it is kept and what was done
    to the remote file."""
    req = IntakeRequest.from_dict(request)
    workflow_id = DBOS.workflow_id or ""
    deps = _current()
    retry = deps.retry
    problem = name_problem(posixpath.basename(req.remote_path))
    shown = printable_path(req.remote_path)
    with log_context(workflow=workflow_id, partner=req.partner, flow=req.flow):
        try:
            fetched: dict[str, Any] = await DBOS.run_step_async(
                step_options("fetch", retry), _fetch, req, problem is not None
            )
        except Exception as exc:
            reason = failure_reason(exc)
            await DBOS.run_step_async(
                step_options("record-failure", retry),
                _record,
                workflow_id,
                req,
                None,
                IntakeOutcome.FAILED.value,
                reason,
            )
            log.warning("intake of %s from %s failed: %s", shown, req.partner, reason)
            raise IntakeFailed(
                f"taking in {shown!r} from partner {req.partner!r} failed: {reason}",
                hint="The file was left on the partner's server; 'consonance-sftp retry ID' "
                "takes it in again once the cause is fixed.",
            ) from None
        outcome = IntakeOutcome.QUARANTINED if problem else IntakeOutcome.STORED
        await DBOS.run_step_async(
            step_options("record", retry),
            _record,
            workflow_id,
            req,
            fetched,
            outcome.value,
            problem,
        )
        problems: list[str] = []
        handed: dict[str, Any] | None = None
        if problem is None and _handles(deps.handlers.get(req.kind), req):
            try:
                handed = await DBOS.run_step_async(
                    step_options("hand-off", retry), _hand_off, req, fetched
                )
            except Exception as exc:
                reason = f"processing failed: {failure_reason(exc)}"
                problems.append(reason)
                await DBOS.run_step_async(
                    step_options("record-hand-off-failure", retry),
                    _record,
                    workflow_id,
                    req,
                    fetched,
                    outcome.value,
                    reason,
                )
            if handed is not None:
                outcome = IntakeOutcome(handed["outcome"])
                await DBOS.run_step_async(
                    step_options("record-hand-off", retry),
                    _record,
                    workflow_id,
                    req,
                    fetched,
                    outcome.value,
                    handed.get("reason"),
                    handed,
                )
        # The file is stored, checksummed and recorded: only now may the remote copy go.
        try:
            done: str = await DBOS.run_step_async(
                step_options("post-action", retry), _post_action, workflow_id, req
            )
        except Exception as exc:
            reason = f"post-action failed: {failure_reason(exc)}"
            problems.append(reason)
            done = "failed"
            await DBOS.run_step_async(
                step_options("record-post-action-failure", retry),
                _note,
                workflow_id,
                req,
                AuditAction.INTAKE_POST_ACTION_FAILED,
                reason,
            )
        # Last, so workflows started by an earlier build (without this step) replay cleanly.
        superseded: list[int] = await DBOS.run_step_async(
            step_options("check-growth", retry), _check_growth, req, fetched
        )
        if problems:
            reason = "; ".join(problems)
            await DBOS.run_step_async(
                step_options("alert", retry), _alert, workflow_id, req, reason
            )
            log.warning("intake of %s from %s: stored, but %s", shown, req.partner, reason)
            raise IntakeFailed(
                f"{shown!r} from partner {req.partner!r} is stored "
                f"({outcome.value}, {fetched['local_path']}), but {reason}",
            )
        note, nfc = name_notes(posixpath.basename(req.remote_path))
        log.info(
            "intake of %s from %s (flow %s): %s, %s bytes%s%s%s",
            shown,
            req.partner,
            req.flow,
            outcome.value,
            fetched["size"],
            f" ({problem})" if problem else "",
            f"; note: {note}" if note else "",
            f"; completes incomplete intake #{', #'.join(map(str, superseded))}"
            if superseded
            else "",
        )
        return {
            "workflow_id": workflow_id,
            "outcome": outcome.value,
            # Why it was quarantined, or what the hand-off did (``run`` prints it).
            "reason": problem or (handed or {}).get("reason"),
            "local_path": fetched["local_path"],
            "sha256": fetched["sha256"],
            "size": fetched["size"],
            "resumed_from": fetched.get("resumed_from", 0),
            "post_action": done,
            "name_note": note,
            "name_nfc": nfc,
            "supersedes": superseded,
        }
