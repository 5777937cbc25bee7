"""Which files of a partner's inbox an intake flow takes: pure decisions over a listing (no
I/O), shared by the intake flows (``flows.intake``, ``flows.sales_in``: each flow's ``take``).

``app.intake`` lists a partner's folder, asks these functions what to do, and does the rest
(the intake ledger lookup, the second look at each file, the intake workflows):

1. ``take``: of one listing, the files the flow may take (regular, not hidden, not a
   done-marker, not one of our own temporary upload names nor acknowledgements, one of the
   flow's ``patterns``),
   and everything else left alone with why (``Ignored``);
2. ``with_done_markers``: with ``intake_done_marker``, only the files whose marker is there;
3. ``old_enough`` and ``unchanged``: without a marker, the files older than ``min_age`` and
   the same size and mtime across ``stable_interval`` (the second look a ``stat`` of each file:
   a server answering listings from a cache shows a growing file unchanged in two listings).
"""

from __future__ import annotations

import posixpath
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from consonance_sftp.config.flows import IntakeFlowBase
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.ports.remote_fs import RemoteEntry

FILE = "file"
"""The kind a listing gives a regular file (``RemoteFS.list_kinds``)."""
FOLDER = "a folder (an inbox takes the files directly in it)"


@dataclass(frozen=True, slots=True)
class Ignored:
    """An entry a poll leaves alone, and why. ``noted``: worth one audit event (a hidden file,
    a link, a folder, a temporary name), unlike a file that simply is not the flow's."""

    entry: RemoteEntry
    reason: str
    noted: bool = True


@dataclass(slots=True)
class Taking:
    """What ``take`` made of one listing."""

    candidates: list[RemoteEntry] = field(default_factory=list)  # the flow may take them
    ignored: list[Ignored] = field(default_factory=list)  # in listing order
    files: dict[str, RemoteEntry] = field(default_factory=dict)  # every regular file, by path


def marker_regex(template: str) -> re.Pattern[str]:
    """Names that are done-markers under ``template`` (``{name}.done``, ``{stem}.ok``...)."""
    parts: list[str] = []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name is not None:
            parts.append("[^.]*" if name == "suffix" else ".+")
    return re.compile("".join(parts))


def marker_name(template: str, name: str) -> str:
    """The done-marker's name for a file under ``template``."""
    stem, dot, suffix = name.rpartition(".")
    return template.format(name=name, stem=stem if dot else name, suffix=suffix if dot else "")


def is_our_temp_name(name: str, ts: TransferSettings) -> bool:
    """Our own temporary upload names (a delivery to the same folder still under way)."""
    if ts.temp_folder or not (ts.temp_prefix or ts.temp_suffix):
        return False
    return name.startswith(ts.temp_prefix) and name.endswith(ts.temp_suffix)


ACK_SUFFIXES = (".accepted", ".quarantined")
"""Suffixes of the acknowledgements we write back to a partner (``intake_ack``)."""


def is_ack_name(name: str) -> bool:
    """One of our acknowledgements (``<name>.accepted``, ``<name>.quarantined``): never taken
    in, whether or not the partner asks for them now (it may have asked before)."""
    return name.endswith(ACK_SUFFIXES) and name not in ACK_SUFFIXES


def ignored_reason(entry: RemoteEntry, kind: str) -> str | None:
    """Why a poll leaves an entry alone whatever the flow's patterns (None: it may take it)."""
    if kind == "folder":
        return FOLDER
    if kind == "symbolic link":
        return "a symbolic link (an inbox takes regular files only)"
    if kind != FILE:
        return "not a regular file"
    if entry.name.startswith("."):
        return "a hidden file (its name starts with '.')"
    return None


def take(
    flow: IntakeFlowBase, listing: Iterable[tuple[RemoteEntry, str]], ts: TransferSettings
) -> Taking:
    """Of one listing of (entry, kind), the files this flow may take, and what it leaves."""
    markers = marker_regex(ts.intake_done_marker) if ts.intake_done_marker else None
    out = Taking()
    for entry, kind in listing:
        if kind == FILE:
            out.files[entry.path] = entry
        if markers is not None and kind == FILE and markers.fullmatch(entry.name):
            continue  # a done-marker: it goes with its file
        why = ignored_reason(entry, kind)
        if kind == FILE and is_our_temp_name(entry.name, ts):
            why = "a temporary upload name (an upload still under way)"
        if why is None and kind == FILE and is_ack_name(entry.name):
            # Not noted: one is written for every file taken in.
            out.ignored.append(Ignored(entry, "an acknowledgement we wrote", noted=False))
        elif why is not None:
            out.ignored.append(Ignored(entry, why))
        elif not flow.accepts(entry.name):
            out.ignored.append(Ignored(entry, "not in patterns", noted=False))
        else:
            out.candidates.append(entry)
    return out


def with_done_markers(
    candidates: Iterable[RemoteEntry],
    files: Mapping[str, RemoteEntry],
    folder: str,
    template: str,
) -> tuple[list[RemoteEntry], list[RemoteEntry]]:
    """(ready, waiting): the candidates whose done-marker is listed, and the others."""
    ready: list[RemoteEntry] = []
    waiting: list[RemoteEntry] = []
    for entry in candidates:
        # Beside the file: in its own folder (a sub-folder of ``folder`` when it has them).
        marker = posixpath.join(
            posixpath.dirname(entry.path) or folder, marker_name(template, entry.name)
        )
        (ready if marker in files else waiting).append(entry)
    return ready, waiting


def old_enough(
    candidates: Iterable[RemoteEntry], min_age: float, now: float
) -> tuple[list[RemoteEntry], list[RemoteEntry]]:
    """(old, young): the candidates older than ``min_age`` seconds at ``now``, and the others."""
    old: list[RemoteEntry] = []
    young: list[RemoteEntry] = []
    for entry in candidates:
        (young if min_age and now - entry.mtime < min_age else old).append(entry)
    return old, young


def unchanged(
    entries: Iterable[RemoteEntry], again: Mapping[str, RemoteEntry]
) -> tuple[list[RemoteEntry], list[RemoteEntry]]:
    """(stable, moving): the entries with the same size and mtime in a later look (``again``:
    by path, a ``stat`` of each; a file missing from it is moving)."""
    stable: list[RemoteEntry] = []
    moving: list[RemoteEntry] = []
    for entry in entries:
        later = again.get(entry.path)
        same = later is not None and (later.size, later.mtime) == (entry.size, entry.mtime)
        (stable if same else moving).append(entry)
    return stable, moving
