"""What the web console shows and its people: local users, login sessions, and the read
models of its pages (overview, deliveries, a title's timeline, failures).

Users have a role: ``viewer`` reads every page, ``operator`` also acts (retry, resend,
acknowledge), ``admin`` also manages users (``users add``). Passwords are hashed with bcrypt
(the store never sees one); a session is kept by the SHA-256 of its cookie's random token, with
the CSRF token its forms echo. Acting goes through ``operations`` and ``alerts`` (the same calls
as the CLI); this module only reads, and writes users and sessions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import bcrypt

from consonance_sftp.app.alerts import AlertRecord, open_alerts
from consonance_sftp.app.dispatch import is_intake, remote_files, run_flow
from consonance_sftp.app.notify import FailingTarget, Notifier
from consonance_sftp.app.operations import Operations, Schedule, Status, WorkItem
from consonance_sftp.app.quarantine import label_of, quarantined, show
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.app.runner import executor_running as _executor_running
from consonance_sftp.app.serving import event_flows
from consonance_sftp.config.archive import parse_duration
from consonance_sftp.config.hostkeys import fingerprint_of
from consonance_sftp.errors import ConsonanceSftpError, ValidationFailed
from consonance_sftp.flows.intake_match import KINDS
from consonance_sftp.models import AuditAction, DeliveryOutcome
from consonance_sftp.ports.delivery import DeliveryRecord
from consonance_sftp.ports.store import AssetVersion, AuditEvent, IntakeRecord, Store
from consonance_sftp.ports.users import ROLES, AccessEnded, ApiToken, ConsoleSession, ConsoleUser

if TYPE_CHECKING:
    from consonance_sftp.app import App

__all__ = [
    "DEFAULT_TOKEN_LIFETIME",
    "INTAKE_KINDS",
    "OUTCOMES",
    "ROLES",
    "AccessEnded",
    "ApiToken",
    "AuditEvent",
    "ConsoleSession",
    "ConsoleUser",
    "DeliveryOutcome",
    "DeliveryRecord",
    "DryRun",
    "Failures",
    "FlowRow",
    "Hint",
    "IntakeRecord",
    "Overview",
    "PartnerRow",
    "Preview",
    "Store",
    "Timeline",
    "TokenExpired",
    "add_token",
    "add_user",
    "audit_actions",
    "audit_events",
    "authenticate",
    "can",
    "change_password",
    "check_login",
    "close_session",
    "deliveries",
    "disable_user",
    "dry_run",
    "enable_user",
    "executor_running",
    "failures",
    "login_refused",
    "new_token",
    "open_session",
    "overview",
    "parse_lifetime",
    "partners",
    "preview",
    "quarantine_rows",
    "remove_user",
    "resend",
    "retry",
    "revoke_token",
    "run_now",
    "send_test_file",
    "send_test_notification",
    "session_of",
    "timeline",
    "token_user",
]

log = logging.getLogger(__name__)
OUTCOMES = tuple(o.value for o in DeliveryOutcome)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
MIN_PASSWORD = 10
MAX_PASSWORD_BYTES = 72  # bcrypt reads no further: refuse rather than cut silently
SESSION_HOURS = 12
_RANK = {role: i for i, role in enumerate(ROLES)}
# A hash to check a password against when the user is unknown: the answer takes as long as
# for a known user, so timing does not tell which names exist.
_DUMMY_HASH = bcrypt.hashpw(b"not a password of anyone", bcrypt.gensalt()).decode()


# --- users and sessions --------------------------------------------------------------------


def can(role: str, needed: str) -> bool:
    """Does ``role`` allow what ``needed`` allows (viewer < operator < admin)?"""
    return _RANK.get(role, -1) >= _RANK[needed]


def hash_password(password: str) -> str:
    raw = password.encode()
    if len(password) < MIN_PASSWORD:
        raise ConsonanceSftpError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise ConsonanceSftpError(
            f"a password may hold at most {MAX_PASSWORD_BYTES} bytes (bcrypt reads no more)"
        )
    return bcrypt.hashpw(raw, bcrypt.gensalt()).decode()


def _ended(ended: AccessEnded) -> dict[str, object]:
    """An audit event's details of ended access: the token IDs revoked, the sessions closed."""
    return {"tokens_revoked": ended.token_ids, "sessions_closed": ended.sessions}


