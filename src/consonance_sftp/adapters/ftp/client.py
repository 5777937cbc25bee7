"""One FTP/FTPS control connection (stdlib ``ftplib``), its TLS checks and its errors.

``ftplib.FTP_TLS`` does not reuse the control connection's TLS session on data connections,
and vsftpd (``require_ssl_reuse=YES``, its default) refuses those with ``522 SSL connection
failed: session reuse required`` (python/cpython#63699). ``ReusingFTPS.ntransfercmd`` wraps
every data socket with ``session=self.sock.session``, as curl, lftp and FluentFTP do.
``ImplicitFTPS`` wraps the socket before the server's greeting (``ftplib`` has no implicit
mode). The certificate is checked right after the handshake, before the user name or the
password is sent: a mismatch raises ``TlsCertificateMismatch`` and nothing else crosses.

Passive mode: ``ftplib`` ignores the IPv4 address in a PASV reply and connects to the control
connection's peer (``trust_server_pasv_ipv4_address = False``, its default since Python 3.10
and 3.9.9), which is what a server that announces a private or wrong address needs; EPSV
carries no address at all.

Every call here blocks: the adapter runs them in threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from consonance_sftp import errors
from consonance_sftp.adapters.ftp.endpoint import FtpEndpoint, FtpMode


class PlainFTP(ftplib.FTP):
    """Plain FTP (``insecure_plaintext`` partners only)."""

    # A PASV reply's address is ignored: the data connection goes to the control
    # connection's peer (stdlib default since 3.10; said here so it cannot silently change).
    trust_server_pasv_ipv4_address = False


class ReusingFTPS(ftplib.FTP_TLS):
    """``FTP_TLS`` whose data connections resume the control connection's TLS session."""

    trust_server_pasv_ipv4_address = False  # see PlainFTP

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            session = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size

    def storbinary(
        self,
        cmd: str,
        fp: Any,
        blocksize: int = 8192,
        callback: Any = None,
        rest: int | str | None = None,
    ) -> str:
        """``FTP.storbinary``, but the data connection's TLS layer is closed by sending our
        close_notify without waiting for the server's: ``SSLSocket.unwrap`` waits, and
        vsftpd answers ~40 ms later, which made every small file cost 40 ms (measured: 25.6
        ms per 50 KiB STOR with ``unwrap``). The 226 reply, then SIZE, say the file arrived.

        The socket is closed only after that reply: the server's TLS 1.3 session tickets
        sit unread in its receive buffer, and closing a socket with unread bytes sends a
        reset, which made the server lose the last bytes it had not read yet (vsftpd:
        ``426 Failure reading network stream``, every attempt of an upload under load;
        pyftpdlib: a 226 for a short file). A FIN after the close_notify ends the stream."""
        self.voidcmd("TYPE I")
        conn = self.transfercmd(cmd, rest)
        try:
            while buf := fp.read(blocksize):
                conn.sendall(buf)
                if callback:
                    callback(buf)
            if isinstance(conn, ssl.SSLSocket):
                send_close_notify(conn)
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(conn, socket.SHUT_WR)
            else:
                conn.shutdown(socket.SHUT_WR)
            conn.settimeout(self.timeout)
            return self.voidresp()
        finally:
            conn.close()


def send_close_notify(conn: ssl.SSLSocket) -> None:
    """Send the TLS close_notify on ``conn`` and return at once (non-blocking: the second
    half of ``unwrap``, reading the peer's close_notify, gives up with SSLWantReadError)."""
    conn.setblocking(False)
    with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLError, OSError):
        conn.unwrap()


class ImplicitFTPS(ReusingFTPS):
    """TLS from the first byte (``ftps-implicit``, usually port 990)."""

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        if source_address is not None:
            self.source_address = source_address
        raw = socket.create_connection(
            (self.host, self.port), self.timeout, source_address=self.source_address
        )
        try:
            self.sock = self.context.wrap_socket(raw, server_hostname=self.host)
            self.on_handshake(self.sock)
        except BaseException:
            raw.close()
            raise
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def on_handshake(self, sock: ssl.SSLSocket) -> None:
        """Checked before the server's greeting is even read (set by ``open_ftp``)."""


