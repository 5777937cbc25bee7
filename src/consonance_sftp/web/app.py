"""The console's FastAPI app: ``create_app(app)`` builds it from the project's ``App``.

Pages (each needs a login; acting needs the operator role and the form's CSRF token):

* ``/``: overview: flows with state, last and next run; failures to act on; quarantine count;
  held deliveries; paused partners and flows; open alerts; configuration hints.
* ``/deliveries``: the ledger searched by ISBN, partner, flow, outcome and date (htmx swaps the
  results in place; a plain GET works without JavaScript too); ``/titles/{isbn}``: a title's
  timeline across partners and flows.
* ``/failures``: failed work (retry) and failed deliveries (resend, with a reason).
* ``/alerts``: open alerts, acknowledged with an optional note.
* ``/api/...``: the JSON API for the same reads and acts (web/api.py), by token or session.
* ``/metrics``: the Prometheus metrics (web/metrics.py), for an API token
  (``Authorization: Bearer ...``, what Prometheus's ``authorization`` setting sends) or a
  logged-in user; an anonymous scrape is refused (401).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from consonance_sftp.app import App, console
from consonance_sftp.app import quarantine as quarantine_ops
from consonance_sftp.app.alerts import acknowledge
from consonance_sftp.app.metrics import MetricsSource
from consonance_sftp.app.operations import Operations
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.web import api
from consonance_sftp.web import metrics as metrics_route
from consonance_sftp.web.auth import (
    CookiePolicy,
    LoginRequired,
    LoginThrottle,
    Viewer,
    check_csrf,
    client_of,
    require,
    same_token,
)

HERE = Path(__file__).parent
T = TypeVar("T")
CONFIG_ENV = "CONSONANCE_SFTP_CONFIG"  # the config file (as for the CLI's --config)
INSECURE_ENV = "CONSONANCE_SFTP_WEB_INSECURE_COOKIES"  # "1": plain-http localhost only
SECURITY_HEADERS = {
    # Everything comes from this origin: no inline script, no frames, no other host.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# A partner's file shown alone: sandboxed (no script, no form, an origin of its own), nothing
# else loaded, never framed. Chromium's PDF viewer still shows a PDF under it.
PREVIEW_CSP = "sandbox; default-src 'none'; img-src 'self'; frame-ancestors 'none'"


# The form fields the action forms share: one declaration each, the same limits everywhere.
CsrfField = Annotated[str | None, Form()]  # the session's CSRF token, checked by check_csrf
NameField = Annotated[str, Form(max_length=100)]  # a flow's or a partner's name
NoteField = Annotated[str, Form(max_length=1000)]  # a reason or a note
IdField = Annotated[int, Form(ge=1, le=api.MAX_ID)]  # an alert's or a quarantined file's ID
IsbnsField = Annotated[str, Form(max_length=2000)]  # ISBNs split on commas and white space
PauseField = Annotated[str, Form(pattern="^(pause|resume)$")]


def _when(value: datetime | None) -> str:
    return "" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _day(value: str | None, *, end: bool = False) -> datetime | None:
    """A ``YYYY-MM-DD`` form field as the start (or end) of that UTC day."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"not a date (YYYY-MM-DD): {value!r}") from None
    return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)


def _isbns(field: str) -> list[str]:
    """A form's ISBNs, split on commas and white space, without hyphens."""
    return [i.replace("-", "") for i in field.replace(",", " ").split() if i]


def current_viewer(request: Request) -> Viewer:
    """The logged-in user of a request (a dependency of every page and action)."""
    app: App = request.app.state.app
    cookies: CookiePolicy = request.app.state.cookies
    token = request.cookies.get(cookies.session_name)
    found = console.session_of(app.store, token) if token else None
    if found is None:
        raise LoginRequired
    session, user = found
    return Viewer(user.name, user.role, session.csrf_token, token or "")


Who = Annotated[Viewer, Depends(current_viewer)]


class ScrapeRefused(Exception):
    """``/metrics`` without a live API token or session: 401, saying what to send."""


