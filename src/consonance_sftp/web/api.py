"""The console's JSON API under ``/api``: the same reads and acts as the pages.

Who asks: ``Authorization: Bearer <token>`` (a token made by ``consonance-sftp users token
NAME``, kept hashed, revocable), or the console's session cookie (then an act also needs the
session's CSRF token in an ``X-CSRF-Token`` header). Roles as for the pages: every role reads,
``operator`` acts, and every act is on the audit trail with the user's name. Nothing here answers
an anonymous request, the OpenAPI schema (``/api/openapi.json``) included.

Each route declares its answer's model (web/api_models.py: every field typed, none left out,
none extra) and the refusals it really gives, each as ``{"detail": "..."}`` (``ErrorBody``);
tests/web/test_api_schema.py and test_api_fuzz.py check the answers against the schema.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from consonance_sftp.app import App, console
from consonance_sftp.app import quarantine as quarantine_ops
from consonance_sftp.app.alerts import acknowledge
from consonance_sftp.app.operations import Operations
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.web import api_models as out
from consonance_sftp.web.auth import CookiePolicy, Viewer, require, same_token

PREFIX = "/api"
MAX_ID = 2**63 - 1  # a row ID the database can hold (schemathesis found the overflow)
CSRF_HEADER = "X-CSRF-Token"
bearer = HTTPBearer(auto_error=False, description="A token from `consonance-sftp users token`")


class ApiError(Exception):
    """A refusal answered as JSON ``{"detail": ...}`` (``ErrorBody``) with its status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def api_viewer(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Viewer:
    """The user of an API request: by bearer token, else by session cookie (and then an act
    needs the session's CSRF token in a header). Anonymous: 401."""
    app: App = request.app.state.app
    if credentials is not None:
        user = console.token_user(app.store, credentials.credentials)
        if user is None:
            raise ApiError(401, "unknown or revoked API token")
        return Viewer(user.name, user.role, "", "")
    cookies: CookiePolicy = request.app.state.cookies
    token = request.cookies.get(cookies.session_name)
    found = console.session_of(app.store, token) if token else None
    if found is None:
        raise ApiError(401, "log in, or send 'Authorization: Bearer <token>'")
    session, user = found
    if request.method not in ("GET", "HEAD") and not same_token(
        request.headers.get(CSRF_HEADER), session.csrf_token
    ):
        raise ApiError(403, f"an act with the session cookie needs the {CSRF_HEADER} header")
    return Viewer(user.name, user.role, session.csrf_token, token or "")


Who = Annotated[Viewer, Depends(api_viewer)]


def operator(who: Who) -> Viewer:
    require(who, "operator")
    return who


Operator = Annotated[Viewer, Depends(operator)]

# The refusals a route may answer, each with the one error body (422 is FastAPI's own: the list
# of the fields at fault, declared by FastAPI on every route that takes parameters).
_REFUSALS: dict[int, str] = {
    400: "The request's body could not be read at all (its bytes are not UTF-8 text).",
    401: "No token, an unknown, revoked or expired one, and no session.",
    403: "The user's role does not allow it, or a session cookie without its CSRF header.",
    404: "No such flow, partner, alert or notification target in the config.",
    409: "The act could not be done now; the detail says why.",
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these refusals (``ErrorBody``)."""
    found: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        found[code] = {"model": out.ErrorBody, "description": _REFUSALS[code]}
    if 401 in codes:
        found[401]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return found


READ = refusals(401)  # every route: anonymous is refused (a POST adds 403, its own others)


def _day(value: date | None, *, end: bool = False) -> datetime | None:
    if value is None:
        return None
    return datetime.combine(value, time.max if end else time.min, tzinfo=UTC)


# --- request bodies --------------------------------------------------------------------------

NOT_BLANK = r"\S"  # a required reason: at least one character that is not a space


class Reason(BaseModel):
    reason: str = Field("", max_length=1000)


class Rejection(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, pattern=NOT_BLANK, description="Why.")


class WorkflowAct(BaseModel):
    workflow_id: str = Field(min_length=1, max_length=300)


class Resend(WorkflowAct):
    reason: str = Field(
        min_length=1, max_length=1000, pattern=NOT_BLANK, description="Why (required)."
    )


class Note(BaseModel):
    note: str = Field("", max_length=1000)


class Assign(BaseModel):
    isbn: str = Field(min_length=1, max_length=20)
    kind: str = Field(min_length=1, max_length=40)


class Titles(BaseModel):
    isbns: list[Annotated[str, Field(max_length=20)]] = Field(default_factory=list, max_length=100)


def _wanted(body: Titles | None) -> list[str]:
    """The ISBNs a run or dry run asks for, without hyphens or blanks."""
    return [i.replace("-", "").strip() for i in (body.isbns if body else []) if i.strip()]


# --- answers: records as their response models' data ----------------------------------------


def _plain(value: object) -> dict[str, Any]:
    """A record (a dataclass, a dict) as JSON-ready data, for its response model to check."""
    found = jsonable_encoder(value)
    if not isinstance(found, dict):
        raise TypeError(f"not a record: {type(value).__name__}")
    return found


def _when(value: str | None) -> datetime | None:
    """A time some file recorded as text (a probe's report): None when it is not ISO 8601."""
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _partner(row: console.PartnerRow) -> dict[str, Any]:
    return {**_plain(row), "probed_at": _when(row.probed_at)}


def _dry_run(plan: console.DryRun) -> out.DryRun:
    return out.DryRun(
        flow=plan.flow,
        packages=[
            out.PlannedPackage(
                partner=p.partner,
                label=p.label,
                files=[out.PlannedFile(remote_path=f, size=n, sha256=h) for f, n, h in p.files],
            )
            for p in plan.packages
        ],
        withdrawals=[
            out.Withdrawal(partner=partner, label=label, remote_paths=paths)
            for partner, label, paths in plan.withdrawals
        ],
        skipped=[out.Skipped(what=what, why=why) for what, why in plan.skipped],
        notes=plan.notes,
    )


def _run_now(done: console.RunNow) -> out.RunNow:
    return out.RunNow(
        flow=done.flow,
        summary=done.summary(),
        sent=done.sent,
        failed=[out.RunFailure(workflow_id=w, error=e) for w, e in done.failed],
        queued=done.queued,
        held=[out.HeldPackage(package=p, partner=n, why=why) for p, n, why in done.held],
        skipped=[out.Skipped(what=what, why=why) for what, why in done.skipped],
    )


def router(app: App) -> APIRouter:
    """The ``/api`` routes for one app."""
    api = APIRouter(prefix=PREFIX, tags=["api"], responses=READ)

    def flow_known(flow: str) -> None:
        if flow not in app.settings.flows:
            raise ApiError(404, f"no flow {flow!r} in the config")

    def partner_known(partner: str) -> None:
        if partner not in app.settings.partners:
            raise ApiError(404, f"no partner {partner!r} in the config")

    # --- reads -------------------------------------------------------------------------------

    @api.get("/overview", response_model=out.Overview)
    def overview(who: Who) -> dict[str, Any]:
        """Flows with state, failures to act on, quarantine count, held deliveries, pauses,
        open alerts and configuration hints."""
        view = console.overview(app)
        s = view.status
        return _plain(
            {
                "executor_running": s.executor_running,
                "engine_started": s.engine_started,
                "problem": view.problem,
                "flows": view.flows,
                "failed": view.failed,
                "quarantine": view.quarantine,
                "held": len(s.held),
                "paused": s.paused,
                "alerts": view.alerts,
                "hints": view.hints,
                "notify_targets": view.notify_targets,
                "notify_failing": view.notify_failing,
            }
        )

    @api.get("/deliveries", response_model=list[out.Delivery])
    def deliveries(
        who: Who,
        isbn: Annotated[str | None, Query(max_length=20)] = None,
        partner: Annotated[str | None, Query(max_length=100)] = None,
        flow: Annotated[str | None, Query(max_length=100)] = None,
        outcome: console.DeliveryOutcome | None = None,
        since: date | None = None,
        until: date | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[dict[str, Any]]:
        """The delivery ledger, newest first, filtered."""
        rows = console.deliveries(
            app,
            isbn=(isbn or "").replace("-", "").strip() or None,
            partner=partner or None,
            flow=flow or None,
            outcome=outcome.value if outcome else None,
            since=_day(since),
            until=_day(until, end=True),
            limit=limit,
        )
        return [_plain(r) for r in rows]

    @api.get("/titles/{isbn}", response_model=out.Timeline)
    def title(who: Who, isbn: Annotated[str, Path(max_length=20)]) -> dict[str, Any]:
        """A title's timeline: what went where (deliveries) and what came in (versions). A
        title with neither has empty lists."""
        return _plain(console.timeline(app, isbn.replace("-", "").strip()))

    @api.get("/failures", response_model=out.Failures)
    def failures(who: Who) -> dict[str, Any]:
        """Failed work (retry) and failed ledger rows (resend)."""
        return _plain(console.failures(app))

    @api.get("/alerts", response_model=list[out.Alert])
    def alerts(who: Who, all: bool = False) -> list[dict[str, Any]]:
        """Open alerts (``all``: acknowledged ones too)."""
        return [_plain(a) for a in app.store.list_alerts(unacknowledged=not all, limit=200)]

    @api.get("/quarantine", response_model=list[out.QuarantinedFile])
    def quarantine(who: Who) -> list[dict[str, Any]]:
        """Files waiting in quarantine, newest first, each with its reason in words."""
        return [{**_plain(row), "label": label} for row, label in console.quarantine_rows(app)]

    @api.get("/partners", response_model=list[out.Partner])
    def partners(who: Who) -> list[dict[str, Any]]:
        """Each partner's health: last success and failure, probe, pinned keys, window, pause."""
        return [_partner(p) for p in console.partners(app)]

    @api.get("/flows", response_model=list[out.FlowRow])
    def flows(who: Who) -> list[dict[str, Any]]:
        """Each flow: kind, state, partners, last and next run."""
        return [_plain(f) for f in console.overview(app).flows]

    @api.get("/audit", response_model=list[out.AuditEvent])
    def audit(
        who: Who,
        subject: Annotated[str | None, Query(max_length=300)] = None,
        action: Annotated[str | None, Query(max_length=100)] = None,
        since: date | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[dict[str, Any]]:
        """The audit trail, newest first, filtered."""
        events = console.audit_events(
            app, subject=subject or None, action=action or None, since=_day(since), limit=limit
        )
        return [_plain(e) for e in events]

    @api.post("/audit/verify", response_model=out.AuditReport, responses=refusals(403))
    def verify(who: Who) -> dict[str, Any]:
        """The audit trail checked now (reading only: every role may; with a session cookie,
        the CSRF header as for any POST)."""
        report = Operations(app).verify_audit()
        return {**_plain(report), "ok": report.ok}

    # --- acts (operator) ---------------------------------------------------------------------

    @api.post("/failures/retry", responses=refusals(400, 403, 409))
    def retry(who: Operator, body: WorkflowAct) -> out.Done:
        """Run failed work again from its first failed step (same ID)."""
        try:
            console.retry(app, body.workflow_id, by=who.name)
        except ConsonanceSftpError as exc:
            raise ApiError(409, str(exc)) from None
        return out.Done(message=f"retrying {body.workflow_id}")

    @api.post("/failures/resend", responses=refusals(400, 403, 409))
    async def resend(who: Operator, body: Resend) -> out.Done:
        """Send a recorded delivery again, one generation up (a reason is required)."""
        try:
            new_id = await console.resend(app, body.workflow_id, by=who.name, reason=body.reason)
        except ConsonanceSftpError as exc:
            raise ApiError(409, str(exc)) from None
        return out.Done(message=f"resending {body.workflow_id} as {new_id}")

    @api.post("/alerts/{alert_id}/acknowledge", responses=refusals(400, 403, 404))
    def ack(
        who: Operator, alert_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: Note | None = None
    ) -> out.Done:
        """Acknowledge an alert, with an optional note."""
        note = body.note if body else ""
        done, missing = acknowledge(app.store, [alert_id], by=who.name, reason=note or None)
        if missing:
            raise ApiError(404, f"no alert {alert_id}")
        return out.Done(message=f"alert {alert_id} acknowledged ({done[0].kind})")

    @api.post("/quarantine/{intake_id}/assign", responses=refusals(400, 403, 409))
    async def assign(
        who: Operator, intake_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: Assign
    ) -> out.Done:
        """Process a quarantined file as the given title and kind (409: no such file, not
        quarantined, not an ISBN-13, an unknown kind)."""
        try:
            result = await quarantine_ops.assign(
                app, intake_id, isbn=body.isbn, kind=body.kind, by=who.name
            )
        except ConsonanceSftpError as exc:
            raise ApiError(409, str(exc)) from None
        return out.Done(message=f"file #{intake_id} assigned: {result.outcome.value}")

    @api.post("/quarantine/{intake_id}/reject", responses=refusals(400, 403, 409))
    def reject(
        who: Operator, intake_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: Rejection
    ) -> out.Done:
        """Close a quarantined file for good (a reason is required; 409: no such file, or not
        quarantined)."""
        try:
            quarantine_ops.reject(app, intake_id, reason=body.reason, by=who.name)
        except ConsonanceSftpError as exc:
            raise ApiError(409, str(exc)) from None
        return out.Done(message=f"file #{intake_id} rejected")

    def set_paused(scope: str, name: str, paused: bool, who: Viewer, reason: str) -> out.Done:
        change = Operations(app).set_paused(scope, name, paused=paused, by=who.name, reason=reason)
        message = f"{scope} {name} {'paused' if change.pause.paused else 'resumed'}"
        return out.Done(message=message)

    named = refusals(400, 403, 404)  # a pause or resume of a flow or partner named in the path

    @api.post("/partners/{partner}/pause", responses=named)
    def pause_partner(who: Operator, partner: str, body: Reason | None = None) -> out.Done:
        partner_known(partner)
        return set_paused("partner", partner, True, who, body.reason if body else "")

    @api.post("/partners/{partner}/resume", responses=named)
    def resume_partner(who: Operator, partner: str, body: Reason | None = None) -> out.Done:
        partner_known(partner)
        return set_paused("partner", partner, False, who, body.reason if body else "")

    @api.post("/partners/{partner}/test", responses=refusals(403, 404, 409))
    async def test_partner(who: Operator, partner: str) -> out.Done:
        """Send a small test file through the full upload protocol, then remove it."""
        partner_known(partner)
        try:
            line = await console.send_test_file(app, partner, by=who.name)
        except ConsonanceSftpError as exc:
            raise ApiError(409, f"test file to {partner} failed: {exc}") from None
        return out.Done(message=line)

    @api.post("/flows/{flow}/pause", responses=named)
    def pause_flow(who: Operator, flow: str, body: Reason | None = None) -> out.Done:
        flow_known(flow)
        return set_paused("flow", flow, True, who, body.reason if body else "")

    @api.post("/flows/{flow}/resume", responses=named)
    def resume_flow(who: Operator, flow: str, body: Reason | None = None) -> out.Done:
        flow_known(flow)
        return set_paused("flow", flow, False, who, body.reason if body else "")

    @api.post("/flows/{flow}/dry-run", responses=refusals(400, 403, 404, 409))
    async def dry_run(who: Operator, flow: str, body: Titles | None = None) -> out.DryRun:
        """The exact files each partner would receive from a run now; nothing is sent."""
        flow_known(flow)
        try:
            plan = await console.dry_run(app, flow, _wanted(body))
        except ConsonanceSftpError as exc:
            raise ApiError(409, f"dry run of {flow} failed: {exc}") from None
        return _dry_run(plan)

    @api.post("/flows/{flow}/run", responses=refusals(400, 403, 404, 409))
    async def run_now(who: Operator, flow: str, body: Titles | None = None) -> out.RunNow:
        """Run a flow now (as ``consonance-sftp run``), recorded as ``manual:<user>``."""
        flow_known(flow)
        try:
            done = await console.run_now(app, flow, by=who.name, isbns=_wanted(body))
        except ConsonanceSftpError as exc:
            raise ApiError(409, f"run of {flow} failed: {exc}") from None
        return _run_now(done)

    @api.post("/notify/{target}/test", responses=refusals(403, 404, 409))
    async def notify_test(who: Who, target: Annotated[str, Path(max_length=200)]) -> out.Done:
        """Send a test notification to one configured target (admin)."""
        require(who, "admin")
        try:
            line = await console.send_test_notification(app, target, by=who.name)
        except ConsonanceSftpError as exc:
            status = 404 if "no notification target" in str(exc) else 409
            raise ApiError(status, str(exc)) from None
        return out.Done(message=line)

    return api


def install(web: FastAPI, app: App) -> None:
    """Add the API to the console: its routes, its JSON errors, and its OpenAPI schema (served
    only to a logged-in user or a token holder)."""
    api = router(app)

    @web.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)

    schema: dict[str, Any] = {}

    @api.get("/openapi.json", include_in_schema=False)
    def openapi(who: Who) -> dict[str, Any]:
        if not schema:
            schema.update(
                get_openapi(
                    title="consonance-sftp console API",
                    version="1",
                    description=__doc__ or "",
                    routes=api.routes,
                )
            )
        return schema

    web.include_router(api)
    web.state.api_routes = api.routes  # what the schema and the tests list