def add_user(
    store: Store, name: str, role: str, password: str, *, by: str, replace: bool = False
) -> ConsoleUser:
    """Add a console user (``replace``: or give one a new role and password, which revokes its
    API tokens and ends its sessions); recorded as ``user.added`` (the role, never the
    password; for a replaced user also what access it ended)."""
    if not NAME.match(name):
        raise ConsonanceSftpError(
            f"user name {name!r}: use letters, digits and . _ @ - (at most 100)"
        )
    if role not in ROLES:
        raise ConsonanceSftpError(f"role {role!r}: one of {', '.join(ROLES)}")
    hashed = hash_password(password)
    details: dict[str, object] = {"role": role, "replaced": False}
    changed = (
        store.update_console_user(name, role=role, password_hash=hashed, why="password changed")
        if replace
        else None
    )
    if changed is not None:
        user, ended = changed
        details = {"role": role, "replaced": True, **_ended(ended)}
    else:
        user = store.add_console_user(name, role, hashed, by=by)
    store.append_audit(f"user:{by}", AuditAction.USER_ADDED, f"user:{name}", details)
    return user


def _known(store: Store, name: str) -> ConsoleUser:
    user = store.get_console_user(name)
    if user is None:
        raise ConsonanceSftpError(f"no console user named {name!r}")
    return user


def change_password(store: Store, name: str, password: str, *, by: str) -> AccessEnded:
    """A user's new password: every API token of the user is revoked and every session closed
    (whoever held them must log in, or be given a token, again); on the audit trail as
    ``user.password_changed`` with the token IDs revoked and the sessions closed."""
    _known(store, name)
    changed = store.update_console_user(
        name, password_hash=hash_password(password), why="password changed"
    )
    if changed is None:
        raise ConsonanceSftpError(f"no console user named {name!r}")
    ended = changed[1]
    store.append_audit(
        f"user:{by}", AuditAction.USER_PASSWORD_CHANGED, f"user:{name}", _ended(ended)
    )
    return ended


def disable_user(store: Store, name: str, *, by: str, reason: str = "") -> AccessEnded:
    """Disable a user: no login, its API tokens revoked and its sessions closed (enabling it
    again gives no token back); on the audit trail as ``user.disabled``."""
    changed = store.update_console_user(name, disabled=True, why="user disabled")
    if changed is None:
        raise ConsonanceSftpError(f"no console user named {name!r}")
    ended = changed[1]
    store.append_audit(
        f"user:{by}",
        AuditAction.USER_DISABLED,
        f"user:{name}",
        {"reason": reason[:1000], **_ended(ended)},
    )
    return ended


def enable_user(store: Store, name: str, *, by: str) -> ConsoleUser:
    """Let a disabled user log in again (with the password it had); ``user.enabled``."""
    changed = store.update_console_user(name, disabled=False, why="")
    if changed is None:
        raise ConsonanceSftpError(f"no console user named {name!r}")
    store.append_audit(f"user:{by}", AuditAction.USER_ENABLED, f"user:{name}", {})
    return changed[0]


def remove_user(store: Store, name: str, *, by: str) -> AccessEnded:
    """Remove a user with its sessions and API tokens; on the audit trail as ``user.removed``
    (the trail keeps what the user did)."""
    ended = store.remove_console_user(name)
    if ended is None:
        raise ConsonanceSftpError(f"no console user named {name!r}")
    store.append_audit(f"user:{by}", AuditAction.USER_REMOVED, f"user:{name}", _ended(ended))
    return ended


def check_login(store: Store, name: str, password: str) -> tuple[ConsoleUser | None, str]:
    """The user when the password is theirs and the user is not disabled, else None and why
    (for the audit trail; the same work for an unknown name)."""
    user = store.get_console_user(name) if NAME.match(name) else None
    stored = user.password_hash if user is not None else _DUMMY_HASH
    raw = password.encode()[:MAX_PASSWORD_BYTES]
    ok = bcrypt.checkpw(raw, stored.encode())
    if not ok or user is None:
        return None, "wrong name or password"
    if user.disabled:
        return None, "user disabled"
    return user, ""


