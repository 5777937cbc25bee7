"""One exception tree for the whole service.

Every error raised past an adapter boundary is a ``ConsonanceSftpError``. Each carries a
``retryable`` flag (the engine retries those with backoff and fails the rest at once), an
optional ``hint`` (what the user can do about it; the CLI prints it under the message), and the
original exception as ``__cause__`` (adapters raise ``... from exc``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class ConsonanceSftpError(Exception):
    """Root of every error this service raises on purpose."""

    retryable: bool = False
    default_hint: str | None = None

    def __init__(
        self, message: str, *, hint: str | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a config file, located by its TOML path (``partners.printer.host``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ConsonanceSftpError):
    """The config file is missing, unreadable or invalid. Lists every problem at once."""

    default_hint = "Fix the listed fields, then run 'consonance-sftp config check' again."

    def __init__(
        self,
        message: str,
        problems: Sequence[ConfigProblem] = (),
        *,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems)

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        lines = [self.message, *(f"  {p}" for p in self.problems)]
        return "\n".join(lines)


class SecretError(ConfigError):
    """A secret reference (``{env = ...}`` / ``{file = ...}``) could not be resolved."""


# --- our own records -----------------------------------------------------------------------


class StoreError(ConsonanceSftpError):
    """The database behind the ledger and audit trail failed."""


class RecordNotFound(StoreError):
    """A record asked for by its id is not in the store."""


class AuditTamperError(StoreError):
    """The audit trail's hash chain does not verify: a row was edited, removed or inserted."""


# --- SFTP transport ------------------------------------------------------------------------


class TransportError(ConsonanceSftpError):
    """An SFTP operation with a partner failed. Messages name the partner and the path."""

    def __init__(
        self,
        message: str,
        *,
        partner: str | None = None,
        path: str | None = None,
        hint: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        where = ", ".join(x for x in (f"partner {partner!r}" if partner else "", path or "") if x)
        super().__init__(
            f"{message} ({where})" if where else message, hint=hint, retryable=retryable
        )
        self.partner = partner
        self.path = path
        self.detail = message  # without the partner and path, for a line that names them

    def without_partner(self, partner: str) -> str:
        """The message for a line that already names ``partner``: the path, not the partner."""
        if self.partner != partner:
            return self.message
        detail = getattr(self, "detail", None) or self.message
        return f"{detail} ({self.path})" if self.path else detail


class ConnectionLost(TransportError):
    retryable = True


class TransferTimeout(TransportError):
    retryable = True


class AuthenticationFailed(TransportError):
    default_hint = "Check the partner's user name, key or password in the config."


class HostKeyMismatch(TransportError):
    """The server presented a host key that is not pinned: a security event."""

    default_hint = (
        "Nothing was sent. If the partner really rotated its key, confirm the new fingerprint "
        "with them and run 'consonance-sftp partner trust NAME --fingerprint SHA256:...'."
    )


class TlsCertificateMismatch(HostKeyMismatch):
    """An FTPS server presented a TLS certificate that is not pinned (or that the system's
    certificate authorities do not vouch for): the same security event as a changed host key."""

    default_hint = (
        "Nothing was sent and no password either. If the partner really renewed its "
        "certificate, confirm the new SHA-256 fingerprint with them and add it to the "
        "partner's tls_fingerprints."
    )


class RemotePermissionDenied(TransportError):
    default_hint = (
        "Ask the partner to grant write access there, or change the flow's folder or "
        "the partner's folders in the config."
    )


class RemotePathNotFound(TransportError):
    pass


class RemoteDiskFull(TransportError):
    pass


# OS errors only a local write raises: a full disk or quota, never a network fault.
LOCAL_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class LocalDiskFull(TransportError):
    """Our own disk (or quota) is full where a file is written locally: not a network fault,
    so it is not retried. An SFTP download keeps its partial file to resume from once space is
    freed; a Consonance download (package staging) removes its partial and starts again."""

    retryable = False
    default_hint = (
        "Free space on the local disk (or move the state folder), then run the flow again or "
        "'consonance-sftp retry WORKFLOW_ID'."
    )

    @classmethod
    def writing(cls, exc: OSError, local_path: Path | str | None, *, kept: bool) -> LocalDiskFull:
        """The error for ``exc`` while writing ``local_path``, with the free space left."""
        where = local_path if local_path is not None else exc.filename
        free = ""
        if where is not None:
            folder = Path(where).parent
            with contextlib.suppress(OSError):
                free = f", {shutil.disk_usage(folder).free:,} bytes free on {folder}"
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        partial = (
            "the partial file is kept to resume from" if kept else "the partial file is removed"
        )
        return cls(
            f"the local disk is full writing {where or 'a local file'} ({reason}{free}); {partial}"
        )


class RemoteFileExists(TransportError):
    """The final name is taken and the overwrite policy says fail."""


class IntegrityError(TransportError):
    """Size or checksum of a transferred file did not match."""

    retryable = True


class UnsupportedOperation(TransportError):
    """The server does not offer an operation the partner's settings require."""

    default_hint = "Run 'consonance-sftp partner probe NAME' to see what this server supports."


# --- Consonance ----------------------------------------------------------------------------


class ConsonanceError(ConsonanceSftpError):
    """Talking to Consonance failed."""


class ConsonanceUnavailable(ConsonanceError):
    """5xx, 429, timeouts and dropped connections: try again later."""

    retryable = True


class ConsonanceAuthError(ConsonanceError):
    default_hint = "Check the Consonance API token (consonance.token in the config)."


class ConsonanceQueryError(ConsonanceError):
    """The API answered with GraphQL ``errors``, or with a body that is not what we asked for."""


# --- content -------------------------------------------------------------------------------


class ValidationFailed(ConsonanceSftpError):
    """Content (ONIX, a sales report, an asset) failed validation. Nothing was sent."""

    def __init__(self, message: str, reasons: Sequence[str] = (), *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.reasons = list(reasons)

    def __str__(self) -> str:
        return "\n".join([self.message, *(f"  {r}" for r in self.reasons)])


class UnsafeFileName(ValidationFailed):
    """A remote or local file name that could escape its folder or confuse a partner."""


# --- engine --------------------------------------------------------------------------------


class EngineError(ConsonanceSftpError):
    """The durable engine could not start, enqueue or find a workflow."""


class Fenced(EngineError):
    """This executor lost its lease (another process may be taking its work over): it must not
    write anything more."""


class DeliveryFailed(EngineError):
    """A delivery ended for good: a non-retryable error, or retries exhausted. The message is
    the reason shown by ``status`` and ``history``."""


class RetriesExhausted(EngineError):
    """A step's retryable error, not tried again because the next try would end after the
    retry schedule's total time (``engine.retry_max_total_s``). Its message is the cause's."""

    def __init__(self, message: str, *, attempts: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, retryable=False)
        self.attempts = attempts

    def __reduce__(self) -> tuple[object, ...]:
        # Crosses DBOS's system database pickled: keep the keyword-only argument.
        return (_retries_exhausted, (self.message, self.attempts, self.hint))


def _retries_exhausted(message: str, attempts: int, hint: str | None) -> RetriesExhausted:
    return RetriesExhausted(message, attempts=attempts, hint=hint)


class Paused(ConsonanceSftpError):
    """A partner or flow is paused by an operator; work waits."""

    retryable = True
