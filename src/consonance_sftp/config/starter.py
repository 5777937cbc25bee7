"""``consonance-sftp init``: a starter config wired to the local sandbox, plus its keys.

The starter passes ``config check`` as written: it pins the sandbox SFTP server's host key
(generated here, so it is known before the server first starts), logs in with a fresh ed25519
client key, and reads the sandbox API token from a file. Nothing existing is ever overwritten:
every target is checked first, and each file is created with ``O_EXCL`` so a file appearing in
between is not clobbered either.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from consonance_sftp.errors import ConsonanceSftpError

CONFIG_NAME = "consonance-sftp.toml"
CLIENT_KEY = Path("keys/client_ed25519")
TOKEN_FILE = Path("keys/consonance-sandbox-token")
SANDBOX_HOST_KEY = Path("var/sandbox/ssh_host_ed25519_key")
SANDBOX_PARTNERS = (
    "printer",
    "distributor",
    "ebook-vendor",
    "audio-vendor",
    "marketing",
    "designer",
)
SANDBOX_HOST = "127.0.0.1"
SANDBOX_SFTP_PORT = 2222
SANDBOX_API_PORT = 8765


class InitRefused(ConsonanceSftpError):
    """``init`` found a file it would have to overwrite."""

    default_hint = (
        "init never overwrites files: move the listed files away, or run "
        "'consonance-sftp init --dir NEW_FOLDER'."
    )


@dataclass(frozen=True, slots=True)
class WrittenFile:
    path: Path
    mode: int
    what: str


def init_project(
    directory: Path, *, sftp_port: int = SANDBOX_SFTP_PORT, api_port: int = SANDBOX_API_PORT
) -> list[WrittenFile]:
    """Write the starter config, client key pair, sandbox host key and token into ``directory``.

    The ports are the sandbox's; the demo passes free ones so it never collides with a sandbox
    already running on the defaults.
    """
    directory = directory.expanduser()
    client_key = asyncssh.generate_private_key("ssh-ed25519", comment="consonance-sftp client")
    host_key = asyncssh.generate_private_key("ssh-ed25519", comment="consonance-sftp sandbox")
    token = secrets.token_urlsafe(32)
    host_pub = host_key.export_public_key("openssh").decode().split()
    known_hosts_line = f"[{SANDBOX_HOST}]:{sftp_port} {host_pub[0]} {host_pub[1]}"

    config = starter_config(known_hosts_line, sftp_port, api_port)
    files: list[tuple[Path | str, bytes, int, str]] = [
        (CONFIG_NAME, config.encode(), 0o644, "config"),
        (CLIENT_KEY, client_key.export_private_key("openssh"), 0o600, "client private key"),
        (
            CLIENT_KEY.with_name(CLIENT_KEY.name + ".pub"),
            client_key.export_public_key("openssh"),
            0o644,
            "client public key (the sandbox accepts it; give it to real partners)",
        ),
        (SANDBOX_HOST_KEY, host_key.export_private_key("openssh"), 0o600, "sandbox host key"),
        (TOKEN_FILE, (token + "\n").encode(), 0o600, "sandbox Consonance API token"),
    ]
    targets = [directory / name for name, *_ in files]
    existing = [str(path) for path in targets if path.exists() or path.is_symlink()]
    if existing:
        raise InitRefused(f"init would overwrite {', '.join(existing)}; nothing was written")
    written: list[WrittenFile] = []
    for (_name, content, mode, what), path in zip(files, targets, strict=True):
        _create(path, content, mode)
        written.append(WrittenFile(path, mode, what))
    return written


def _create(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise InitRefused(f"init would overwrite {path}; it appeared while init ran") from None
    except OSError as exc:
        raise ConsonanceSftpError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    # The umask may have removed bits; private files must be exactly 0600 either way.
    os.chmod(path, mode)


def starter_config(
    known_hosts_line: str,
    sftp_port: int = SANDBOX_SFTP_PORT,
    api_port: int = SANDBOX_API_PORT,
) -> str:
    """The commented starter TOML, pinned to the sandbox host key given."""
    host, port = SANDBOX_HOST, sftp_port
    partners = "\n".join(
        _PARTNER.format(name=name, host=host, port=port, known_hosts_line=known_hosts_line)
        for name in SANDBOX_PARTNERS
    )
    sandbox_partners = ", ".join(f'"{name}"' for name in SANDBOX_PARTNERS)
    return _TEMPLATE.format(
        api=f"http://{SANDBOX_HOST}:{api_port}",
        api_port=api_port,
        token_file=TOKEN_FILE.as_posix(),
        partners=partners.rstrip(),
        sandbox_partners=sandbox_partners,
        sftp_host=host,
        sftp_port=port,
        host_key=SANDBOX_HOST_KEY.as_posix(),
        client_pub=CLIENT_KEY.as_posix() + ".pub",
    )


_PARTNER = """\
[partners.{name}]
host = "{host}"
port = {port}
user = "{name}"
host_keys = ["{known_hosts_line}"]
auth = {{ key = "keys/client_ed25519" }}
folders = {{ send = "/in", receive = "/out" }}
max_connections = 2
"""

_TEMPLATE = """\
# consonance-sftp configuration (written by `consonance-sftp init`).
#
# This starter talks to the local sandbox: a Consonance-compatible API and one SFTP server
# holding a folder per partner. Start it with `consonance-sftp sandbox`, check this file with
# `consonance-sftp config check`. Every key is described in docs/reference/config.md.
#
# Relative paths are relative to this file's folder. Secrets are never written here: use
# {{env = "NAME"}} (an environment variable) or {{file = "path"}} (a file, mode 0600).