def authenticate(store: Store, name: str, password: str) -> ConsoleUser | None:
    """The user when the password is theirs (and the user not disabled), else None."""
    return check_login(store, name, password)[0]


def login_refused(store: Store, name: str, client: str, why: str) -> None:
    """A refused login on the audit trail (the name tried, never the password)."""
    store.append_audit(
        "web", AuditAction.USER_LOGIN_REFUSED, f"user:{name[:100]}", {"client": client, "why": why}
    )


def new_token() -> str:
    """A random token (a session's, a form's CSRF token)."""
    return secrets.token_urlsafe(32)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(store: Store, user: ConsoleUser) -> tuple[str, ConsoleSession]:
    """A new session: the cookie's token (only its hash is stored) and the session."""
    token = new_token()
    now = datetime.now(UTC)
    session = ConsoleSession(
        token_hash=_digest(token),
        user_name=user.name,
        csrf_token=new_token(),
        created_at=now,
        expires_at=now + timedelta(hours=SESSION_HOURS),
    )
    store.add_console_session(session)
    return token, session


def session_of(store: Store, token: str) -> tuple[ConsoleSession, ConsoleUser] | None:
    """The live session a cookie's token names, with its user; None when unknown or expired,
    or when its user is disabled."""
    session = store.get_console_session(_digest(token))
    if session is None:
        return None
    user = store.get_console_user(session.user_name)
    return None if user is None or user.disabled else (session, user)


def close_session(store: Store, token: str) -> None:
    store.delete_console_session(_digest(token))


# --- JSON API tokens ------------------------------------------------------------------------

TOKEN_PREFIX = "csftp_"  # noqa: S105 (a prefix, not a secret)
# The prefix says what a token is when one turns up in a log or a secret scan.
DEFAULT_TOKEN_LIFETIME = timedelta(days=90)
MAX_TOKEN_LIFETIME = timedelta(days=5 * 366)  # longer than that: say "never", on purpose


class TokenExpired(ConsonanceSftpError):
    """A known API token past its expiry: refused (401), saying so and what to do."""


def parse_lifetime(text: str) -> timedelta | None:
    """``--expires-in``: ``"90d"``, ``"12h"``, ``"2w"`` ..., or ``"never"`` (None); anything
    else, or more than five years, a ``ConsonanceSftpError`` saying what is accepted."""
    value = text.strip().lower()
    if value == "never":
        return None
    if value in ("off", "none"):
        raise ConsonanceSftpError(f"{text!r}: write 'never' for a token that never expires")
    try:
        lifetime = parse_duration(value)
    except ValueError as exc:
        raise ConsonanceSftpError(str(exc).replace("'off'", "'never'")) from None
    if lifetime is None or lifetime > MAX_TOKEN_LIFETIME:
        raise ConsonanceSftpError(
            f"{text!r}: at most five years (or 'never', if it must never expire)"
        )
    return lifetime


def add_token(
    store: Store,
    user_name: str,
    *,
    by: str,
    label: str = "",
    expires_in: timedelta | None = DEFAULT_TOKEN_LIFETIME,
) -> tuple[str, ApiToken]:
    """A new API token for a user, refused after ``expires_in`` (None: never): the token
    (shown once; only its SHA-256 is stored) and its record; on the audit trail as
    ``user.token_added`` with its expiry."""
    user = store.get_console_user(user_name)
    if user is None:
        raise ConsonanceSftpError(f"no console user named {user_name!r}")
    if user.disabled:
        raise ConsonanceSftpError(f"console user {user_name!r} is disabled: enable it first")
    token = TOKEN_PREFIX + new_token()
    expires_at = None if expires_in is None else datetime.now(UTC) + expires_in
    record = store.add_api_token(
        _digest(token), user_name, label[:200], by=by, expires_at=expires_at
    )
    store.append_audit(
        f"user:{by}",
        AuditAction.USER_TOKEN_ADDED,
        f"user:{user_name}",
        {
            "token_id": record.id,
            "label": record.label,
            "expires_at": None if expires_at is None else expires_at.isoformat(),
        },
    )
    return token, record


