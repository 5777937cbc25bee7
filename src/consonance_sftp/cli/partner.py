"""``partner probe NAME [--apply]`` and ``partner test NAME``: what a partner's server supports.

The probing itself lives in the partner's adapter (SFTP, or FTP/FTPS: the same report with an
``ftp`` part), reached through ``app.operations`` (which stores
the report as JSON under ``<state_dir>/probes/`` and, with ``--apply``, writes the recommended
settings into ``[partners.NAME.transfer]`` of the config file, keeping its comments and layout
with tomlkit); this module formats the report. Nothing changes behaviour silently: without
``--apply`` the recommendations are only printed.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from consonance_sftp.cli.main import acting_user, load_app, state
from consonance_sftp.formats.wording import counted

if TYPE_CHECKING:  # the app and the SFTP stack load when a command runs, not at start-up
    from consonance_sftp.app.operations import ListingLag, Operations, ProbeReport

partner_app = typer.Typer(
    help="Partners' SFTP and FTP/FTPS servers: probe, test, trust.", no_args_is_help=True
)
# emoji=False: a fingerprint's ':CD:' or ':AB:' would print as an emoji code's picture.
console = Console(highlight=False, soft_wrap=True, emoji=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(partner_app, name="partner")


def _yes(value: bool) -> str:
    return "[green]yes[/green]" if value else "[red]no[/red]"


def render_report(report: ProbeReport) -> Table:
    if report.ftp is not None:
        return render_ftp_report(report)
    table = Table(title=f"partner {report.partner}", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("server", f"{report.server_version} (SFTP v{report.sftp_version})")
    table.add_row("extensions", ", ".join(report.extensions) or "none")
    table.add_row("posix-rename", _yes(report.posix_rename))
    table.add_row("rename", _yes(report.rename))
    table.add_row("rename over an existing file", _yes(report.rename_over_existing))
    table.add_row("setstat / utime", _yes(report.setstat))
    table.add_row("check-file (SHA-256)", _yes(report.check_file))
    table.add_row("hashing command over SSH", _yes(report.shell_hash))
    free = f", {report.free_bytes / 2**30:.1f} GiB free" if report.free_bytes is not None else ""
    table.add_row("statvfs", _yes(report.statvfs) + free)
    limits = ", ".join(f"{k}={v}" for k, v in report.limits.items()) or "not offered"
    table.add_row("limits", limits)
    if report.max_write_size is not None:
        table.add_row(
            "largest write / read",
            f"{report.max_write_size} / {report.max_read_size or '?'} bytes (measured)",
        )
    for folder, rights in report.folders.items():
        table.add_row(
            f"folder {folder}", f"list {_yes(rights['list'])}, write {_yes(rights['write'])}"
        )
    if report.clock_skew_seconds is not None:
        table.add_row("clock skew", f"{report.clock_skew_seconds:+.1f} s (server - local)")
    if report.listing_lag is not None:
        table.add_row("listing lag", _lag(report.listing_lag))
    return table


def _maybe(value: bool | None, unknown: str = "not measured") -> str:
    return unknown if value is None else _yes(value)


def render_ftp_report(report: ProbeReport) -> Table:
    """The same report shape for an FTP/FTPS server: FEAT, TLS, rename, hash, PASV."""
    facts = report.ftp
    assert facts is not None
    table = Table(title=f"partner {report.partner}", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("server", f"{escape(report.server_version)} ({facts.mode})")
    table.add_row("FEAT", escape(", ".join(facts.features)) or "none")
    for label, value in (
        ("MLSD", facts.mlsd),
        ("SIZE", facts.size),
        ("MDTM", facts.mdtm),
        ("REST STREAM", facts.rest_stream),
        ("UTF8", facts.utf8),
    ):
        table.add_row(label, _yes(value))
    if facts.mode != "ftp":
        tls = f"{facts.tls_version}, {facts.tls_cipher}"
        table.add_row("PROT P (data encrypted)", _maybe(facts.prot_p) + f" ({escape(tls)})")
        reuse = _maybe(facts.session_reuse_required)
        if facts.session_reuse_required and facts.session_reuse_error:
            reuse += f" (without it: {escape(facts.session_reuse_error)})"
        table.add_row("TLS session reuse required", reuse)
    hashing = facts.server_hash or "none"
    if facts.server_hash is not None:
        hashing += f", works: {_maybe(facts.server_hash_works)}"
    table.add_row("server SHA-256 (HASH/XSHA256)", hashing)
    table.add_row("rename", _yes(report.rename))
    table.add_row("rename over an existing file", _yes(report.rename_over_existing))
    table.add_row("remove (DELE)", _maybe(facts.remove))
    if facts.pasv_address:
        pasv = escape(facts.pasv_address)
        if facts.pasv_matches_control:
            pasv += ", the control address"
        else:
            pasv += " [yellow]private[/yellow]" if facts.pasv_private else ""
            pasv += f", not the control address {escape(facts.control_address)}"
            pasv += " (data goes to the control address)"
        if facts.pasv_reachable is False:
            pasv += " [red]unreachable[/red]"
        elif facts.pasv_reachable:
            pasv += ", reachable"
        table.add_row("PASV address", pasv)
    for folder, rights in report.folders.items():
        table.add_row(
            f"folder {escape(folder)}",
            f"list {_yes(rights['list'])}, write {_yes(rights['write'])}",
        )
    if report.clock_skew_seconds is not None:
        skew = f"{report.clock_skew_seconds:+.1f} s (server - local; MDTM to the second)"
        table.add_row("clock skew", skew)
    if report.leftovers:
        table.add_row("left behind", escape(", ".join(report.leftovers)))
    return table


def _lag(lag: ListingLag) -> str:
    """The listing-lag row: what a second session saw, and whether inboxes must allow for it."""

    def seconds(value: float | None) -> str:
        return f"{value:.1f} s" if value is not None else f"over {lag.timeout:.0f} s"

    seen = f"stat {seconds(lag.stat_seconds)}, listing {seconds(lag.listing_seconds)} (measured)"
    if lag.known_cache:
        seen += f"; [yellow]a cache of up to {lag.known_cache_seconds:.0f} s (known)[/yellow]"
    elif lag.lagging:
        seen += "; [yellow]lags[/yellow]"
    return seen


def _toml_value(value: Any) -> str:
    if value is None:
        return "(unset: the default)"
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


@partner_app.command("probe")
def probe(
    name: Annotated[str, typer.Argument(help="Partner name, as in [partners.NAME].")],
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the recommended settings into the config.")
    ] = False,
) -> None:
    """Connect with the configured credentials and report what the server really supports."""
    from consonance_sftp.app.operations import Operations, apply_recommendations

    report, stored = asyncio.run(Operations(load_app()).probe(name))
    console.print(render_report(report))
    for note in report.notes:
        console.print(f"  note: {note}", markup=False)
    console.print(f"stored: {stored}", markup=False)
    if not report.recommended:
        console.print("the current settings already match this server", markup=False)
        return
    console.print(f"\nrecommended settings for [partners.{name}.transfer]:", markup=False)
    for key, value in report.recommended.items():
        console.print(f"  {key} = {_toml_value(value)}", markup=False)
    if apply:
        apply_recommendations(state.config_path, name, dict(report.recommended))
        console.print(
            f"applied: wrote {counted(len(report.recommended), 'setting')} to "
            f"[partners.{name}.transfer] in {state.config_path}",
            markup=False,
        )
    else:
        console.print("run again with --apply to write them into the config", markup=False)


@partner_app.command("test")
def send_test(
    name: Annotated[str, typer.Argument(help="Partner name, as in [partners.NAME].")],
    folder: Annotated[
        str | None, typer.Option(help="Remote folder (default: the partner's first folder).")
    ] = None,
) -> None:
    """Send a small file through the full upload protocol, then remove it."""
    from consonance_sftp.app.operations import Operations

    sent = asyncio.run(Operations(load_app()).send_test(name, folder))
    result = sent.upload
    delivered = (
        f"sent {result.remote_path} ({result.size} bytes, sha256 {result.sha256[:16]}..., "
        f"verified by {result.verified_by}, {result.strategy}) in {result.seconds:.2f}s"
    )
    if sent.removed:
        console.print(f"ok: {delivered}, then removed it", markup=False)
        return
    # Delivered all the same: a drop box that takes files but refuses removes is a success.
    console.print(f"ok: {delivered}; delivered, could not clean up", markup=False)
    console.print(
        f"  note: the server refused to remove {', '.join(sent.left_behind)} "
        f"({sent.cleanup_error}); an upload-only drop box keeps what it is sent: ask the "
        "partner to delete the test file",
        markup=False,
    )


@partner_app.command("trust")
def trust(
    name: Annotated[str, typer.Argument(help="Partner name, as in [partners.NAME].")],
    fingerprint: Annotated[
        str | None,
        typer.Option(
            help="The SHA256 fingerprint the partner confirmed (e.g. by phone); any one of "
            "the server's keys (FTPS: of its TLS certificate)."
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Drop the previously pinned keys.")
    ] = False,
) -> None:
    """Show every host key a partner's server holds (an FTPS server: its TLS certificate);
    pin one once its fingerprint is confirmed.

    A server usually holds several keys (ed25519, ECDSA, RSA): each is fetched over its own
    key exchange. Never trusts on first use: a key is pinned, with its type, only when
    --fingerprint, obtained from the partner by another channel, is one of them.
    """
    from consonance_sftp.app.operations import Operations

    ops = Operations(load_app())
    by = acting_user()
    if ops.app.partner_config(name).is_ftp:
        _trust_certificate(ops, name, fingerprint, replace=replace, by=by)
        return
    trusting = ops.trust_host_key(state.config_path, name, fingerprint, replace=replace, by=by)
    check = asyncio.run(trusting)
    for key in check.presented:
        console.print(f"{name} presents: {key.fingerprint} ({key.key_type})", markup=False)
        console.print(f"  known_hosts line: {key.known_hosts_line}", markup=False)
    console.print(f"pinned now: {', '.join(check.pinned_before) or 'nothing'}", markup=False)
    if fingerprint is None:
        console.print(
            "confirm one of these fingerprints with the partner, then run again with "
            f"--fingerprint {check.presented[0].fingerprint}",
            markup=False,
        )
        return
    if check.pinned is None:
        shown = ", ".join(k.fingerprint for k in check.presented)
        console.print(
            f"refused: {fingerprint} is none of the keys the server holds ({shown}); "
            "nothing changed",
            markup=False,
        )
        raise typer.Exit(1)
    console.print(
        f"pinned {check.pinned.key_type} {check.pinned.fingerprint} for {name} in "
        f"{state.config_path}" + (" (replacing the old keys)" if replace else ""),
        markup=False,
    )
    # What comes next: a running ``serve`` reloads the file by itself; a paused partner
    # still needs ``partner resume``.
    if check.executor_running:
        console.print(
            "the running service reloads the config within a few seconds (or at once on SIGHUP)",
            markup=False,
        )
    if check.paused:
        console.print(
            f"{name} is still paused: 'consonance-sftp partner resume {name}' sends its held work",
            markup=False,
        )


def _trust_certificate(
    ops: Operations, name: str, fingerprint: str | None, *, replace: bool, by: str
) -> None:
    """``partner trust`` on an FTPS partner: the server's TLS certificate, pinned in
    ``tls_fingerprints`` once the operator gives the fingerprint the partner confirmed."""
    trusting = ops.trust_certificate(state.config_path, name, fingerprint, replace=replace, by=by)
    check = asyncio.run(trusting)
    cert = check.presented
    console.print(f"{name} presents a TLS certificate: {cert.fingerprint}", markup=False)
    console.print(f"  subject: {cert.subject}", markup=False)
    console.print(
        f"  issuer:  {cert.issuer}" + (" (self-signed)" if cert.self_signed else ""),
        markup=False,
    )
    console.print(f"  valid:   {cert.not_before} to {cert.not_after}", markup=False)
    console.print(f"  names:   {', '.join(cert.names) or 'none (no subjectAltName)'}", markup=False)
    trusted = "yes" if cert.system_ca_trusted else f"no ({cert.system_ca_error})"
    console.print(f"  trusted by the system CAs for this host: {trusted}", markup=False)
    pinned_now = ", ".join(check.pinned_before) or "nothing (nothing is sent until one is)"
    console.print(f"pinned now: {pinned_now}", markup=False)
    if fingerprint is None:
        console.print(
            "confirm this fingerprint with the partner, then run again with "
            f"--fingerprint {cert.fingerprint}",
            markup=False,
        )
        return
    if not check.pinned:
        console.print(
            f"refused: {fingerprint} is not the certificate the server presents "
            f"({cert.fingerprint}); nothing changed",
            markup=False,
        )
        raise typer.Exit(1)
    console.print(
        f"pinned TLS certificate {cert.fingerprint} for {name} in {state.config_path}"
        + (" (replacing the old fingerprints)" if replace else ""),
        markup=False,
    )
    if check.executor_running:
        console.print(
            "the running service reloads the config within a few seconds (or at once on SIGHUP)",
            markup=False,
        )
    if check.paused:
        console.print(
            f"{name} is still paused: 'consonance-sftp partner resume {name}' sends its held work",
            markup=False,
        )