def scraper(request: Request) -> Viewer:
    """Who scrapes ``/metrics``: an API token's user (``Authorization: Bearer ...``, checked by
    ``console.token_user``: unknown, revoked, expired or disabled is refused), else a logged-in
    user of the console; anyone else is refused (401)."""
    app: App = request.app.state.app
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        user = console.token_user(app.store, credentials.strip())
        if user is None:
            raise ScrapeRefused("unknown or revoked API token")
        return Viewer(user.name, user.role, "", "")
    try:
        return current_viewer(request)
    except LoginRequired:
        raise ScrapeRefused(
            "send an API token: 'Authorization: Bearer <token>' (consonance-sftp users token)"
        ) from None


def create_app(
    app: App,
    *,
    secure_cookies: bool = True,
    throttle: LoginThrottle | None = None,
    metrics_cache: float = 10.0,
) -> FastAPI:
    """The console for one config. ``secure_cookies=False`` only for plain http on localhost
    (behind TLS, keep it on: the session cookie is then sent over HTTPS only). ``throttle``
    sets the login limits (the counts are in the shared database); ``metrics_cache``: seconds a
    reading of the database for ``/metrics`` is reused."""
    web = FastAPI(title="consonance-sftp console", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["when"] = _when
    cookies = CookiePolicy(secure=secure_cookies)
    limits = throttle or LoginThrottle()
    web.state.app = app
    web.state.cookies = cookies
    web.state.throttle = limits

    @web.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def page(
        request: Request, name: str, who: Viewer | None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        return templates.TemplateResponse(
            request, name, {"who": who, **context}, status_code=status
        )

    def operator_form(who: Viewer, csrf_token: str | None) -> None:
        """An operator's form: its CSRF token checked first, then the role."""
        check_csrf(who, csrf_token)
        require(who, "operator")

    def known(kind: str, name: str) -> None:
        """404 unless the config has the flow (``kind='flow'``) or partner ``name``."""
        if name not in (app.settings.flows if kind == "flow" else app.settings.partners):
            raise HTTPException(404, f"no {kind} {name!r} in the config")

    async def attempt(
        work: Awaitable[T], notice: Callable[[T], str], failed: str = ""
    ) -> dict[str, Any]:
        """The act's flash: ``notice`` of what ``work`` returns, or ``failed`` + the reason."""
        try:
            return {"notice": notice(await work)}
        except ConsonanceSftpError as exc:
            return {"error": f"{failed}{exc}"}

    async def after(
        render: Callable[..., HTMLResponse],
        request: Request,
        who: Viewer,
        extra: dict[str, Any],
        ok: str = "notice",
    ) -> HTMLResponse:
        """The page an act returns to, 409 unless ``extra`` holds ``ok`` (rendered off the
        event loop: it reads the store)."""
        status = 200 if ok in extra else 409
        return await asyncio.to_thread(render, request, who, status, **extra)

    @web.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: LoginRequired) -> Response:
        if request.method == "GET":
            target = quote(request.url.path, safe="/")
            return RedirectResponse(f"/login?next={target}", status_code=303)
        return page(request, "error.html", None, 401, message="log in first")

    def bearer_refusal(request: Request, detail: str) -> Response:
        headers = {"WWW-Authenticate": "Bearer"}
        if request.url.path.startswith(api.PREFIX + "/"):
            return JSONResponse({"detail": detail}, status_code=401, headers=headers)
        return PlainTextResponse(detail + "\n", status_code=401, headers=headers)

    @web.exception_handler(ScrapeRefused)
    async def scrape_refused(request: Request, exc: ScrapeRefused) -> Response:
        return bearer_refusal(request, str(exc))

    @web.exception_handler(console.TokenExpired)
    async def token_expired(request: Request, exc: console.TokenExpired) -> Response:
        return bearer_refusal(request, str(exc))

    @web.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(api.PREFIX + "/"):
            return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code)
        return page(request, "error.html", None, exc.status_code, message=str(exc.detail))

    # --- login -------------------------------------------------------------------------------

    def login_form(
        request: Request, status: int = 200, error: str | None = None, next_url: str = "/"
    ) -> HTMLResponse:
        token = console.new_token()
        response = page(request, "login.html", None, status, csrf=token, error=error, next=next_url)
        response.set_cookie(
            cookies.login_csrf_name,
            token,
            httponly=True,
            secure=cookies.secure,
            samesite="strict",
            path="/",
        )
        return response

    def safe_next(value: str | None) -> str:
        # Only a path of this site: never an open redirect to another host.
        if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
            return value
        return "/"

    @web.get("/login", response_class=HTMLResponse)
    def login_get(request: Request, next: str | None = None) -> HTMLResponse:
        return login_form(request, next_url=safe_next(next))

    @web.post("/login", response_class=HTMLResponse)
    def login_post(
        request: Request,
        username: Annotated[str, Form(max_length=100)],
        password: Annotated[str, Form(max_length=200)],
        csrf_token: CsrfField = None,
        next: Annotated[str | None, Form()] = None,
    ) -> Response:
        if not same_token(csrf_token, request.cookies.get(cookies.login_csrf_name) or "\0"):
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
        client = client_of(request)
        target = safe_next(next)
        if limits.blocked(app.store, username, client):
            if limits.first_refusal(app.store, username, client):
                console.login_refused(app.store, username, client, "throttled")
            minutes = max(1, round(limits.window_s / 60))
            return login_form(
                request,
                429,
                f"Too many failed logins: wait {minutes} minutes and try again.",
                target,
            )
        user, why = console.check_login(app.store, username, password)
        if user is None:
            limits.failed(app.store, username, client)
            console.login_refused(app.store, username, client, why)
            # A disabled user is told no more than a wrong password (no hint that it exists).
            return login_form(request, 401, "Wrong user name or password.", target)
        limits.succeeded(app.store, username)
        token, _session = console.open_session(app.store, user)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            cookies.session_name,
            token,
            max_age=console.SESSION_HOURS * 3600,
            httponly=True,
            secure=cookies.secure,
            samesite="strict",
            path="/",
        )
        response.delete_cookie(cookies.login_csrf_name, path="/")
        return response

    @web.post("/logout")
    def logout(who: Who, csrf_token: CsrfField = None) -> Response:
        check_csrf(who, csrf_token)
        console.close_session(app.store, who.token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(cookies.session_name, path="/")
        return response

    # --- pages ---------------------------------------------------------------------------------

    pages = APIRouter()

    def overview_page(
        request: Request, who: Viewer, status: int = 200, **extra: Any
    ) -> HTMLResponse:
        return page(request, "overview.html", who, status, view=console.overview(app), **extra)

    @pages.get("/", response_class=HTMLResponse)
    def overview(request: Request, who: Who) -> HTMLResponse:
        return overview_page(request, who)

    @pages.post("/notify/test", response_class=HTMLResponse)
    async def notify_test(
        request: Request,
        who: Who,
        target: Annotated[str, Form(max_length=200)],
        csrf_token: CsrfField = None,
    ) -> HTMLResponse:
        check_csrf(who, csrf_token)
        require(who, "admin")
        sent = console.send_test_notification(app, target, by=who.name)
        return await after(overview_page, request, who, await attempt(sent, str))

    @pages.get("/deliveries", response_class=HTMLResponse)
    def deliveries(
        request: Request,
        who: Who,
        isbn: Annotated[str | None, Query(max_length=20)] = None,
        partner: Annotated[str | None, Query(max_length=100)] = None,
        flow: Annotated[str | None, Query(max_length=100)] = None,
        outcome: Annotated[str | None, Query(max_length=20)] = None,
        since: Annotated[str | None, Query(max_length=10)] = None,
        until: Annotated[str | None, Query(max_length=10)] = None,
    ) -> HTMLResponse:
        isbn = (isbn or "").replace("-", "").strip() or None
        if outcome and outcome not in console.OUTCOMES:
            raise HTTPException(400, f"outcome: one of {', '.join(console.OUTCOMES)}")
        rows = console.deliveries(
            app,
            isbn=isbn,
            partner=partner or None,
            flow=flow or None,
            outcome=outcome or None,
            since=_day(since),
            until=_day(until, end=True),
        )
        context: dict[str, Any] = {
            "rows": rows,
            "q": {
                "isbn": isbn or "",
                "partner": partner or "",
                "flow": flow or "",
                "outcome": outcome or "",
                "since": since or "",
                "until": until or "",
            },
            "partners": sorted(app.settings.partners),
            "flows": sorted(app.settings.flows),
            "outcomes": console.OUTCOMES,
        }
        partial = request.headers.get("HX-Request") == "true"
        return page(
            request, "deliveries_rows.html" if partial else "deliveries.html", who, **context
        )

    @pages.get("/titles/{isbn}", response_class=HTMLResponse)
    def title(request: Request, who: Who, isbn: str) -> HTMLResponse:
        isbn = isbn.replace("-", "").strip()
        return page(request, "timeline.html", who, t=console.timeline(app, isbn))

    @pages.get("/failures", response_class=HTMLResponse)
    def failures(request: Request, who: Who) -> HTMLResponse:
        return page(request, "failures.html", who, f=console.failures(app))

    @pages.post("/failures/retry", response_class=HTMLResponse)
    def retry(
        request: Request,
        who: Who,
        workflow_id: Annotated[str, Form(max_length=300)],
        csrf_token: CsrfField = None,
    ) -> HTMLResponse:
        operator_form(who, csrf_token)
        try:
            console.retry(app, workflow_id, by=who.name)
        except ConsonanceSftpError as exc:
            return page(request, "failures.html", who, 409, f=console.failures(app), error=str(exc))
        notice = f"Retrying {workflow_id}."
        if not console.executor_running(app):
            notice += " No service runs now: start 'consonance-sftp serve' to run it."
        return page(request, "failures.html", who, f=console.failures(app), notice=notice)

    @pages.post("/failures/resend", response_class=HTMLResponse)
    async def resend(
        request: Request,
        who: Who,
        workflow_id: Annotated[str, Form(max_length=300)],
        reason: NoteField = "",
        csrf_token: CsrfField = None,
    ) -> HTMLResponse:
        operator_form(who, csrf_token)

        async def render(status: int = 200, **extra: Any) -> HTMLResponse:
            f = await asyncio.to_thread(console.failures, app)
            return page(request, "failures.html", who, status, f=f, **extra)

        if not reason.strip():
            return await render(400, error="A resend needs a reason.")
        try:
            new_id = await console.resend(app, workflow_id, by=who.name, reason=reason)
        except ConsonanceSftpError as exc:
            return await render(409, error=str(exc))
        return await render(notice=f"Resending {workflow_id} as {new_id}.")

    @pages.get("/alerts", response_class=HTMLResponse)
    def alerts(request: Request, who: Who, all: bool = False) -> HTMLResponse:
        rows = app.store.list_alerts(unacknowledged=not all, limit=200)
        return page(request, "alerts.html", who, rows=rows, show_all=all)

    @pages.post("/alerts/ack", response_class=HTMLResponse)
    def ack(
        request: Request,
        who: Who,
        alert_id: IdField,
        note: NoteField = "",
        csrf_token: CsrfField = None,
    ) -> HTMLResponse:
        operator_form(who, csrf_token)
        done, missing = acknowledge(app.store, [alert_id], by=who.name, reason=note or None)
        rows = app.store.list_alerts(unacknowledged=True, limit=200)
        if missing:
            return page(request, "alerts.html", who, 404, rows=rows, error=f"no alert {alert_id}")
        notice = f"Alert {alert_id} acknowledged ({done[0].kind})."
        return page(request, "alerts.html", who, rows=rows, show_all=False, notice=notice)

    # --- flows ---------------------------------------------------------------------------------

    def flows_page(request: Request, who: Viewer, status: int = 200, **extra: Any) -> HTMLResponse:
        view = console.overview(app)
        crons = {s.flow: f"{s.cron} ({s.timezone})" for s in view.status.schedules}
        return page(request, "flows.html", who, status, rows=view.flows, crons=crons, **extra)

    def set_paused(scope: str, name: str, action: str, who: Viewer, reason: str) -> str:
        """Pause or resume (``action``) a flow or partner; the notice that says so (for a
        partner's resume, also what becomes of its held deliveries)."""
        change = Operations(app).set_paused(
            scope, name, paused=action == "pause", by=who.name, reason=reason
        )
        notice = f"{scope.capitalize()} {name} {'paused' if change.pause.paused else 'resumed'}."
        if (
            scope == "partner"
            and not change.pause.paused
            and (change.released or change.still_held)
        ):
            notice += (
                f" {change.released} held deliveries may go now, {change.still_held} still held."
            )
        return notice

    @pages.get("/flows", response_class=HTMLResponse)
    def flows(request: Request, who: Who) -> HTMLResponse:
        return flows_page(request, who)

    @pages.post("/flows/pause", response_class=HTMLResponse)
    def pause_flow(
        request: Request,
        who: Who,
        flow: NameField,
        action: PauseField,
        reason: NoteField = "",
        csrf_token: CsrfField = None,
    ) -> HTMLResponse:
        operator_form(who, csrf_token)
        known("flow", flow)
        return flows_page(request, who, notice=set_paused("flow", flow, action, who, reason))

    @pages.post("/flows/dry-run", response_class=HTMLResponse)
    async def dry_run(
        request: Request,
        who: Who,
        flow: NameField,
        isbns: IsbnsField = "",
        csrf_token: CsrfField = None,
    ) -> HTMLResponse:
        # operators only: it reads Consonance and packages files, not for every viewer
        operator_form(who, csrf_token)
        known("flow", flow)
        extra: dict[str, Any] = {}
        try:
            extra["plan"] = await console.dry_run(app, flow, _isbns(isbns))
        except ConsonanceSftpError as exc:
            extra["error"] = f"dry run of {flow} failed: {exc}"
        return await after(flows_page, request, who, extra, ok="plan")

    @pages.post("/flows/run", response_class=HTMLResponse)
    async def run_now(
        request: Request,
        who: Who,
        flow: NameField,
        isbns: IsbnsField = "",
        csrf_token: CsrfField = None,
    ) -> HTMLResponse:
        operator_form(who, csrf_token)
        known("flow", flow)
        extra: dict[str, Any] = {}
        try:
            done = await console.run_now(app, flow, by=who.name, isbns=_isbns(isbns))
            extra["notice"] = f"Ran {flow}: {done.summary()}."
            if done.failed:
                extra["error"] = "; ".join(f"{wf} failed: {why}" for wf, why in done.failed)
        except ConsonanceSftpError as exc:
            extra["error"] = f"run of {flow} failed: {exc}"
        return await after(flows_page, request, who, extra)

    # --- partners ------------------------------------------------------------------------------

    def partners_page(
        request: Request, who: Viewer, status: int = 200, **extra: Any
    ) -> HTMLResponse:
        return page(request, "partners.html", who, status, rows=console.partners(app), **extra)

    @pages.get("/partners", response_class=HTMLResponse)
    def partners(request: Request, who: Who) -> HTMLResponse:
        return partners_page(request, who)

    @pages.post("/partners/pause", response_class=HTMLResponse)
    def pause(
        request: Request,
        who: Who,
        partner: NameField,
        action: PauseField,
        reason: NoteField = "",
        csrf_token: CsrfField = None,
    ) -> HTMLResponse:
        operator_form(who, csrf_token)
        known("partner", partner)
        notice = set_paused("partner", partner, action, who, reason)
        return partners_page(request, who, notice=notice)

    @pages.post("/partners/probe", response_class=HTMLResponse)
    async def probe(
        request: Request,
        who: Who,
        partner: NameField,
        csrf_token: CsrfField = None,
    ) -> HTMLResponse:
        operator_form(who, csrf_token)
        known("partner", partner)
        extra = await attempt(
            Operations(app).probe(partner),
            lambda _: f"Partner {partner} probed.",
            f"probe of {partner} failed: ",
        )
        return await asyncio.to_thread(partners_page, request, who, **extra)

    @pages.post("/partners/test", response_class=HTMLResponse)
    async def send_test(
        request: Request,
        who: Who,
        partner: NameField,
        csrf_token: CsrfField = None,
    ) -> HTMLResponse:
        operator_form(who, csrf_token)
        known("partner", partner)
        extra = await attempt(
            console.send_test_file(app, partner, by=who.name),
            lambda line: f"Test file to {partner}: {line}.",
            f"test file to {partner} failed: ",
        )
        return await asyncio.to_thread(partners_page, request, who, **extra)

    # --- quarantine ----------------------------------------------------------------------------

    def quarantine_page(
        request: Request, who: Viewer, status: int = 200, **extra: Any
    ) -> HTMLResponse:
        return page(
            request,
            "quarantine.html",
            who,
            status,
            rows=console.quarantine_rows(app),
            kinds=console.INTAKE_KINDS,
            **extra,
        )

    @pages.get("/quarantine", response_class=HTMLResponse)
    def quarantine(request: Request, who: Who) -> HTMLResponse:
        return quarantine_page(request, who)

    @pages.get("/quarantine/{intake_id}/preview")
    def preview(who: Who, intake_id: Annotated[int, PathParam(ge=1, le=api.MAX_ID)]) -> Response:
        try:
            found = console.preview(app, intake_id)
        except ConsonanceSftpError as exc:
            raise HTTPException(404, str(exc)) from None
        return FileResponse(
            found.path,
            media_type=found.media_type,
            content_disposition_type="inline",
            filename=f"intake-{intake_id}",
            headers={"Content-Security-Policy": PREVIEW_CSP},
        )

    @pages.post("/quarantine/reject", response_class=HTMLResponse)
    def reject(
        request: Request,
        who: Who,
        intake_id: IdField,
        reason: NoteField = "",
        csrf_token: CsrfField = None,
    ) -> HTMLResponse:
        operator_form(who, csrf_token)
        try:
            quarantine_ops.reject(app, intake_id, reason=reason, by=who.name)
        except ConsonanceSftpError as exc:
            return quarantine_page(request, who, 409, error=str(exc))
        return quarantine_page(request, who, notice=f"File #{intake_id} rejected.")

    @pages.post("/quarantine/assign", response_class=HTMLResponse)
    async def assign(
        request: Request,
        who: Who,
        intake_id: IdField,
        isbn: Annotated[str, Form(max_length=20)],
        kind: Annotated[str, Form(max_length=40)],
        csrf_token: CsrfField = None,
    ) -> HTMLResponse:
        operator_form(who, csrf_token)
        extra = await attempt(
            quarantine_ops.assign(app, intake_id, isbn=isbn, kind=kind, by=who.name),
            lambda result: (
                f"File #{intake_id} assigned to {isbn} as {kind}: {result.outcome.value}."
            ),
        )
        return await after(quarantine_page, request, who, extra)

    # --- audit ---------------------------------------------------------------------------------

    def audit_page(
        request: Request,
        who: Viewer,
        subject: str | None,
        action: str | None,
        since: str | None,
        **extra: Any,
    ) -> HTMLResponse:
        events = console.audit_events(
            app, subject=subject or None, action=action or None, since=_day(since)
        )
        q = {"subject": subject or "", "action": action or "", "since": since or ""}
        return page(
            request,
            "audit.html",
            who,
            events=events,
            q=q,
            actions=console.audit_actions(),
            **extra,
        )

    @pages.get("/audit", response_class=HTMLResponse)
    def audit(
        request: Request,
        who: Who,
        subject: Annotated[str | None, Query(max_length=300)] = None,
        action: Annotated[str | None, Query(max_length=100)] = None,
        since: Annotated[str | None, Query(max_length=10)] = None,
    ) -> HTMLResponse:
        return audit_page(request, who, subject, action, since)

    @pages.post("/audit/verify", response_class=HTMLResponse)
    def verify(request: Request, who: Who, csrf_token: CsrfField = None) -> HTMLResponse:
        check_csrf(who, csrf_token)  # reading only: every role may verify
        report = Operations(app).verify_audit()
        return audit_page(request, who, None, None, None, report=report)

    web.include_router(pages)
    api.install(web, app)  # the JSON API under /api (web/api.py)
    # Prometheus scrapes /metrics with an API token (or `consonance-sftp metrics` on its own
    # port, on 127.0.0.1); here an anonymous scrape is refused like every other route.
    source = MetricsSource(app, ttl=metrics_cache)
    scrape = metrics_route.router(source, dependencies=[Depends(scraper)])
    web.include_router(scrape)
    # Every route of the console with a handler (what the security tests walk).
    web.state.all_routes = [
        *(r for r in web.router.routes if isinstance(r, APIRoute)),
        *pages.routes,
        *web.state.api_routes,
        *scrape.routes,
    ]
    web.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return web


def from_environment() -> FastAPI:
    """The console of the config ``$CONSONANCE_SFTP_CONFIG`` names: the factory
    ``consonance-sftp web`` hands uvicorn by name (``consonance_sftp.web.app:from_environment``),
    so the CLI starts the console without importing it."""
    app = App.from_config(os.environ.get(CONFIG_ENV, "consonance-sftp.toml"))
    return create_app(app, secure_cookies=os.environ.get(INSECURE_ENV) != "1")