def revoke_token(store: Store, token_id: int, *, by: str) -> ApiToken:
    """Revoke an API token (refused from then on); on the audit trail as
    ``user.token_revoked``."""
    record = store.revoke_api_token(token_id)
    if record is None:
        raise ConsonanceSftpError(f"no API token #{token_id}")
    store.append_audit(
        f"user:{by}",
        AuditAction.USER_TOKEN_REVOKED,
        f"user:{record.user_name}",
        {"token_id": record.id},
    )
    return record


def token_user(store: Store, token: str) -> ConsoleUser | None:
    """The user an API token (``Authorization: Bearer ...``) belongs to; None when the token is
    unknown or revoked, or its user disabled. A known token past its expiry raises
    ``TokenExpired`` (the console answers 401 with its message)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    record = store.get_api_token(_digest(token))
    if record is None:
        return None
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise TokenExpired(
            f"API token #{record.id} expired on {record.expires_at:%Y-%m-%d %H:%M} UTC: make a "
            f"new one with 'consonance-sftp users token {record.user_name}'"
        )
    user = store.get_console_user(record.user_name)
    return None if user is None or user.disabled else user


# --- what the pages show -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hint:
    """A configuration hint: what is wrong, and where the fix is described."""

    text: str
    fix: str  # a command or a doc path
    link: str = ""  # the console page where it is fixed, if there is one


@dataclass(frozen=True, slots=True)
class FlowRow:
    name: str
    kind: str
    state: str  # scheduled, on events, paused, disabled, unscheduled (can never fire by itself)
    partners: list[str]
    last_run: datetime | None  # the latest ledger row of the flow
    last_outcome: str | None
    next_run: datetime | None


@dataclass(frozen=True, slots=True)
class Overview:
    status: Status
    flows: list[FlowRow]
    failed: list[WorkItem]
    quarantine: int
    alerts: list[AlertRecord]
    hints: list[Hint]
    problem: str | None = None  # the engine's records could not be read
    notify_targets: list[str] = field(default_factory=list)  # configured notification targets
    notify_failing: list[FailingTarget] = field(default_factory=list)  # whose last send failed


def _last_row(app: App, flow: str) -> DeliveryRecord | None:
    rows = app.store.list_deliveries(flow=flow, limit=1)
    return rows[0] if rows else None


def overview(app: App) -> Overview:
    ops = Operations(app)
    problem = None
    try:
        status = ops.status()
    except ConsonanceSftpError as exc:  # the engine's records are unreadable: say so
        problem = str(exc)
        status = Status(False, "", False, [], None, ops.held(), ops.controls.paused(), [])
    paused = {(p.scope, p.name) for p in status.paused}
    nexts: dict[str, Schedule] = {s.flow: s for s in status.schedules}
    on_events = set(event_flows(app))
    flows = []
    for name, flow in app.settings.flows.items():
        last = _last_row(app, name)
        state = (
            "disabled"
            if not flow.enabled
            else "paused"
            if ("flow", name) in paused
            else "scheduled"
            if name in nexts
            else "on events"
            if name in on_events
            else "unscheduled"
        )
        flows.append(
            FlowRow(
                name=name,
                kind=str(getattr(flow, "kind", "")),
                state=state,
                partners=list(flow.partners),
                last_run=last.finished_at or last.created_at if last else None,
                last_outcome=last.outcome.value if last else None,
                next_run=nexts[name].next_tick if name in nexts else None,
            )
        )
    failed = [i for t in status.work for i in t.open if i.state.ended_failed]
    targets = app.settings.sent_targets()
    try:
        failing = Notifier(app.store, targets).failing()
    except ConsonanceSftpError as exc:  # never blocks the page: say so instead
        failing = [FailingTarget("(notification records)", datetime.now(UTC), str(exc), 1)]
    return Overview(
        status=status,
        flows=flows,
        failed=failed,
        quarantine=len(quarantined(app)),
        alerts=open_alerts(app.store, limit=50),
        hints=hints(app, flows),
        problem=problem,
        notify_targets=[name for name, _ in targets],
        notify_failing=failing,
    )


def hints(app: App, flows: list[FlowRow]) -> list[Hint]:
    """Actionable warnings about the configuration, each with where its fix is."""
    out = []
    probes = app.state_dir / "probes"
    for name, partner in app.settings.partners.items():
        if not partner.host_keys:
            out.append(
                Hint(
                    f"partner {name} has no pinned host key: nothing is sent to it",
                    f"consonance-sftp partner trust {name}",
                    f"/partners#partner-{name}",
                )
            )
        if not (probes / f"{name}.json").exists():
            out.append(
                Hint(
                    f"partner {name} was never probed: its transfer settings are defaults",
                    f"consonance-sftp partner probe {name}",
                    f"/partners#partner-{name}",
                )
            )
    used = {p for f in app.settings.flows.values() for p in f.partners}
    for name in sorted(set(app.settings.partners) - used):
        out.append(Hint(f"partner {name} is in no flow", "docs/reference/config.md"))
    for row in flows:
        if row.state == "unscheduled":
            out.append(
                Hint(
                    f"flow {row.name} has no schedule and no Consonance event fires it: it runs "
                    "only by hand",
                    f"consonance-sftp run {row.name}, or a schedule (docs/reference/config.md)",
                    f"/flows#flow-{row.name}",
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class Timeline:
    """What went where for one title (deliveries across partners and flows) and what came in
    (versions taken in from partners), oldest first."""

    isbn: str
    sent: list[DeliveryRecord]
    received: list[AssetVersion] = field(default_factory=list)


def deliveries(
    app: App,
    *,
    isbn: str | None = None,
    partner: str | None = None,
    flow: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
) -> list[DeliveryRecord]:
    """The ledger, newest first, filtered."""
    wanted = DeliveryOutcome(outcome) if outcome else None
    return app.store.list_deliveries(
        isbn=isbn,
        partner=partner,
        flow=flow,
        outcome=wanted,
        since=since,
        until=until,
        limit=limit,
    )


def timeline(app: App, isbn: str) -> Timeline:
    sent = app.store.list_deliveries(isbn=isbn, limit=1000)
    received: list[AssetVersion] = []
    for work_id, product_id in app.store.asset_scopes_for_isbn(isbn):
        for v in app.store.list_asset_versions(work_id, product_id=product_id):
            if v.isbn in (None, isbn) and v not in received:
                received.append(v)
    return Timeline(
        isbn=isbn,
        sent=sorted(sent, key=lambda r: r.started_at or r.created_at or datetime.min),
        received=sorted(received, key=lambda v: v.created_at or datetime.min.replace(tzinfo=UTC)),
    )


@dataclass(frozen=True, slots=True)
class Failures:
    work: list[WorkItem]  # failed durable work (retry runs it again)
    rows: list[DeliveryRecord]  # failed ledger rows (resend sends the package again)
    problem: str | None = None


def failures(app: App, *, limit: int = 100) -> Failures:
    ops = Operations(app)
    problem = None
    work: list[WorkItem] = []
    try:
        if ops.engine_started():
            work = [i for t in ops.work() for i in t.open if i.state.ended_failed]
    except ConsonanceSftpError as exc:
        problem = str(exc)
    rows = app.store.list_deliveries(outcome=DeliveryOutcome.FAILED, limit=limit)
    return Failures(work, rows, problem)


def executor_running(app: App) -> bool:
    """Is a service (``serve``, a ``worker``) running to carry out what the console asks?"""
    return _executor_running(app)


async def resend(app: App, workflow_id: str, *, by: str, reason: str) -> str:
    """Send a recorded delivery again (``resend``, one generation up) through the running
    service; returns the new workflow's ID. The console never becomes an executor itself: on
    SQLite with no ``serve`` running it refuses and says so."""
    ops = Operations(app)
    if not app.engine_settings().is_postgres and not _executor_running(app):
        raise ConsonanceSftpError(
            "no service is running to send it: start 'consonance-sftp serve', or run "
            f"'consonance-sftp resend {workflow_id} --reason ...' in a shell"
        )
    request = await asyncio.to_thread(ops.prepare_resend, workflow_id, by=by, reason=reason)
    async with DeliveryRunner(app, quiet=True) as runner:
        return await ops.submit_resend(
            runner, request, from_workflow=workflow_id, by=by, reason=reason
        )


# --- partners, quarantine, audit -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartnerRow:
    """One partner's health as the partners page shows it."""

    name: str
    address: str  # user@host:port
    host_keys: list[str]  # the pinned keys: type and SHA-256 fingerprint
    pinned_at: datetime | None  # the latest ``partner trust`` on the audit trail
    window: str  # "22:00-06:00 Europe/London", or "" for any time
    paused: bool
    paused_by: str
    paused_reason: str
    last_sent: DeliveryRecord | None
    last_failed: DeliveryRecord | None
    probed_at: str | None  # when ``partner probe`` last ran (its stored report)
    probe_summary: str