def certificate_fingerprint(sock: ssl.SSLSocket) -> str:
    """``SHA256:AB:CD:...`` of the certificate the server presented on ``sock``."""
    der = sock.getpeercert(binary_form=True) or b""
    digest = hashlib.sha256(der).hexdigest().upper()
    return "SHA256:" + ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def check_certificate(endpoint: FtpEndpoint, sock: ssl.SSLSocket) -> None:
    """Raise ``TlsCertificateMismatch`` unless the certificate is pinned (the system CAs were
    checked by the handshake itself when ``tls_system_ca``; with neither, ``open_ftp``
    refused before connecting)."""
    if not endpoint.tls_fingerprints:
        return
    presented = certificate_fingerprint(sock)
    if presented not in endpoint.tls_fingerprints:
        raise errors.TlsCertificateMismatch(
            f"the server at {endpoint.address} presented a TLS certificate with SHA-256 "
            f"{presented}, which is not pinned in tls_fingerprints",
            partner=endpoint.partner,
        )


def tls_context(endpoint: FtpEndpoint) -> ssl.SSLContext:
    """System CAs and host-name checking with ``tls_system_ca``; else the pin is the check."""
    if endpoint.tls_system_ca:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the certificate is pinned: check_certificate
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(slots=True)
class Features:
    """What FEAT said (upper-case command names, and their options)."""

    lines: tuple[str, ...] = ()
    names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, reply: str) -> Features:
        lines = tuple(
            line.strip()
            for line in reply.splitlines()[1:-1]
            if line.strip() and not line[:3].isdigit()
        )
        names: dict[str, str] = {}
        for line in lines:
            name, _, opts = line.partition(" ")
            names[name.upper()] = opts.strip()
        return cls(lines, names)

    def has(self, name: str) -> bool:
        return name.upper() in self.names

    @property
    def sha256_command(self) -> str | None:
        """The command that makes the server hash a file with SHA-256, if any."""
        if "SHA-256" in self.names.get("HASH", "").upper().replace("*", "").split(";"):
            return "HASH"
        if self.has("XSHA256"):
            return "XSHA256"
        return None


def refuse_unpinned(endpoint: FtpEndpoint) -> None:
    """Raise ``TlsCertificateMismatch`` for an FTPS endpoint nothing vouches for (no pinned
    certificate, no system CAs), before any connection: ``partner trust`` comes first."""
    if endpoint.mode is FtpMode.PLAIN or endpoint.tls_fingerprints or endpoint.tls_system_ca:
        return
    raise errors.TlsCertificateMismatch(
        "no TLS certificate is pinned for this partner and tls_system_ca is off; refusing "
        f"to connect until 'consonance-sftp partner trust {endpoint.partner}' pins one",
        partner=endpoint.partner,
        hint=f"Run 'consonance-sftp partner trust {endpoint.partner}' to see the server's "
        "certificate, confirm its fingerprint with the partner, then pin it with "
        "--fingerprint (or set tls_system_ca = true).",
    )


