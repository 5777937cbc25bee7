"""The intake flow's hand-off, wired to this App: ``flows.intake.IntakeProcessor`` with the
Consonance client, the store, the flow's matching settings (read at each file, so a config
reload applies to the next one) and a manifest reader over the partner's SFTP server.

``App.engine`` binds it as the engine's handler for the ``intake`` kind; ``app.quarantine``
builds the same processor for ``quarantine assign``.
"""

from __future__ import annotations

import asyncio
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from consonance_sftp.config.flows import IntakeFlow
from consonance_sftp.flows.intake import IntakeContext, IntakeProcessor
from consonance_sftp.logs import get_logger
from consonance_sftp.ports.intake import IntakeRequest

if TYPE_CHECKING:
    from consonance_sftp.app import App

log = get_logger(__name__)

MAX_MANIFEST_BYTES = 1024 * 1024
"""A manifest is a few lines; anything bigger is not read (the rule then does not match)."""


def manifest_companions(app: App, request: IntakeRequest) -> list[str]:
    """The per-file manifests (templates with ``{name}``) of the file's flow and partner: the
    post-action moves or deletes them with the file. A ``{stem}`` manifest may describe more
    than one file, so it stays."""
    flow = app.settings.flows.get(request.flow)
    if not isinstance(flow, IntakeFlow):
        return []
    matching = flow.match_for(request.partner)
    if matching is None or "manifest" not in matching.rules:
        return []
    name = posixpath.basename(request.remote_path)
    return [t.format(name=name, stem="") for t in matching.manifests if "{stem}" not in t]


def intake_processor(app: App) -> IntakeProcessor:
    """The ``intake`` kind's hand-off for this App."""

    def context(request: IntakeRequest) -> IntakeContext:
        flow = app.settings.flows.get(request.flow)
        if not isinstance(flow, IntakeFlow):
            return IntakeContext(matching=None, folder="")
        partner = app.settings.partners.get(request.partner)
        folder = partner.folders.get(flow.folder, "") if partner is not None else ""
        return IntakeContext(
            matching=flow.match_for(request.partner), folder=folder, screening=flow.screening
        )

    async def read_manifest(request: IntakeRequest, names: list[str]) -> tuple[str, bytes] | None:
        folder = posixpath.dirname(request.remote_path)
        async with app.remote_fs(request.partner) as fs:
            for name in names:
                path = posixpath.join(folder, name)
                entry = await fs.stat(path)
                if entry is None or not entry.is_file or entry.size > MAX_MANIFEST_BYTES:
                    continue
                scratch = app.state_dir / "tmp"
                await asyncio.to_thread(scratch.mkdir, parents=True, exist_ok=True)
                where = Path(await asyncio.to_thread(tempfile.mkdtemp, dir=scratch))
                try:
                    local = where / "manifest"
                    await fs.download(path, local, expected_size=entry.size)
                    return name, await asyncio.to_thread(local.read_bytes)
                finally:
                    await asyncio.to_thread(shutil.rmtree, where, True)
        return None

    return IntakeProcessor(
        consonance=app.consonance,
        store=app.store,
        context=context,
        read_manifest=read_manifest,
        unpack_root=app.state_dir / "unpacked",
    )
