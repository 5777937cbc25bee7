"""Raw settings (what a config file holds, as a dict) that the inbox tests share: a project whose
Consonance is never called, and a partner entry for the private OpenSSH server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consonance_sftp.sandbox.openssh import OpenSshServer

# Port 9 (discard) on loopback: nothing answers, so a call to Consonance would fail at once.
UNREACHABLE_CONSONANCE = "http://127.0.0.1:9"


def offline_settings(root: Path, **sections: Any) -> dict[str, Any]:
    """Settings for a project under ``root`` (state in ``root/var``) that never reaches Consonance;
    ``sections`` (partners, flows, engine, ...) are added as given. Writes the token file the
    settings point at."""
    token = root / "token"
    token.write_text("unused")
    return {
        "state_dir": str(root / "var"),
        "consonance": {"base_url": UNREACHABLE_CONSONANCE, "token": {"file": str(token)}},
        **sections,
    }


def openssh_partner(
    openssh: OpenSshServer, folders: dict[str, str], **entry: Any
) -> dict[str, Any]:
    """A partner entry for ``openssh`` as its shell account (host key pinned, key auth);
    ``entry`` adds or overrides fields (``transfer``, ``max_connections``, ``user``, ...)."""
    return {
        "host": openssh.host,
        "port": openssh.port,
        "user": openssh.shell_user,
        "host_keys": [openssh.known_hosts_line],
        "auth": {"key": str(openssh.client_key_path)},
        "folders": folders,
        **entry,
    }
