"""An archive flow's project for the archive tests: a sandbox catalogue, a partner folder on the
real OpenSSH server, a fresh age key pair, and the config (written to disk for the CLI) of one
`nightly` archive flow encrypting to that key."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyrage
import tomlkit

from consonance_sftp.app import App
from consonance_sftp.config import Settings
from consonance_sftp.ports.store import AssetVersion
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.fixtures.consonance_sandbox import SandboxHandle, start_sandbox
from tests.settings import openssh_partner


@dataclass(frozen=True)
class ArchiveProject:
    root: Path
    sandbox: SandboxHandle
    partner: Path  # the `vault` partner's folder on the server
    key: Path  # the age identity file
    recipient: str
    raw: dict[str, Any]  # the config as written
    config: Path

    def app(self) -> App:
        return App(Settings.model_validate(self.raw), self.config)


def archive_project(
    root: Path,
    openssh: OpenSshServer | None,
    *,
    titles: int,
    seed: int,
    vault: tuple[dict[str, Any], Path] | None = None,
    **flow: Any,
) -> ArchiveProject:
    """The project; ``flow`` adds settings to the `nightly` flow. Stop ``sandbox`` after.
    The `vault` partner is a folder on ``openssh``, unless ``vault`` gives another partner's
    config and the folder on disk its files land in."""
    sandbox = start_sandbox(generate_catalogue(titles, seed=seed))
    token = root / "token"
    token.write_text(sandbox.token)
    if vault is None:
        assert openssh is not None
        partner = root / "vault"
        partner.mkdir()
        vault = openssh_partner(openssh, {"send": str(partner)}), partner
    vault_config, partner = vault
    identity = pyrage.x25519.Identity.generate()
    key = root / "publisher.key"
    key.write_text(str(identity) + "\n")
    recipient = str(identity.to_public())
    raw: dict[str, Any] = {
        "state_dir": str(root / "var"),
        "consonance": {"base_url": sandbox.url, "token": {"file": str(token)}},
        "partners": {"vault": vault_config},
        "flows": {
            "nightly": {
                "kind": "archive",
                "partners": ["vault"],
                "organisation": "Meridian Press",
                "age_recipients": [recipient],
                **flow,
            }
        },
    }
    config = root / "consonance-sftp.toml"
    config.write_text(tomlkit.dumps(raw))
    return ArchiveProject(root, sandbox, partner, key, recipient, raw, config)


def add_interior(app: App, project: ArchiveProject, size: int) -> bytes:
    """A random interior PDF recorded as the first title's current asset; its bytes."""
    work = project.sandbox.catalogue.works[min(project.sandbox.catalogue.works)]
    interior = project.root / "interior.pdf"
    data = os.urandom(size)
    interior.write_bytes(data)
    app.store.add_asset_version(
        AssetVersion(
            work_id=work.id,
            product_id=work.products[0].id,
            kind="INTERIOR",
            sha256="0" * 64,
            size=len(data),
            local_path=str(interior),
        )
    )
    return data