def _probe_of(app: App, name: str) -> tuple[str | None, str]:
    stored = app.state_dir / "probes" / f"{name}.json"
    try:
        data = json.loads(stored.read_text())
    except (OSError, ValueError):
        return None, ""
    parts = [str(data.get("server_version") or "server version unknown")]
    ftp = data.get("ftp")
    if isinstance(ftp, dict):  # an FTP/FTPS server (issue 20)
        parts.append(str(ftp.get("mode") or data.get("protocol") or "ftp").upper())
        if ftp.get("tls_version"):
            parts.append(str(ftp["tls_version"]))
        parts.append("rename" if data.get("rename") else "no rename")
        hashing = ftp.get("server_hash") if ftp.get("server_hash_works") else None
        parts.append(f"server-side hashes ({hashing})" if hashing else "no server-side hashes")
    else:
        parts.append(f"SFTP v{data.get('sftp_version', 3)}")
        parts.append("atomic rename" if data.get("posix_rename") else "no atomic rename")
        parts.append("server-side hashes" if data.get("check_file") else "no server-side hashes")
    if data.get("notes"):
        parts.append(f"{len(data['notes'])} notes")
    return data.get("probed_at"), ", ".join(parts)


def _shown_key(pin: str) -> str:
    """A pinned key as people compare it: its type and SHA-256 fingerprint."""
    try:
        fingerprint = fingerprint_of(pin)
    except ValueError:
        return pin
    kinds = [w for w in pin.split() if w.startswith(("ssh-", "ecdsa-", "rsa-"))]
    return f"{kinds[0]} {fingerprint}" if kinds else fingerprint