# Local state: SQLite databases, downloaded files, archives.
state_dir = "var"

[consonance]
base_url = "{api}"
token = {{ file = "{token_file}" }}
timeout = 30
# A real account:
# base_url = "https://web.consonance.app"
# token = {{ env = "CONSONANCE_TOKEN" }}

[database]
# Our own records (delivery ledger, audit trail, versions). SQLite by default; to scale out
# over several machines use PostgreSQL, e.g.
# url = "postgresql+psycopg://consonance@db.internal/consonance_sftp"
url = "sqlite:///{{state_dir}}/consonance-sftp.db"
# The durable engine's own database; never the same database as `url`.
dbos_system_url = "sqlite:///{{state_dir}}/dbos-system.db"

[logging]
level = "INFO"

# --- partners --------------------------------------------------------------------------------
# One table per partner. host_keys pins the server's key: no connection without a match.
# folders maps roles to remote paths: `send` is where we put files, `receive` is where the
# partner leaves files for us. Flows name a role, not a path.

{partners}

# A real partner: password from the environment, host key pinned by its SHA256 fingerprint
# (get it from the partner, or `ssh-keyscan -p 22 sftp.acme-print.example | ssh-keygen -lf -`
# and confirm it with them by phone). Give them keys/client_ed25519.pub for key auth instead.
#
# [partners.acme-print]
# host = "sftp.acme-print.example"
# port = 22
# user = "publisher01"
# host_keys = ["SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"]
# auth = {{ password = {{ env = "ACME_PRINT_PASSWORD" }} }}
# folders = {{ send = "/incoming", receive = "/outgoing" }}
# max_connections = 4
# # Files only at night, UK time: outside the window deliveries wait, on the record.
# delivery_window = {{ start = "22:00", end = "06:00", timezone = "Europe/London" }}
# [partners.acme-print.transfer]
# upload_strategy = "rename"

# --- flows -----------------------------------------------------------------------------------
# One table per exchange; `kind` says which one. `partners` name tables above.

[flows.print-files]
kind = "production"
partners = ["printer"]
# Sent when the work reaches this project stage in Consonance.
when = {{ project_stage = "Production approval" }}

[flows.onix-distributor]
kind = "onix_feed"
partners = ["distributor"]
sender_name = "Sandbox Books"
schedule = {{ cron = "0 6 * * *", timezone = "Europe/London" }}
# What the distributor receives: ONIX 3.0, only what changed since the last successful send
# (`consonance-sftp run onix-distributor --full` forces a full resend). Filters, price types,
# currencies, notification types, file name and compression: docs/how-to/onix-feeds.md.
recipient = {{ onix_version = "3.0", mode = "delta", compression = "none" }}
# A partner with its own rules instead, e.g. Google Play Books rules (ebooks only, never
# block updates), zipped:
# [flows.onix-distributor.partner_recipients.distributor]
# preset = "google_play_books"
# currencies = ["GBP", "USD"]
# compression = "zip"

# Intake flows store each new file durably under state_dir/inbox (checksummed, on the
# record). The designers' flow then matches each file to its title and attaches it in
# Consonance as the next version of its kind (awaiting approval there), and ticks off the
# title's to-do. A file it cannot match waits in quarantine with the reason, never dropped:
# `consonance-sftp quarantine list`. Two intake flows must not poll one folder with
# overlapping patterns: `config check` reports it. Sales reports have a flow kind of their
# own (`sales_in`: docs/how-to/sales-reports.md). Rules and reasons:
# docs/reference/intake-matching.md.
[flows.design-intake]
kind = "intake"
partners = ["designer"]
poll_interval = 60

