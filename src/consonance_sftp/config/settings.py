"""The config file's models: the Consonance connection, database, partners, flows, notifications.

Every model forbids unknown keys (a misspelt key is an error, not a silently ignored setting)
and every field carries a description: the reference in ``docs/reference/config.md`` is
generated from them and a test fails when one is missing.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from consonance_sftp.config.flows import NAME_PATTERN, ConfigPath, FlowConfig, StrictModel
from consonance_sftp.config.hostkeys import (
    HostKeyFormatError,
    fingerprint_of,
    pattern_mismatch,
    validate_host_key,
)
from consonance_sftp.config.secrets import OptionalSecret, Secret, base_dir_of
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.errors import ConfigError

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


def _http_url(value: str) -> str:
    value = value.strip()
    if not _URL.match(value):
        # The value is not echoed: a URL may carry credentials.
        raise ValueError("expected an http:// or https:// URL such as https://host/path")
    return value.rstrip("/")


class ConsonanceSettings(StrictModel):
    """Where the Consonance GraphQL API is and how to authenticate."""

    base_url: str = Field(
        default="https://web.consonance.app",
        description="Base URL of the Consonance instance; the GraphQL endpoint is "
        "`<base_url>/graphql`. The local sandbox is `http://127.0.0.1:8765`.",
    )
    token: Secret = Field(
        description='API token, as a reference: `{env = "CONSONANCE_TOKEN"}` or '
        '`{file = "keys/consonance-token"}`.'
    )
    timeout: float = Field(
        default=30.0, gt=0, description="Seconds before one API request is abandoned and retried."
    )

    @field_validator("base_url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        return _http_url(value)


class DatabaseSettings(StrictModel):
    """Our own records (ledger, audit trail, versions) and the durable engine's database.

    Both URLs may use `{state_dir}`, which stands for the resolved `state_dir`.
    """

    url: str = Field(
        default="sqlite:///{state_dir}/consonance-sftp.db",
        description="SQLAlchemy URL of our own records: SQLite (default) or "
        "`postgresql+psycopg://user@host/db`. Relative SQLite paths are relative to the "
        "config file.",
    )
    dbos_system_url: str = Field(
        default="sqlite:///{state_dir}/dbos-system.db",
        description="URL of the durable engine's (DBOS) own system database. Must differ "
        "from `url`: the engine manages its own schema.",
    )

    @field_validator("url", "dbos_system_url")
    @classmethod
    def _known_scheme(cls, value: str, info: ValidationInfo) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+", "postgres:")):
            # Only the scheme is echoed: the rest of a URL may hold a password.
            raise ValueError(
                "expected a sqlite:/// or postgresql:// URL, got "
                + repr(value.split("://", 1)[0] + "://...")
            )
        prefix = "sqlite:///"
        rest = value[len(prefix) :]
        base = base_dir_of(info)
        if (
            value.startswith(prefix)
            and base is not None
            and rest
            and not rest.startswith(("/", "{state_dir}", ":memory:"))
        ):
            # SQLAlchemy reads sqlite:///relative.db against the cwd; we mean the config folder.
            return prefix + (base / rest).as_posix()
        return value

    @model_validator(mode="after")
    def _separate(self) -> DatabaseSettings:
        if self.url == self.dbos_system_url:
            raise ValueError("url and dbos_system_url must name different databases")
        return self


class PartnerAuth(StrictModel):
    """How we log in to a partner's server: exactly one of `key`, `password`,
    `keyboard_interactive`."""

    key: ConfigPath | None = Field(
        default=None, description="Private key file (OpenSSH format) for public-key auth."
    )
    passphrase: OptionalSecret = Field(
        default=None, description="Passphrase of an encrypted `key`, as a secret reference."
    )
    password: OptionalSecret = Field(
        default=None, description="Password for password auth, as a secret reference."
    )
    keyboard_interactive: OptionalSecret = Field(
        default=None,
        description="Response to the server's keyboard-interactive prompt, as a secret reference.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PartnerAuth:
        chosen = [
            name
            for name in ("key", "password", "keyboard_interactive")
            if getattr(self, name) is not None
        ]
        if len(chosen) != 1:
            raise ValueError(
                "set exactly one of key, password, keyboard_interactive"
                + (f" (found {', '.join(chosen)})" if chosen else "")
            )
        if self.passphrase is not None and self.key is None:
            raise ValueError("passphrase only applies to key auth")
        return self

    @property
    def method(self) -> Literal["key", "password", "keyboard_interactive"]:
        if self.key is not None:
            return "key"
        return "password" if self.password is not None else "keyboard_interactive"


class DeliveryWindow(StrictModel):
    """When a partner accepts deliveries (e.g. nights only). Outside it, deliveries wait on
    the record and go out when the window opens."""

    start: time = Field(description="Local time the window opens, `HH:MM`.")
    end: time = Field(
        description="Local time the window closes, `HH:MM`; before `start` for a window that "
        "runs past midnight (`22:00` to `06:00`)."
    )
    timezone: str = Field(default="UTC", description="IANA time zone of `start` and `end`.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> DeliveryWindow:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would never open")
        return self

    def is_open(self, at: datetime) -> bool:
        """Is ``at`` (timezone-aware) inside the window?"""
        local = at.astimezone(ZoneInfo(self.timezone)).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.timezone}"


class IntakeAck(StrictModel):
    """Acknowledgements back to the partner: after each file taken in from this partner is
    decided (stored or attached: `<name>.accepted`; quarantined: `<name>.quarantined`, with
    the reason), a small plain-text file is uploaded to its server, through the same
    temporary name and rename as every upload. Our own acknowledgements are never taken in."""

    folder: str | None = Field(
        default=None,
        description="Where acknowledgements are written: unset, next to the upload; a "
        "relative path (`ack`), that folder below the upload's folder (made when missing); an "
        "absolute path, that folder.",
    )

    @field_validator("folder")
    @classmethod
    def _valid_folder(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip() or "\x00" in value or any(p == ".." for p in value.split("/")):
            raise ValueError(f"folder may not be empty or contain '..' or NUL: {value!r}")
        return value


Protocol = Literal["sftp", "ftps", "ftps-implicit", "ftp"]
# The port a partner's server listens on when the config does not say.
DEFAULT_PORTS: dict[str, int] = {"sftp": 22, "ftps": 21, "ftps-implicit": 990, "ftp": 21}
_TLS_PREFIX = re.compile(r"^(?:sha-?256\s*fingerprint\s*=|sha-?256:)\s*", re.IGNORECASE)


def tls_fingerprint(value: str) -> str:
    """``SHA256:AB:CD:...`` (32 bytes in upper-case hex, colons) from any usual spelling: with
    or without ``SHA256:`` and colons, or as ``openssl x509 -noout -fingerprint -sha256``
    prints it (``sha256 Fingerprint=AB:CD:...``); raises ValueError otherwise."""
    digits = _TLS_PREFIX.sub("", value.strip()).replace(":", "").upper()
    if len(digits) != 64 or any(c not in "0123456789ABCDEF" for c in digits):
        raise ValueError(
            f"{value!r} is not a SHA-256 certificate fingerprint (64 hex digits, e.g. as "
            "'openssl x509 -noout -fingerprint -sha256' prints it)"
        )
    return "SHA256:" + ":".join(digits[i : i + 2] for i in range(0, 64, 2))


class PartnerConfig(StrictModel):
    """One partner's server: SFTP (the default), FTPS, or plain FTP where a partner insists."""

    protocol: Protocol = Field(
        default="sftp",
        description="`sftp` (SSH; pinned `host_keys`), `ftps` (FTP with explicit TLS: AUTH "
        "TLS on port 21), `ftps-implicit` (TLS from the first byte, port 990) or `ftp` (plain "
        "FTP: password and files in clear text, refused unless `insecure_plaintext = true`). "
        "FTP and FTPS partners log in with a password and pin `tls_fingerprints` (or trust "
        "`tls_system_ca`) instead of `host_keys`.",
    )
    host: str = Field(min_length=1, description="Host name or IP address of the server.")
    port: Port = Field(
        default=22,
        description="TCP port of the server; unset: 22 for sftp, 21 for ftps and ftp, 990 for "
        "ftps-implicit.",
    )
    user: str = Field(min_length=1, description="User name to log in as.")
    tls_system_ca: bool = Field(
        default=False,
        description="FTPS: the certificate must be signed for `host` by one of the system's "
        "certificate authorities (chain and host name checked); with `tls_fingerprints` too, "
        "it must also be pinned. An FTPS partner needs a pin or this before anything is sent.",
    )
    tls_fingerprints: list[str] = Field(
        default_factory=list,
        validate_default=True,
        description="FTPS: pinned SHA-256 fingerprints of the server's TLS certificate "
        "(`SHA256:AB:CD:...`, or as `openssl x509 -noout -fingerprint -sha256` prints it); no "
        "login and no byte sent without a match. Several entries allow a certificate renewal. "
        "With neither this nor `tls_system_ca` the partner loads, but nothing is sent to it "
        "until `partner trust NAME` pins the certificate (`config check` warns).",
    )
    insecure_plaintext: bool = Field(
        default=False,
        validate_default=True,
        description='`protocol = "ftp"` only: accept that the password and every file cross '
        "the network unencrypted (`config check` warns about it).",
    )
    host_keys: list[str] = Field(
        default_factory=list,
        validate_default=True,
        description="SFTP: pinned host keys (at least one); no connection without a match. Each "
        "is a known_hosts "
        "line (`[host]:port ssh-ed25519 AAAA...`, as `ssh-keyscan` prints), a fingerprint with "
        "its key type (`ssh-ed25519 SHA256:...`, as `partner trust` writes it) or a bare "
        "fingerprint (`SHA256:...`, as `ssh-keygen -lf` prints). The server is asked for the "
        "pinned key types first; one matching key is enough. Several entries allow a key "
        "rotation, or pin several of the server's keys.",
    )
    auth: PartnerAuth = Field(description="Login method; see `[partners.<name>.auth]`.")
    folders: dict[str, str] = Field(
        default_factory=dict,
        description='Remote folders by role, e.g. `send = "/in"` (where we put files) and '
        '`receive = "/out"` (where the partner leaves files for us). Flows name a role.',
    )
    max_connections: int = Field(
        default=2, ge=1, description="Most concurrent SFTP connections to this partner."
    )
    paused: bool = Field(
        default=False, description="A paused partner gets no transfers; work waits until resumed."
    )
    delivery_window: DeliveryWindow | None = Field(
        default=None,
        description="When this partner accepts deliveries; unset: any time. Deliveries outside "
        "it are held on the record and sent when it opens.",
    )
    transfer: TransferSettings = Field(
        default_factory=TransferSettings,
        description="Upload/download behaviour for this partner; see `[partners.<name>.transfer]`.",
    )
    intake_ack: IntakeAck | None = Field(
        default=None,
        description="Acknowledge each file taken in from this partner with a small file on "
        "its server; unset: no acknowledgements. See `[partners.<name>.intake_ack]`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: object) -> object:
        if isinstance(data, dict) and "port" not in data:
            protocol = data.get("protocol", "sftp")
            if isinstance(protocol, str) and protocol in DEFAULT_PORTS:
                return {**data, "port": DEFAULT_PORTS[protocol]}
        return data

    @field_validator("tls_system_ca")
    @classmethod
    def _tls_only_for_ftps(cls, value: bool, info: ValidationInfo) -> bool:
        protocol = info.data.get("protocol")
        if value and protocol in ("sftp", "ftp"):
            raise ValueError(f"only for protocol 'ftps' or 'ftps-implicit', not {protocol!r}")
        return value

    @field_validator("tls_fingerprints")
    @classmethod
    def _valid_fingerprints(cls, values: list[str], info: ValidationInfo) -> list[str]:
        protocol = info.data.get("protocol")
        if values and protocol in ("sftp", "ftp"):
            raise ValueError(
                f"only for protocol 'ftps' or 'ftps-implicit', not {protocol!r}"
                + (" (an SFTP server is pinned by host_keys)" if protocol == "sftp" else "")
            )
        # An FTPS partner with neither a pin nor tls_system_ca loads (config check warns):
        # nothing is sent to it until 'partner trust NAME' pins the server's certificate.
        return [tls_fingerprint(v) for v in values]

    @field_validator("insecure_plaintext")
    @classmethod
    def _plaintext_said(cls, value: bool, info: ValidationInfo) -> bool:
        protocol = info.data.get("protocol")
        if protocol == "ftp" and not value:
            raise ValueError(
                "protocol 'ftp' sends the password and every file unencrypted: use 'ftps' "
                "if the server offers TLS, or set insecure_plaintext = true to accept it for "
                "this partner"
            )
        if value and protocol not in (None, "ftp"):
            raise ValueError(f"only for protocol 'ftp', not {protocol!r}")
        return value

    @field_validator("auth")
    @classmethod
    def _ftp_logs_in_with_a_password(cls, auth: PartnerAuth, info: ValidationInfo) -> PartnerAuth:
        protocol = info.data.get("protocol")
        if protocol not in (None, "sftp") and auth.method != "password":
            raise ValueError(
                f"an FTP/FTPS partner logs in with a password (auth.password), not with "
                f"{auth.method.replace('_', '-')}"
            )
        return auth

    @property
    def is_ftp(self) -> bool:
        """Reached over FTP or FTPS (the FTP adapter), not SFTP."""
        return self.protocol != "sftp"

    @property
    def tls_unpinned(self) -> bool:
        """An FTPS partner whose server nothing vouches for yet (no pinned certificate, no
        system CAs): loaded, but refused before any connection until ``partner trust``."""
        return (
            self.protocol in ("ftps", "ftps-implicit")
            and not self.tls_fingerprints
            and not self.tls_system_ca
        )

    @field_validator("host_keys")
    @classmethod
    def _valid_keys(cls, values: list[str], info: ValidationInfo) -> list[str]:
        protocol = info.data.get("protocol")
        if protocol == "sftp" and not values:
            raise ValueError(
                "required: pin at least one host key (a known_hosts line or a SHA256:... "
                "fingerprint)"
            )
        if protocol not in (None, "sftp") and values:
            raise ValueError(
                f"SSH host keys do not apply to protocol {protocol!r}; an FTPS server is "
                "pinned by tls_fingerprints (its certificate's SHA-256)"
            )
        out: list[str] = []
        problems: list[str] = []
        # host and port are declared first, so they are validated (or failed) by now.
        host, port = info.data.get("host"), info.data.get("port")
        for index, value in enumerate(values):
            try:
                out.append(validate_host_key(value))
            except HostKeyFormatError as exc:
                problems.append(f"entry {index + 1}: {exc}")
                continue
            if isinstance(host, str) and isinstance(port, int):
                patterns = pattern_mismatch(value, host, port)
                if patterns is not None:
                    where = host if port == 22 else f"[{host}]:{port}"
                    problems.append(
                        f"entry {index + 1} is for {patterns}, not for {where}; pin this "
                        "server's own key (or drop the host part of the line)"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return out

    @field_validator("folders")
    @classmethod
    def _valid_folders(cls, values: dict[str, str]) -> dict[str, str]:
        for role, path in values.items():
            if not path.strip():
                raise ValueError(f"folder {role!r} is empty")
            if "\x00" in path or any(part == ".." for part in path.split("/")):
                raise ValueError(f"folder {role!r} may not contain '..' or NUL: {path!r}")
        return values

    @property
    def host_key_fingerprints(self) -> frozenset[str]:
        """``SHA256:...`` fingerprints of every pinned key, whichever form it was written in."""
        return frozenset(fingerprint_of(k) for k in self.host_keys)


Severity = Literal["info", "warning", "critical"]


class LogTarget(StrictModel):
    """Alerts go to the service log (always on; listing it sets the minimum severity)."""

    type: Literal["log"] = Field(description="`log`.")
    min_severity: Severity = Field(
        default="warning", description="Least severe alert sent to this target."
    )


class _SentTarget(StrictModel):
    """What every target that reaches a person has: a name, and which alerts it gets."""

    name: str | None = Field(
        default=None,
        description="Name in `alerts notify --target`, `status` and the audit trail "
        "(default: `<type>-<position>`, e.g. `email-1`).",
    )
    min_severity: Severity = Field(
        default="warning", description="Least severe alert sent to this target."
    )
    kinds: list[str] = Field(
        default_factory=list,
        description='Only alerts of these kinds, e.g. `["delivery_failed", '
        '"host_key_mismatch"]` (`alerts list` shows each alert\'s kind); empty: every kind.',
    )
    digest: Literal["off", "daily"] = Field(
        default="off",
        description="`off`: one message per alert, as soon as it is raised; `daily`: instead, "
        "one message a day at `digest_at` listing the alerts raised since the last digest "
        "(open and acknowledged, counted by severity and kind), none on a day without alerts.",
    )
    digest_at: time = Field(
        default=time(8, 0), description="Local time the daily digest goes out, `HH:MM`."
    )
    digest_timezone: str = Field(
        default="UTC", description="IANA time zone of `digest_at`, e.g. `Europe/London`."
    )

    @field_validator("digest_timezone")
    @classmethod
    def _known_digest_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value


class EmailTarget(_SentTarget):
    """Alerts by e-mail over SMTP: one message per alert (or a daily digest), sent by `serve`
    (or `alerts notify`)."""

    type: Literal["email"] = Field(description="`email`.")
    smtp_host: str = Field(min_length=1, description="SMTP server host name.")
    smtp_port: Port = Field(default=587, description="SMTP server port.")
    starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS.")
    username: str | None = Field(default=None, description="SMTP login, if the server needs one.")
    password: OptionalSecret = Field(
        default=None, description="SMTP password, as a secret reference."
    )
    sender: str = Field(min_length=3, description="From address, e.g. `sftp@publisher.example`.")
    recipients: list[str] = Field(min_length=1, description="To addresses.")


class WebhookTarget(_SentTarget):
    """Alerts as JSON POSTed to a URL (chat tools, incident systems), signed when `secret`
    is set: see docs/how-to/operate.md for checking the signature."""

    type: Literal["webhook"] = Field(description="`webhook`.")
    url: str = Field(description="URL the alert is POSTed to.")
    format: Literal["json", "slack"] = Field(
        default="json",
        description='`json`: the alert\'s fields; `slack`: `{"text": ...}`, which Slack, '
        "Mattermost and Rocket.Chat incoming webhooks take.",
    )
    secret: OptionalSecret = Field(
        default=None,
        description="Key that signs each POST (HMAC-SHA256 of `<timestamp>.<body>` in the "
        "`X-Consonance-Sftp-Signature` header), as a secret reference.",
    )
    header_name: str = Field(
        default="Authorization", description="Name of the header that carries `header_value`."
    )
    header_value: OptionalSecret = Field(
        default=None, description="Secret header value (e.g. `Bearer ...`), as a reference."
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        return _http_url(value)


class AppriseTarget(_SentTarget):
    """Alerts through Apprise (https://appriseit.com), one URL per service: Microsoft Teams
    (`workflows://`), Discord, Telegram, Pushover, ntfy, PagerDuty, Opsgenie... Apprise keeps
    up with the vendors' changes; see docs/how-to/operate.md."""

    type: Literal["apprise"] = Field(description="`apprise`.")
    urls: list[Secret] = Field(
        min_length=1,
        description="Apprise URLs (e.g. `discord://webhook_id/token`), each as a secret "
        'reference (`{env = "NAME"}` or `{file = "path"}`), since they carry tokens. Every '
        "URL gets each message; the send fails when one of them fails.",
    )


SentTarget = EmailTarget | WebhookTarget | AppriseTarget


def target_name(target: LogTarget | SentTarget, index: int) -> str:
    """A target's name: its own, or ``<type>-<position in the list, from 1>``."""
    own = getattr(target, "name", None)
    return own or f"{target.type}-{index + 1}"


NotificationTarget = Annotated[
    LogTarget | EmailTarget | WebhookTarget | AppriseTarget, Field(discriminator="type")
]


class SandboxSettings(StrictModel):
    """The local Consonance-compatible API and SFTP partner servers (`consonance-sftp sandbox`)."""

    graphql_host: str = Field(default="127.0.0.1", description="Address the sandbox API binds.")
    graphql_port: Port = Field(default=8765, description="Port of the sandbox API.")
    sftp_host: str = Field(default="127.0.0.1", description="Address the sandbox SFTP binds.")
    sftp_port: Port = Field(default=2222, description="Port of the sandbox SFTP server.")
    data_dir: ConfigPath = Field(
        default=Path("var/sandbox"),
        description="Folder holding the sandbox partners' files and the sandbox catalogue.",
    )
    host_key: ConfigPath = Field(
        default=Path("var/sandbox/ssh_host_ed25519_key"),
        description="Private host key of the sandbox SFTP server (written by `init`).",
    )
    authorized_keys: ConfigPath = Field(
        default=Path("keys/client_ed25519.pub"),
        description="Public key(s) the sandbox SFTP server accepts for every sandbox partner.",
    )
    partners: list[Name] = Field(
        default_factory=list,
        description="User names of the sandbox SFTP partners; each gets its own root folder.",
    )
    seed: int = Field(
        default=24, ge=0, description="Number of works generated in the sandbox catalogue."
    )


class EngineConfig(StrictModel):
    """The durable engine (DBOS Transact) that runs deliveries, schedules and recovery."""

    application_version: str = Field(
        default="0.2",
        min_length=1,
        description="Version of the workflow code. Work queued under one version is resumed "
        "only by processes of the same version: change it only after the queues are drained.",
    )
    executor_id: str | None = Field(
        default=None,
        description="Stable ID of this process; unset: `CONSONANCE_EXECUTOR_ID` or "
        "`<hostname>-0`. A restarted process must keep its ID to resume its own work.",
    )
    heartbeat_interval_s: float = Field(
        default=2.0, gt=0, description="Seconds between executor heartbeats."
    )
    takeover_after_s: float = Field(
        default=15.0,
        gt=0,
        description="Seconds of silence after which another process takes over an executor's "
        "work and raises an alert (PostgreSQL only; at least 3 heartbeats).",
    )
    queue_polling_interval_s: float = Field(
        default=0.05, gt=0, description="Seconds between polls of the delivery queues."
    )
    worker_concurrency: int = Field(
        default=32, ge=1, description="Deliveries one process runs at once (all partners)."
    )
    shutdown_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="On SIGTERM, seconds running transfers get before stopping at a resumable "
        "point.",
    )
    retry_max_attempts: int = Field(
        default=5, ge=1, description="Attempts of a step that fails with a retryable error."
    )
    retry_initial_interval_s: float = Field(
        default=2.0, ge=0, description="Wait before the first retry, in seconds."
    )
    retry_backoff_rate: float = Field(
        default=2.0, ge=1, description="Each retry waits this many times longer than the last."
    )
    retry_max_total_s: float = Field(
        default=60.0,
        gt=0,
        description="A failing step is not tried again when that try would end (judged by the "
        "last attempt's length) more than this many seconds after its first attempt began: an "
        "unreachable partner fails within about this long.",
    )
    history_retention_days: int = Field(
        default=30,
        ge=0,
        description="Days the engine keeps finished workflows (their steps and outputs) in its "
        "own database; 0 keeps them forever. Pending and failed work is never pruned, and the "
        "delivery ledger and audit trail are not affected.",
    )


class LoggingSettings(StrictModel):
    """Log output."""

    level: LogLevel = Field(default="INFO", description="Least severe log level written.")
    json_lines: bool | None = Field(
        default=None,
        description="JSON lines (true), readable lines (false), or unset: JSON unless on a "
        "terminal.",
    )


class AuditSettings(StrictModel):
    """The audit trail."""

    key: OptionalSecret = Field(
        default=None,
        description="Key of a keyed audit chain (HMAC-SHA256), as a secret reference kept "
        'outside the database: `{file = "audit.key"}` or `{env = "CONSONANCE_SFTP_AUDIT_KEY"}`. '
        "With it, someone who can write to the database but lacks the key cannot rewrite the "
        "trail so that it verifies. `audit verify` needs the same key.",
    )


class Settings(StrictModel):
    """The whole config file."""

    state_dir: ConfigPath = Field(
        default=Path("var"),
        description="Folder for local state: the SQLite databases, downloaded files, archives.",
    )
    consonance: ConsonanceSettings = Field(description="The Consonance API connection.")
    database: DatabaseSettings = Field(
        default_factory=DatabaseSettings, description="Where records are kept."
    )
    partners: dict[Name, PartnerConfig] = Field(
        default_factory=dict, description="Partners' SFTP servers, by name."
    )
    flows: dict[Name, FlowConfig] = Field(
        default_factory=dict, description="The exchanges to run, by name."
    )
    notifications: list[NotificationTarget] = Field(
        default_factory=list, description="Where alerts are sent, besides the alerts table."
    )
    sandbox: SandboxSettings | None = Field(
        default=None, description="Local sandbox servers; only for trying the service and tests."
    )
    logging: LoggingSettings = Field(
        default_factory=LoggingSettings, description="Log output settings."
    )
    engine: EngineConfig = Field(
        default_factory=EngineConfig, description="The durable engine's settings."
    )
    audit: AuditSettings = Field(
        default_factory=AuditSettings, description="The audit trail's settings."
    )

    # The file these settings came from (set by the loader), for messages that name it.
    _source: Path | None = PrivateAttr(default=None)

    @field_validator("notifications")
    @classmethod
    def _target_names(cls, value: list[NotificationTarget]) -> list[NotificationTarget]:
        names = [target_name(t, i) for i, t in enumerate(value) if not isinstance(t, LogTarget)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two notification targets are named {', '.join(twice)}")
        return value

    def sent_targets(self) -> list[tuple[str, SentTarget]]:
        """The notification targets that reach a person, each with its name."""
        return [
            (target_name(t, i), t)
            for i, t in enumerate(self.notifications)
            if not isinstance(t, LogTarget)
        ]

    @property
    def source(self) -> Path | None:
        """The config file these settings were loaded from, when known."""
        return self._source

    def with_source(self, path: Path) -> Settings:
        """These settings, remembering the file they came from (the loader calls it)."""
        self._source = path
        return self

    def partner(self, name: str) -> PartnerConfig:
        """The partner of this name; a typo is answered with the closest configured name."""
        found = self.partners.get(name)
        if found is None:
            raise self.unknown("partner", name, self.partners)
        return found

    def flow(self, name: str) -> FlowConfig:
        """The flow of this name; a typo is answered with the closest configured name."""
        found = self.flows.get(name)
        if found is None:
            raise self.unknown("flow", name, self.flows)
        return found

    def unknown(
        self, what: Literal["partner", "flow"], name: str, known: Iterable[str]
    ) -> ConfigError:
        """The error for a partner or flow name (a command's argument) not in the config:
        ``no partner named 'printr'; did you mean 'printer'? (partners in x.toml: ...)``."""
        names = list(known)
        where = str(self._source) if self._source is not None else "the config"
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        listed = (
            f"{what}s in {where}: {', '.join(names)}" if names else f"{where} defines no {what}s"
        )
        return ConfigError(
            f"no {what} named {name!r}{guess} ({listed})",
            # No square brackets: the CLI prints hints through Rich markup.
            hint=f"{what.capitalize()} names are the NAME of each {what}s.NAME table in "
            f"{where}; 'consonance-sftp config check' lists them.",
        )

    @model_validator(mode="after")
    def _expand_state_dir(self) -> Settings:
        # ``{state_dir}`` lets the database defaults follow a moved state_dir.
        database = self.database.model_copy(
            update={
                "url": _expand(self.database.url, self.state_dir),
                "dbos_system_url": _expand(self.database.dbos_system_url, self.state_dir),
            }
        )
        return self.model_copy(update={"database": database})


def _expand(url: str, state_dir: Path) -> str:
    return url.replace("{state_dir}", state_dir.as_posix())