def partners(app: App) -> list[PartnerRow]:
    ops = Operations(app)
    pauses = {p.name: p for p in ops.controls.paused() if p.scope == "partner"}
    trusted: dict[str, datetime] = {}
    for event in app.store.list_audit(action=AuditAction.PARTNER_TRUST.value, limit=500):
        trusted.setdefault(event.subject.removeprefix("partner:"), event.ts)
    rows = []
    for name, p in sorted(app.settings.partners.items()):
        sent = app.store.list_deliveries(partner=name, outcome=DeliveryOutcome.SENT, limit=1)
        bad = app.store.list_deliveries(partner=name, outcome=DeliveryOutcome.FAILED, limit=1)
        w = p.delivery_window
        window = f"{w.start:%H:%M}-{w.end:%H:%M} {w.timezone}" if w else ""
        pause = pauses.get(name)
        probed_at, summary = _probe_of(app, name)
        rows.append(
            PartnerRow(
                name=name,
                address=f"{p.user}@{p.host}:{p.port}",
                host_keys=[_shown_key(k) for k in p.host_keys],
                pinned_at=trusted.get(name),
                window=window,
                paused=pause is not None,
                paused_by=pause.by if pause else "",
                paused_reason=pause.reason if pause else "",
                last_sent=sent[0] if sent else None,
                last_failed=bad[0] if bad else None,
                probed_at=probed_at,
                probe_summary=summary,
            )
        )
    return rows


