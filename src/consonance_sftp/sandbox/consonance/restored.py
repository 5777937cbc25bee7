"""A fresh sandbox seeded from a restored archive (``archive restore --seed-sandbox``).

The records of the bag's metadata (``app.archive_seed.read_archived``) become a new sandbox
catalogue under ``<data_dir>/consonance`` (never an existing one: a sandbox already there is
refused, so a running sandbox's catalogue is never touched). The sandbox is then started on a
free port on 127.0.0.1 just long enough for the client to read everything back over HTTP, and
the result is compared with the archived JSON, field by field. ``consonance-sftp sandbox serve
--data-dir <data_dir>`` serves it afterwards.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from consonance_sftp.app.archive_seed import (
    ArchivedCatalogue,
    SeedCheck,
    compare,
    read_archived,
    read_back,
)
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.sandbox.consonance.catalogue import Catalogue
from consonance_sftp.sandbox.consonance.runner import SandboxThread
from consonance_sftp.sandbox.consonance.seed import catalogue_dir
from consonance_sftp.sandbox.consonance.server import SandboxSettings


def seed_restored(archived: ArchivedCatalogue, data_dir: Path) -> Catalogue:
    """A new sandbox catalogue of exactly the archived records, saved under ``data_dir``."""
    where = catalogue_dir(data_dir)
    if Catalogue.exists(where):
        raise ConsonanceSftpError(
            f"{where} already holds a sandbox catalogue; a restore seeds a new one only",
            hint="Restore into a new folder (--to).",
        )
    catalogue = Catalogue.from_records(archived.works, archived.contacts, archived.contracts)
    catalogue.save(where)
    return catalogue


def prove_restore(bag: Path, data_dir: Path) -> SeedCheck:
    """Seed a fresh sandbox from the restored ``bag``, read it all back through the client,
    and compare with the archived metadata."""
    archived = read_archived(bag)
    catalogue = seed_restored(archived, data_dir)
    # data_dir None: reading back changes nothing, and nothing is saved over the seed.
    with SandboxThread(catalogue, SandboxSettings()) as server:
        read = asyncio.run(read_back(server.url, server.token))
    check = compare(archived.raw, read)
    check.url = server.url
    check.data_dir = str(data_dir)
    return check
