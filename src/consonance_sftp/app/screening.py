"""The intake screen the engine runs on every received file (``flows.intake_screen``), wired
to the config and to clamd (``adapters.clamd``) for the flows that name a socket.

The screen reads each flow's ``screening`` settings at the moment a file is screened, so a
config reload applies to the next file. A flow without ``clamd_socket`` is told about once per
process, when the engine is built: its files are not scanned for malware.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from consonance_sftp.adapters.clamd import ClamdScanner
from consonance_sftp.config.flows import FlowBase, IntakeScreening
from consonance_sftp.flows import registry
from consonance_sftp.flows.intake_screen import IntakeScreener
from consonance_sftp.logs import get_logger
from consonance_sftp.ports.intake import MalwareScanner

if TYPE_CHECKING:
    from consonance_sftp.app import App

log = get_logger("consonance_sftp.activity")

_told: set[str] = set()
_told_lock = threading.Lock()


def scanner_for(settings: IntakeScreening) -> MalwareScanner | None:
    """clamd for a flow that names its socket, else None (no malware scan)."""
    if settings.clamd_socket is None:
        return None
    return ClamdScanner(Path(settings.clamd_socket), timeout=settings.clamd_timeout)


def intake_screen(app: App) -> IntakeScreener:
    """The engine's ``IntakeScreen``: each flow's settings, read from the live config."""
    say_unscanned(app.settings.flows)

    def settings_for(flow: str) -> IntakeScreening:
        # A flow removed by a config reload while its file was being taken in: the defaults
        # still screen the file (which is then kept, awaiting an operator).
        found = app.settings.flows.get(flow)
        config = registry.intake_flow(found) if found is not None else None
        return config.screening if config is not None else IntakeScreening()

    return IntakeScreener(settings_for, scanner_for)


def say_unscanned(flows: Mapping[str, FlowBase]) -> list[str]:
    """One WARNING per enabled intake flow without a malware scanner, or whose clamd socket is
    not there (its files would be quarantined unscreened until clamd runs), once per process;
    returns the flows told about now."""
    told: list[str] = []
    for name, flow in flows.items():
        config = registry.intake_flow(flow)
        if config is None or not config.enabled:
            continue
        socket = config.screening.clamd_socket
        if socket is not None and Path(socket).exists():
            continue
        with _told_lock:
            if name in _told:
                continue
            _told.add(name)
        told.append(name)
        if socket is None:
            log.warning(
                "flow %s: no malware scan (screening.clamd_socket is not set); received files "
                "are still checked for size, emptiness and archives",
                name,
            )
        else:
            log.warning(
                "flow %s: clamd's socket %s is not there (is clamd running?); received files "
                "are quarantined unscanned until it is",
                name,
                socket,
            )
    return told