def audit_events(
    app: App,
    *,
    subject: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> list[AuditEvent]:
    """The audit trail, newest first, filtered."""
    return app.store.list_audit(subject=subject, action=action, since=since, limit=limit)


def audit_actions() -> list[str]:
    return sorted(a.value for a in AuditAction)


def quarantine_rows(app: App) -> list[tuple[IntakeRecord, str]]:
    """The files waiting in quarantine, newest first, each with its reason's label."""
    return [(row, label_of(row.reason)) for row in quarantined(app)]


INTAKE_KINDS = KINDS


# --- flows: the dry run ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedPackage:
    """One package a dry run would send: to which partner, and the exact files."""

    partner: str
    label: str
    files: list[tuple[str, int, str]]  # (remote path, bytes, SHA-256)


@dataclass(frozen=True, slots=True)
class DryRun:
    flow: str
    packages: list[PlannedPackage]
    withdrawals: list[tuple[str, str, list[str]]]  # (partner, label, remote paths)
    skipped: list[tuple[str, str]]  # (what, why)
    notes: list[str]


async def dry_run(app: App, flow: str, isbns: Sequence[str] = ()) -> DryRun:
    """What a run of ``flow`` would send now (``run FLOW --dry-run``): nothing is sent."""
    if is_intake(app, flow):
        raise ConsonanceSftpError(
            f"flow {flow!r} takes files in: a dry run shows what goes out",
        )
    outcome = await run_flow(app, flow, dry_run=True, isbns=isbns)
    planned = outcome.planned
    config = app.settings.flows[planned.flow]
    return DryRun(
        flow=planned.flow,
        packages=[
            PlannedPackage(
                o.partner,
                o.label,
                [(f.remote_path, f.size, f.sha256) for f in remote_files(app, config, o)],
            )
            for o in planned.outbounds
        ],
        withdrawals=[
            (w.partner, w.label, [f.remote_path for f in w.files]) for w in planned.withdrawals
        ],
        skipped=[(s.what, s.reason) for s in planned.skipped],
        notes=list(planned.notes),
    )


def retry(app: App, workflow_id: str, *, by: str) -> str:
    """``retry ID`` from the console: failed work run again from its first failed step (same
    ID), recorded with who. On a config whose engine never ran there is nothing to retry (and
    its engine database is not created by asking)."""
    ops = Operations(app)
    if not ops.engine_started():
        raise ConsonanceSftpError(
            f"no workflow {workflow_id!r}: the engine has not run on this config yet"
        )
    return ops.retry(workflow_id, by=by)


# --- quarantine previews ---------------------------------------------------------------------

# What a browser may be shown of a quarantined file, told by its first bytes (never by its
# name, which a partner chose): PDF and the common images. Anything else has no preview.
_PREVIEWS = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
PREVIEW_MAX_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Preview:
    path: Path
    media_type: str


def preview(app: App, intake_id: int) -> Preview:
    """The stored copy of a file taken in, when a browser can show it (PDF, PNG, JPEG, GIF) and
    it lies under the state folder; else ``ValidationFailed`` saying why."""
    row = show(app, intake_id).row
    if not row.local_path:
        raise ValidationFailed(f"intake #{intake_id} has no stored copy")
    path = Path(row.local_path).resolve()
    if not path.is_relative_to(app.state_dir.resolve()) or not path.is_file():
        raise ValidationFailed(f"intake #{intake_id}: its stored copy is missing")
    if path.stat().st_size > PREVIEW_MAX_BYTES:
        raise ValidationFailed(f"intake #{intake_id} is too large to preview")
    with path.open("rb") as fh:
        head = fh.read(16)
    for magic, media_type in _PREVIEWS:
        if head.startswith(magic):
            return Preview(path, media_type)
    raise ValidationFailed(f"intake #{intake_id}: no preview for this kind of file")


# --- acts the CLI has too: run a flow now, send a test file ---------------------------------


@dataclass(frozen=True, slots=True)
class RunNow:
    """What a "run now" did: the workflows it started, with their outcome where known."""

    flow: str
    sent: list[str]  # workflow IDs done
    failed: list[tuple[str, str]]  # (workflow ID, error)
    queued: list[str]  # submitted, outcome not known yet
    held: list[tuple[str, str, str]]  # (package, partner, why)
    skipped: list[tuple[str, str]]  # (what, why)

    def summary(self) -> str:
        parts = [
            f"{len(self.sent)} done",
            f"{len(self.failed)} failed",
            f"{len(self.held)} held",
            f"{len(self.skipped)} skipped",
        ]
        if self.queued:
            parts.append(f"{len(self.queued)} queued")
        return ", ".join(parts)


async def run_now(app: App, flow: str, *, by: str, isbns: Sequence[str] = ()) -> RunNow:
    """``consonance-sftp run FLOW`` from the console: the same call (``dispatch.run_flow``),
    its deliveries recorded with the trigger ``manual:<user>``, handed to the running service
    (not waited for). As for a resend, the console never becomes an executor itself: on SQLite
    with no ``serve`` running it refuses and says so."""
    if flow not in app.settings.flows:
        raise ValidationFailed(f"no flow {flow!r} in the config")
    if is_intake(app, flow):
        raise ConsonanceSftpError(
            f"flow {flow!r} takes files in: run it with 'consonance-sftp run {flow}'"
        )
    if not app.engine_settings().is_postgres and not _executor_running(app):
        raise ConsonanceSftpError(
            "no service is running to send it: start 'consonance-sftp serve', or run "
            f"'consonance-sftp run {flow}' in a shell"
        )
    async with DeliveryRunner(app, quiet=True) as runner:
        outcome = await run_flow(
            app, flow, isbns=isbns, trigger=f"manual:{by}", runner=runner, wait=False
        )
    sent: list[str] = []
    failed: list[tuple[str, str]] = []
    queued: list[str] = []
    for e in outcome.enqueued:
        result = outcome.results.get(e.workflow_id)
        if result is None:
            queued.append(e.workflow_id)
        elif "error" in result:
            failed.append((e.workflow_id, str(result["error"])))
        else:
            sent.append(e.workflow_id)
    return RunNow(
        flow=flow,
        sent=sent,
        failed=failed,
        queued=queued,
        held=[(h.request.package or "", h.request.partner, h.reason) for h in outcome.held],
        skipped=[(s.what, s.reason) for s in outcome.planned.skipped],
    )


async def send_test_file(app: App, partner: str, *, by: str) -> str:
    """``partner test NAME`` from the console: a small file through the full upload protocol,
    then removed; on the audit trail (``partner.test_file``) with who, also when it failed.
    Returns a line saying what happened."""
    if partner not in app.settings.partners:
        raise ValidationFailed(f"no partner {partner!r} in the config")
    subject = f"partner:{partner}"
    try:
        sent = await Operations(app).send_test(partner, None)
    except ConsonanceSftpError as exc:
        await asyncio.to_thread(
            app.store.append_audit,
            f"user:{by}",
            AuditAction.PARTNER_TEST_FILE,
            subject,
            {"error": str(exc)[:500]},
        )
        raise
    result = sent.upload
    await asyncio.to_thread(
        app.store.append_audit,
        f"user:{by}",
        AuditAction.PARTNER_TEST_FILE,
        subject,
        {"remote_path": result.remote_path, "size": result.size, "removed": sent.removed},
    )
    line = f"sent {result.remote_path} ({result.size} bytes, verified by {result.verified_by})"
    return line + (", then removed it" if sent.removed else "; the server kept it")


async def send_test_notification(app: App, target: str, *, by: str) -> str:
    """The overview's "send test notification" (``alerts notify --test``) to one target; its
    attempt is on the audit trail as the notifier's (``alert.notified`` or
    ``alert.notify_failed``, subject ``notification-test:<target>``); who asked is logged."""
    targets = app.settings.sent_targets()
    if target not in {name for name, _ in targets}:
        raise ValidationFailed(f"no notification target {target!r} in the config")
    log.info("test notification to %s asked by %s", target, by)
    sent = await Notifier(app.store, targets).send_test(target)
    if not sent:
        raise ValidationFailed(f"no notification target {target!r} in the config")
    if sent[0].ok:
        return f"Test notification sent to {target}."
    raise ConsonanceSftpError(f"test notification to {target} failed: {sent[0].error}")