def open_ftp(endpoint: FtpEndpoint) -> tuple[ftplib.FTP, Features]:
    """Connect, check the certificate, log in, protect the data channel, binary mode; FEAT."""
    refuse_unpinned(endpoint)
    timeout = endpoint.transfer.connect_timeout
    ftp: ftplib.FTP
    try:
        if endpoint.mode is FtpMode.PLAIN:
            ftp = PlainFTP(timeout=timeout, encoding="utf-8")
            ftp.connect(endpoint.host, endpoint.port)
        elif endpoint.mode is FtpMode.IMPLICIT:
            implicit = ImplicitFTPS(context=tls_context(endpoint), timeout=timeout)
            implicit.encoding = "utf-8"
            implicit.on_handshake = lambda sock: check_certificate(endpoint, sock)  # type: ignore[method-assign]
            implicit.connect(endpoint.host, endpoint.port)
            ftp = implicit
        else:
            explicit = ReusingFTPS(context=tls_context(endpoint), timeout=timeout)
            explicit.encoding = "utf-8"
            explicit.connect(endpoint.host, endpoint.port)
            ftp = explicit
            try:
                explicit.auth()
            except ftplib.Error as exc:
                explicit.close()
                raise errors.UnsupportedOperation(
                    f"the server at {endpoint.address} refused AUTH TLS ({exc}): it may "
                    "not offer FTPS",
                    partner=endpoint.partner,
                    hint="Ask the partner for FTPS; 'ftps-implicit' if it listens with TLS "
                    "from the first byte (port 990).",
                ) from exc
            assert isinstance(explicit.sock, ssl.SSLSocket)
            check_certificate(endpoint, explicit.sock)
    except errors.TransportError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise errors.TlsCertificateMismatch(
            f"the TLS certificate of {endpoint.address} is not trusted: {exc.verify_message}",
            partner=endpoint.partner,
        ) from exc
    except (OSError, EOFError, ftplib.Error) as exc:
        raise translate(exc, endpoint.partner, None, connecting=endpoint.address) from exc
    try:
        try:
            ftp.login(endpoint.user, endpoint.password)
        except ftplib.error_perm as exc:
            raise errors.AuthenticationFailed(
                f"login as {endpoint.user!r} refused: {_reply(exc)}", partner=endpoint.partner
            ) from exc
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
        ftp.voidcmd("TYPE I")
        try:
            features = Features.parse(ftp.sendcmd("FEAT"))
        except ftplib.error_perm:
            features = Features()
        if features.has("UTF8"):
            with contextlib.suppress(ftplib.Error):
                ftp.sendcmd("OPTS UTF8 ON")
        if features.sha256_command == "HASH":
            try:
                ftp.sendcmd("OPTS HASH SHA-256")
            except ftplib.Error:
                features.names.pop("HASH", None)
        if ftp.sock is not None:
            ftp.sock.settimeout(endpoint.transfer.operation_timeout)
        ftp.timeout = endpoint.transfer.operation_timeout
    except BaseException as exc:
        close_quietly(ftp)
        if isinstance(exc, OSError | EOFError | ftplib.Error):
            raise translate(exc, endpoint.partner, None) from exc
        raise
    return ftp, features


def close_quietly(ftp: ftplib.FTP) -> None:
    with contextlib.suppress(OSError, EOFError, ftplib.Error, AttributeError):
        ftp.quit()
    with contextlib.suppress(OSError):
        ftp.close()


def _reply(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def reply_code(exc: BaseException) -> int:
    text = str(exc).strip()
    return int(text[:3]) if text[:3].isdigit() else 0


_NOT_FOUND_WORDS = ("no such", "not found", "does not exist", "doesn't exist", "not exist")


def translate(
    exc: BaseException, partner: str, path: str | None, *, connecting: str | None = None
) -> errors.TransportError:
    """The ``TransportError`` for an ``ftplib`` or socket error (retryable where a new try
    on a new connection can succeed)."""
    if isinstance(exc, errors.TransportError):
        return exc
    reason = _reply(exc)
    where = f"cannot connect to {connecting}: " if connecting else ""
    kwargs: dict[str, Any] = {"partner": partner, "path": path}
    if isinstance(exc, TimeoutError | socket.timeout):
        return errors.TransferTimeout(f"{where}no answer from the server", **kwargs)
    if isinstance(exc, ssl.SSLError):
        return errors.ConnectionLost(f"{where}TLS failed: {reason}", **kwargs)
    if isinstance(exc, OSError | EOFError | ftplib.error_reply | ftplib.error_proto):
        return errors.ConnectionLost(f"{where}the connection was lost ({reason})", **kwargs)
    code = reply_code(exc)
    if isinstance(exc, ftplib.error_temp):
        if code in (452,):
            return errors.RemoteDiskFull(f"the server is out of space: {reason}", **kwargs)
        # 421 closing, 425 no data connection, 426 transfer aborted, 450 busy
        return errors.ConnectionLost(f"the server answered {reason}", **kwargs)
    if code == 530:
        return errors.AuthenticationFailed(f"not logged in: {reason}", **kwargs)
    if code == 552:
        return errors.RemoteDiskFull(f"the server is out of space: {reason}", **kwargs)
    if code in (500, 501, 502, 504):
        return errors.UnsupportedOperation(f"the server does not support it: {reason}", **kwargs)
    lowered = reason.lower()
    if code == 550 and any(word in lowered for word in _NOT_FOUND_WORDS):
        return errors.RemotePathNotFound(f"not found: {reason}", **kwargs)
    if code in (550, 553, 532):
        return errors.RemotePermissionDenied(f"the server refused: {reason}", **kwargs)
    return errors.TransportError(f"the server answered {reason}", **kwargs)
