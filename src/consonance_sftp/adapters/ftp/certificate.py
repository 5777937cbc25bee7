"""``partner trust`` on an FTPS partner: the certificate the server presents, for a human to
compare with what the partner confirmed by another channel.

Connects, completes the TLS handshake (``AUTH TLS`` for explicit FTPS, from the first byte for
implicit) without checking the certificate, reads it and hangs up: no user name, no password,
no file crosses. Nothing is trusted on first use: the caller pins the fingerprint only when it
equals the one the operator typed.
"""

from __future__ import annotations

import contextlib
import ftplib
import ssl
from dataclasses import dataclass

from cryptography import x509

from consonance_sftp import errors
from consonance_sftp.adapters.ftp.client import (
    ImplicitFTPS,
    ReusingFTPS,
    certificate_fingerprint,
    translate,
)
from consonance_sftp.adapters.ftp.endpoint import FtpEndpoint, FtpMode


@dataclass(frozen=True, slots=True)
class PresentedCertificate:
    """The server certificate as ``partner trust`` shows it."""

    fingerprint: str  # SHA256:AB:CD:... of the DER certificate (what tls_fingerprints pins)
    subject: str
    issuer: str
    not_before: str  # ISO 8601, UTC
    not_after: str
    self_signed: bool
    system_ca_trusted: bool  # the chain and the host name check out against the system CAs
    system_ca_error: str = ""
    # The names it is issued for (subjectAltName): "DNS:ftp.example", "IP:192.0.2.7"...
    names: tuple[str, ...] = ()


def _alt_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The subjectAltName entries as ``DNS:...``, ``IP:...``, ``email:...``, ``URI:...``."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    out: list[str] = []
    for general in san:
        if isinstance(general, x509.DNSName):
            out.append(f"DNS:{general.value}")
        elif isinstance(general, x509.IPAddress):
            out.append(f"IP:{general.value}")
        elif isinstance(general, x509.RFC822Name):
            out.append(f"email:{general.value}")
        elif isinstance(general, x509.UniformResourceIdentifier):
            out.append(f"URI:{general.value}")
        else:
            out.append(f"{type(general).__name__}:{general.value}")
    return tuple(out)


def _describe(der: bytes) -> tuple[str, str, str, str, bool, tuple[str, ...]]:
    cert = x509.load_der_x509_certificate(der)
    subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    return (
        subject,
        issuer,
        cert.not_valid_before_utc.isoformat(),
        cert.not_valid_after_utc.isoformat(),
        cert.subject == cert.issuer,
        _alt_names(cert),
    )


def _handshake(endpoint: FtpEndpoint, context: ssl.SSLContext) -> ssl.SSLSocket:
    """A control connection up to the end of the TLS handshake (the caller closes it)."""
    timeout = endpoint.transfer.connect_timeout
    if endpoint.mode is FtpMode.IMPLICIT:
        implicit = ImplicitFTPS(context=context, timeout=timeout)
        implicit.connect(endpoint.host, endpoint.port)
        assert isinstance(implicit.sock, ssl.SSLSocket)
        return implicit.sock
    explicit = ReusingFTPS(context=context, timeout=timeout)
    explicit.connect(endpoint.host, endpoint.port)
    try:
        explicit.auth()
    except BaseException:
        explicit.close()
        raise
    assert isinstance(explicit.sock, ssl.SSLSocket)
    return explicit.sock


def fetch_certificate(endpoint: FtpEndpoint) -> PresentedCertificate:
    """The certificate the server presents (blocking: run it in a thread)."""
    if endpoint.mode is FtpMode.PLAIN:
        raise errors.UnsupportedOperation(
            "a plain FTP server has no certificate to pin",
            partner=endpoint.partner,
            hint="Ask the partner for FTPS (protocol = 'ftps').",
        )
    unchecked = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unchecked.check_hostname = False
    unchecked.verify_mode = ssl.CERT_NONE  # shown to a human, pinned only once confirmed
    try:
        sock = _handshake(endpoint, unchecked)
        try:
            der = sock.getpeercert(binary_form=True) or b""
            fingerprint = certificate_fingerprint(sock)
        finally:
            with contextlib.suppress(OSError):
                sock.close()
    except (OSError, EOFError, ftplib.Error) as exc:
        raise translate(exc, endpoint.partner, None, connecting=endpoint.address) from exc
    trusted, why = True, ""
    try:
        sock = _handshake(endpoint, ssl.create_default_context())
        with contextlib.suppress(OSError):
            sock.close()
    except ssl.SSLCertVerificationError as exc:
        trusted, why = False, str(exc.verify_message)
    except (OSError, EOFError, ftplib.Error) as exc:
        trusted, why = False, str(exc).strip() or type(exc).__name__
    subject, issuer, not_before, not_after, self_signed, names = _describe(der)
    return PresentedCertificate(
        fingerprint=fingerprint,
        subject=subject,
        issuer=issuer,
        not_before=not_before,
        not_after=not_after,
        self_signed=self_signed,
        system_ca_trusted=trusted,
        system_ca_error=why,
        names=names,
    )