[flows.design-intake.match]
# Tried in this order until one fits: a manifest beside the file (its name plus
# .manifest.json, naming the ISBN); the designers' naming convention, ISBN, kind and their
# own version number, e.g. 9781900200011_cover_v3.pdf; else an ISBN-13 or ISBN-10 anywhere
# in the name, e.g. "Cover 9781900200011 final.pdf". The ISBN must be a product in Consonance.
rules = ["manifest", "pattern", "isbn"]
pattern = '(?P<isbn>97[89]\\d{{10}})_(?P<kind>[a-z_]+)_v(?P<version>\\d+)\\.'
# A file whose name says no kind (cover, interior, index, ...) is taken as a cover.
kind = "cover"
# Each received file completes the title's open "Cover brief" to-do ("note" instead adds a
# note to the work; "none" leaves to-dos alone).
todo = "Cover brief"
todo_action = "complete"

[flows.sales-reports]
kind = "sales_in"
partners = ["distributor"]
# Every line of the Consonance sales import needs a channel ID: map the partner's channels
# or territories to yours (map = {{ "Amazon" = "AMZ" }}), with a default for the rest.
# `consonance-sftp sales check FILE` shows what the service makes of a report.
channels = {{ default = "RETAIL" }}

[flows.marketing-release]
kind = "marketing"
partners = ["marketing"]
# Once a product is active (ONIX publishing status 04); the embargo still holds it until
# publication.
when = {{ publishing_status = "04" }}

[flows.ebook-package]
kind = "formats"
partners = ["ebook-vendor"]
file_variants = ["EPUB"]
# Eight weeks ahead of publication, as ebook retailers ask.
when = {{ days_before_publication = 56 }}

[flows.audio-package]
kind = "formats"
partners = ["audio-vendor"]
file_variants = ["AUDIO"]
when = {{ days_before_publication = 56 }}

# A nightly archive (one BagIt bag: metadata, ONIX, history, assets) into var/archive;
# off until you choose where copies go (`partners`) and who can decrypt (`age_recipients`).
# docs/how-to/archive.md
[flows.nightly-archive]
kind = "archive"
enabled = false
organisation = "Sandbox Books"
schedule = {{ cron = "30 2 * * *", timezone = "UTC" }}

# Royalty statements, each payee (or its agency) receiving only its own: finance drops each
# batch exported from Consonance into var/finance/statements; nothing leaves before
# `consonance-sftp finance approve` and `finance send` (docs/how-to/finance-statements.md).
# `consonance-sftp sandbox statements --out var/finance/statements/2026H1` makes a batch.
# [flows.royalty-statements]
# kind = "finance_out"
# statement_pattern = "statement_*_{{contact}}.pdf"
# publisher = "Sandbox Books"
# schedule = {{ cron = "*/15 * * * *", timezone = "UTC" }}
# [flows.royalty-statements.agents.acme-agency]
# partner = "acme-agency"
# payees = [501, 502, 503]
# [flows.royalty-statements.payees]
# "504" = {{ partner = "acme-author", encrypt = "age", age_recipients = ["age1..."] }}

# --- notifications ---------------------------------------------------------------------------
# Alerts are always recorded in the database; these targets also receive them.

[[notifications]]
type = "log"
min_severity = "warning"

# [[notifications]]
# type = "email"
# smtp_host = "smtp.publisher.example"
# smtp_port = 587
# username = "alerts"
# password = {{ env = "SMTP_PASSWORD" }}
# sender = "sftp@publisher.example"
# recipients = ["production@publisher.example"]
#
# [[notifications]]
# type = "webhook"
# url = "https://chat.publisher.example/hooks/sftp"
# header_value = {{ env = "CHAT_WEBHOOK_TOKEN" }}

# --- sandbox ---------------------------------------------------------------------------------
# The local servers started by `consonance-sftp sandbox` (and by `make demo`).

[sandbox]
graphql_host = "127.0.0.1"
graphql_port = {api_port}
sftp_host = "{sftp_host}"
sftp_port = {sftp_port}
data_dir = "var/sandbox"
host_key = "{host_key}"
authorized_keys = "{client_pub}"
partners = [{sandbox_partners}]
seed = 24
"""
