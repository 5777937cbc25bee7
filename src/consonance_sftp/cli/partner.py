"""``partner probe NAME [--apply]`` and ``partner test NAME``: what a partner's server supports.

The probing itself lives in the SFTP adapter, reached through ``app.operations`` (which stores
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
from rich.table import Table

from consonance_sftp.cli.main import acting_user, load_app, state
from consonance_sftp.formats.wording import counted

if TYPE_CHECKING:  # the app and the SFTP stack load when a command runs, not at start-up
    from consonance_sftp.app.operations import ListingLag, ProbeReport

partner_app = typer.Typer(help="Partners' SFTP servers: probe and test.", no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(partner_app, name="partner")


def _yes(value: bool) -> str:
    return "[green]yes[/green]" if value else "[red]no[/red]"


def render_report(report: ProbeReport) -> Table:
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
            "the server's keys."
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Drop the previously pinned keys.")
    ] = False,
) -> None:
    """Show every host key a partner's server holds; pin one once its fingerprint is confirmed.

    A server usually holds several keys (ed25519, ECDSA, RSA): each is fetched over its own
    key exchange. Never trusts on first use: a key is pinned, with its type, only when
    --fingerprint, obtained from the partner by another channel, is one of them.
    """
    from consonance_sftp.app.operations import Operations

    ops = Operations(load_app())
    by = acting_user()
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
