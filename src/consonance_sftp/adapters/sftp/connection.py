"""Opening SSH connections to a partner: pinned host keys, explicit auth, ciphers, pooling.

Nothing here reads ``~/.ssh``, the SSH agent or ``ssh_config``: every asyncssh option that would
fall back to them is passed explicitly (``known_hosts`` as key lists, ``agent_path=None``,
``config=[]``, ``client_keys`` as the one configured key or ``None``). A host key that is not
pinned fails the key exchange, before authentication, so no byte of a file is ever sent.

``ConnectionPool`` keeps a partner's connections for reuse; each open connection holds one
slot of the partner's ``ConnectionBudget``, so the cap counts idle pooled connections too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.endpoint import AuthMethod, SftpEndpoint
from consonance_sftp.adapters.sftp.packets import (
    MAX_RECEIVE_PACKET,
    coalesce_writes,
    drop_ignore_packets,
    frame_received_packets,
    lean_channel_data,
)
from consonance_sftp.adapters.sftp.sftp_frames import lean_sftp_receive
from consonance_sftp.adapters.sftp.translate import translate, translate_connect
from consonance_sftp.config.hostkeys import (
    KEY_TYPES,
    HostKeyFormatError,
    fingerprint_of,
    is_fingerprint,
    parse_public_key,
    pin_key_type,
)
from consonance_sftp.ports.remote_fs import ConnectionBudget

log = logging.getLogger(__name__)

_GCM_FIRST = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
_CHACHA_FIRST = (
    "chacha20-poly1305@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)


@functools.cache
def cpu_has_aes_ni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU advertises AES instructions (the ``aes`` flag)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith(("flags", "Features")) and "aes" in line.split(":", 1)[-1].split():
            return True
    return False


def preferred_ciphers(configured: list[str] | None = None) -> list[str]:
    """The cipher order to offer: the partner's own list, else the fastest for this CPU."""
    if configured:
        return list(configured)
    return list(_GCM_FIRST if cpu_has_aes_ni() else _CHACHA_FIRST)


# --- host key pinning ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pin:
    """One pinned key: its fingerprint and the key types it may be (() for any type)."""

    fingerprint: str
    key_types: tuple[str, ...]
    key: asyncssh.SSHKey | None = None  # pinned as a full known_hosts line

    def __str__(self) -> str:
        if len(self.key_types) == 1:
            return f"{self.key_types[0]} {self.fingerprint}"
        return f"{self.fingerprint} ({'/'.join(self.key_types) or 'any type'})"


@dataclass(frozen=True, slots=True)
class HostKeyPins:
    """A partner's pinned host keys: full public keys, typed and bare SHA256 fingerprints."""

    pins: tuple[Pin, ...]

    @property
    def keys(self) -> tuple[asyncssh.SSHKey, ...]:
        return tuple(p.key for p in self.pins if p.key is not None)

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(p.fingerprint for p in self.pins)

    @classmethod
    def parse(cls, pins: tuple[str, ...] | list[str], *, partner: str) -> HostKeyPins:
        parsed: list[Pin] = []
        for text in pins:
            try:
                fp = fingerprint_of(text)
                types = pin_key_type(text)
                key = None
                if not is_fingerprint(text):
                    key = parse_public_key(text)
                    types = types or (key.get_algorithm(),)
            except HostKeyFormatError as exc:
                raise errors.ConfigError(
                    f"partner {partner!r}: a pinned host key does not parse: {exc}"
                ) from exc
            parsed.append(Pin(fp, types, key))
        if not parsed:
            raise errors.HostKeyMismatch(
                "no host key is pinned for this partner; refusing to connect",
                partner=partner,
                hint="Add the server's key to host_keys (ssh-keygen -lf, or "
                "'consonance-sftp partner trust NAME').",
            )
        return cls(tuple(parsed))

    def matches(self, key: asyncssh.SSHKey) -> bool:
        found = fingerprint(key)
        kind = key.get_algorithm()
        return any(
            p.fingerprint == found and (not p.key_types or kind in p.key_types) for p in self.pins
        )

    def key_types(self, first: str | None = None) -> list[str]:
        """The key types to ask the server for, in order: ``first`` (the type that matched
        last time), the pinned types in pin order, then, when a bare fingerprint is pinned,
        every other type (OpenSSH's order: ed25519 before ECDSA before RSA)."""
        order: list[str] = []
        wanted = [t for p in self.pins for t in p.key_types]
        if any(not p.key_types for p in self.pins):
            wanted += list(KEY_TYPES)
        for kind in ([first] if first in wanted else []) + wanted:
            if kind not in order:
                order.append(kind)
        return order


def _algorithms(key_type: str) -> list[str]:
    return list(KEY_TYPES.get(key_type, (key_type,)))


def fingerprint(key: asyncssh.SSHKey) -> str:
    """``SHA256:...`` without base64 padding, as ssh-keygen prints it."""
    value: str = key.get_fingerprint("sha256")
    return value.rstrip("=")


class _PinningClient(asyncssh.SSHClient):
    """Accepts only pinned host keys; remembers what the server presented."""

    def __init__(self, pins: HostKeyPins) -> None:
        self._pins = pins
        self.presented: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.presented = key
        return self._pins.matches(key)


# The key type that matched last, per server and pins, so that a bare fingerprint costs the
# search through the server's key types once per process, not once per connection.
_learned: dict[tuple[str, int, frozenset[str]], str] = {}


# --- connecting ---------------------------------------------------------------------------


@functools.cache
def _load_key(path: Path, passphrase: str | None) -> asyncssh.SSHKey:
    return asyncssh.read_private_key(path, passphrase)


def _auth_options(ep: SftpEndpoint) -> dict[str, Any]:
    if ep.auth is AuthMethod.KEY:
        if ep.key_path is None:
            raise errors.AuthenticationFailed(
                "key authentication is configured but no key file is given", partner=ep.partner
            )
        try:
            key = _load_key(Path(ep.key_path), ep.key_passphrase)
        except (OSError, asyncssh.KeyImportError, ValueError) as exc:
            raise errors.AuthenticationFailed(
                f"cannot load the private key {ep.key_path}: {exc}",
                partner=ep.partner,
                hint="Check the key path and its passphrase in the partner's auth settings.",
            ) from exc
        return {"client_keys": [key], "password": None, "preferred_auth": ["publickey"]}
    if ep.password is None:
        raise errors.AuthenticationFailed(
            f"{ep.auth.value} authentication is configured but no password is given",
            partner=ep.partner,
        )
    methods = (
        ["keyboard-interactive"]
        if ep.auth is AuthMethod.KEYBOARD_INTERACTIVE
        else ["password", "keyboard-interactive"]
    )
    # client_keys=None (not []): an empty list would make asyncssh load ~/.ssh/id_*.
    return {"client_keys": None, "password": ep.password, "preferred_auth": methods}


async def open_connection(ep: SftpEndpoint) -> asyncssh.SSHClientConnection:
    """Connect and log in to ``ep``; raises HostKeyMismatch, AuthenticationFailed, ...

    The server shows one host key per connection, of the first key type offered that it
    holds; the pinned types are offered first. When the key it shows is not pinned and
    another pinned type remains, the client connects again without that type (each failed
    attempt ends at the key exchange: nothing is sent, no login is tried). Only when no
    offered type shows a pinned key is it a mismatch, naming every key the server showed.
    """
    pins = HostKeyPins.parse(ep.host_keys, partner=ep.partner)
    ts = ep.transfer
    options: dict[str, Any] = {
        "username": ep.user,
        "known_hosts": (list(pins.keys), [], []),
        "agent_path": None,
        "agent_forwarding": False,
        "config": [],
        "x509_trusted_certs": None,
        "x509_trusted_cert_paths": None,
        "gss_auth": False,
        "gss_kex": False,
        "host_based_auth": False,
        "connect_timeout": ts.connect_timeout,
        "login_timeout": ts.connect_timeout,
        "keepalive_interval": ts.keepalive_interval,
        "keepalive_count_max": ts.keepalive_count_max,
        "encryption_algs": preferred_ciphers(ts.ciphers),
        "window": ts.channel_window,
        "max_pktsize": MAX_RECEIVE_PACKET,  # whole read answers per packet (packets.py)
        "compression_algs": None,
        **_auth_options(ep),
    }
    learned_key = (ep.host, ep.port, pins.fingerprints)
    remaining = pins.key_types(_learned.get(learned_key))
    shown: dict[str, str] = {}  # key type -> fingerprint of a key the server showed
    while True:
        client = _PinningClient(pins)
        algs = [a for kind in remaining for a in _algorithms(kind)]
        try:
            conn = await _connect(ep, client, {**options, "server_host_key_algs": algs})
        except _NotPinned as exc:
            kind = exc.key.get_algorithm()
            shown[kind] = fingerprint(exc.key)
            remaining = [k for k in remaining if k != kind]
            if not remaining:
                raise _host_key_mismatch(ep, pins, shown) from exc.__cause__
            continue
        except (_NoKeyOfType, errors.ConnectionLost) as exc:
            # A server holding none of the offered key types ends the key exchange; OpenSSH
            # resets the connection, so its list of types is lost with it. Ask for each type
            # on its own: if none of the offered types is there, no pinned key can be.
            dropped = isinstance(exc, _NoKeyOfType) or _dropped_in_handshake(exc)
            held = await _held_keys(ep) if dropped and set(remaining) != set(KEY_TYPES) else None
            if held is None or any(k.key_type in remaining for k in held):
                if isinstance(exc, _NoKeyOfType):
                    raise translate(exc.reason, partner=ep.partner) from exc.reason
                raise  # a connection that was lost for another reason: retried later
            for found in held:
                shown.setdefault(found.key_type, found.fingerprint)
            raise _host_key_mismatch(ep, pins, shown, held=held) from exc
        key = conn.get_server_host_key()
        if key is not None:
            _learned[learned_key] = key.get_algorithm()
        return conn


class _NotPinned(Exception):
    """One key exchange showed a key that is not pinned."""

    def __init__(self, key: asyncssh.SSHKey) -> None:
        super().__init__("host key not pinned")
        self.key = key


class _NoKeyOfType(Exception):
    """The key exchange failed over the host key type: none offered is held."""

    def __init__(self, reason: asyncssh.KeyExchangeFailed) -> None:
        super().__init__(str(reason))
        self.reason = reason


def _dropped_in_handshake(exc: BaseException) -> bool:
    """Was the connection reset or closed by the server once open (not refused, not
    unresolved), as OpenSSH does when it holds none of the offered host key types?"""
    cause = exc.__cause__
    return isinstance(cause, ConnectionResetError | BrokenPipeError | asyncssh.ConnectionLost)


async def _held_keys(ep: SftpEndpoint) -> list[PresentedKey] | None:
    """Every host key the server holds, or None when that cannot be told either."""
    try:
        return await fetch_host_keys(ep)
    except errors.TransportError:
        return None


async def _connect(
    ep: SftpEndpoint, client: _PinningClient, options: dict[str, Any]
) -> asyncssh.SSHClientConnection:
    ts = ep.transfer
    try:
        async with asyncio.timeout(ts.connect_timeout * 2):
            conn, _ = await asyncssh.create_connection(lambda: client, ep.host, ep.port, **options)
    except asyncssh.HostKeyNotVerifiable as exc:
        if client.presented is None:
            raise translate(exc, partner=ep.partner) from exc
        raise _NotPinned(client.presented) from exc
    except asyncssh.KeyExchangeFailed as exc:
        if client.presented is not None:
            raise _NotPinned(client.presented) from exc
        if "host key" in str(exc.reason).lower():
            raise _NoKeyOfType(exc) from exc
        raise translate(exc, partner=ep.partner) from exc
    except asyncssh.PermissionDenied as exc:
        raise errors.AuthenticationFailed(
            f"login as {ep.user!r} refused ({ep.auth.value})", partner=ep.partner
        ) from exc
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise translate_connect(
            exc, partner=ep.partner, address=f"{ep.host}:{ep.port}", timeout=ts.connect_timeout
        ) from exc
    return conn


def _host_key_mismatch(
    ep: SftpEndpoint,
    pins: HostKeyPins,
    shown: dict[str, str],
    *,
    held: list[PresentedKey] | None = None,
) -> errors.HostKeyMismatch:
    pinned = ", ".join(str(p) for p in pins.pins)
    presented = ", ".join(f"{kind} {fp}" for kind, fp in shown.items())
    text = f"{ep.host}:{ep.port} presented host key{'s' if len(shown) > 1 else ''} {presented}"
    if held is not None:
        # Say which pinned type the server lacks, and the types it holds.
        named = {k for p in pins.pins for k in p.key_types}
        lacking = [k for k in pins.key_types() if k not in shown and k in named]
        if lacking:
            types = ", ".join(k.key_type for k in held)
            text += f"; it holds no {' or '.join(lacking)} host key (only {types})"
    log.error(
        "host key mismatch: connection refused before login",
        extra={
            "event": "host_key_mismatch",
            "partner": ep.partner,
            "host": f"{ep.host}:{ep.port}",
            "presented_fingerprint": presented,
            "pinned_fingerprints": pinned,
        },
    )
    return errors.HostKeyMismatch(f"{text}; pinned: {pinned}", partner=ep.partner)


@dataclass(frozen=True, slots=True)
class PresentedKey:
    """One host key a server holds, as ``partner trust`` shows it."""

    key_type: str
    fingerprint: str
    known_hosts_line: str


async def fetch_host_keys(ep: SftpEndpoint) -> list[PresentedKey]:
    """Every host key the server holds, one key exchange per key type (no login, nothing
    sent), in OpenSSH's order of preference. For ``partner trust``, where a human compares a
    fingerprint with the one the partner gives them."""
    timeout = ep.transfer.connect_timeout
    host = ep.host if ep.port == 22 else f"[{ep.host}]:{ep.port}"

    async def one(kind: str) -> asyncssh.SSHKey | None:
        try:
            async with asyncio.timeout(timeout):
                return await asyncssh.get_server_host_key(
                    ep.host, ep.port, server_host_key_algs=_algorithms(kind), config=[]
                )
        except asyncssh.KeyExchangeFailed:
            return None  # the server holds no key of this type
        except ValueError:
            return None  # an algorithm this build of asyncssh lacks (ed448)

    found = await asyncio.gather(*(one(kind) for kind in KEY_TYPES), return_exceptions=True)
    keys: list[PresentedKey] = []
    failures: list[BaseException] = []
    for result in found:
        if isinstance(result, BaseException):
            failures.append(result)
        elif result is not None and all(k.fingerprint != fingerprint(result) for k in keys):
            kind, blob = result.export_public_key("openssh").decode().split()[:2]
            keys.append(PresentedKey(kind, fingerprint(result), f"{host} {kind} {blob}"))
    if not keys:
        exc = failures[0] if failures else None
        if isinstance(exc, OSError | asyncssh.Error | TimeoutError):
            raise translate_connect(
                exc, partner=ep.partner, address=f"{ep.host}:{ep.port}", timeout=timeout
            ) from exc
        if exc is not None:
            raise exc
        raise errors.ConnectionLost("the server presented no host key", partner=ep.partner)
    return keys


# --- budget and pool ----------------------------------------------------------------------


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class InProcessConnectionBudget:
    """The per-partner connection cap within one process, whatever event loop each caller runs
    on.

    Two loops use one partner's connections in the service: DBOS runs deliveries and intakes on
    its own loop (in a thread of its own) while polls, flow ticks and commands run on the
    service's. An asyncio primitive shared between them is woken from the wrong thread when a
    slot is released on the other loop, and the waiter is never told (a poll waiting for a slot
    held by a download hung for good). So the count sits behind a ``threading.Lock`` and each
    waiter is woken on its own loop (``call_soon_threadsafe``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    async def acquire(self, partner: str, limit: int, *, wait: bool = True) -> bool:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._used.get(partner, 0) < limit:
                    self._used[partner] = self._used.get(partner, 0) + 1
                    return True
                if not wait:
                    return False
                future: asyncio.Future[None] = loop.create_future()
                entry = (loop, future)
                self._waiters.setdefault(partner, []).append(entry)
            try:
                await future
            finally:
                with self._lock:
                    waiting = self._waiters.get(partner, [])
                    if entry in waiting:
                        waiting.remove(entry)

    async def release(self, partner: str) -> None:
        with self._lock:
            self._used[partner] = max(0, self._used.get(partner, 0) - 1)
            waiters = self._waiters.pop(partner, [])
        # Every waiter looks again (on its own loop); those that find no room wait again.
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                loop.call_soon_threadsafe(_wake, future)

    def in_use(self, partner: str) -> int:
        with self._lock:
            return self._used.get(partner, 0)

    @contextlib.asynccontextmanager
    async def slot(self, partner: str, limit: int) -> AsyncIterator[None]:
        await self.acquire(partner, limit)
        try:
            yield
        finally:
            await self.release(partner)


@dataclass(eq=False)
class PooledConnection:
    """One SSH connection with its SFTP session, shared by concurrent users."""

    conn: asyncssh.SSHClientConnection
    sftp: asyncssh.SFTPClient
    users: int = 0
    broken: bool = False
    idle_timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return not self.broken and not self.conn.is_closed()


Connector = Callable[[SftpEndpoint], Any]


class ConnectionPool:
    """A partner's open connections: reused while alive, closed after ``idle_timeout``."""

    def __init__(
        self,
        endpoint: SftpEndpoint,
        budget: ConnectionBudget,
        *,
        connector: Connector = open_connection,
    ) -> None:
        self.endpoint = endpoint
        self.budget = budget
        self._connector = connector
        self._conns: list[PooledConnection] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self.opened = 0  # connections opened over the pool's life (tests and stats)

    @property
    def _limit(self) -> int:
        return max(1, self.endpoint.max_connections)

    async def _open(self) -> PooledConnection:
        """Open a connection for a budget slot already taken (given back on failure)."""
        try:
            conn = await self._connector(self.endpoint)
            try:
                # One send() per event-loop turn instead of one per SSH packet (see segmented).
                coalesce_writes(conn)
                drop_ignore_packets(conn)
                frame_received_packets(conn)
                lean_channel_data(conn)
                # A partner's file name that is not UTF-8 decodes with surrogates (and encodes
                # back to the same bytes) instead of failing the whole listing.
                sftp = await conn.start_sftp_client(path_errors="surrogateescape")
                # Answers go to their requests as the channel delivers them (sftp_frames).
                lean_sftp_receive(sftp)
            except BaseException:
                conn.close()
                raise
        except BaseException as exc:
            await self.budget.release(self.endpoint.partner)
            if isinstance(exc, asyncssh.Error | OSError):
                raise translate(exc, partner=self.endpoint.partner) from exc
            raise
        self.opened += 1
        pooled = PooledConnection(conn, sftp)
        self._conns.append(pooled)
        return pooled

    async def _take(self, *, exclusive: bool, wait: bool) -> PooledConnection | None:
        partner = self.endpoint.partner
        async with self._lock:
            for pooled in list(self._conns):
                if not pooled.alive:
                    self._discard(pooled)
            idle = [c for c in self._conns if c.users == 0]
            if idle:
                return self._use(idle[0])
            if await self.budget.acquire(partner, self._limit, wait=False):
                return self._use(await self._open())
            if not exclusive and self._conns:
                return self._use(min(self._conns, key=lambda c: c.users))
        if not wait:
            return None
        await self.budget.acquire(partner, self._limit, wait=True)
        async with self._lock:
            return self._use(await self._open())

    def _use(self, pooled: PooledConnection) -> PooledConnection:
        pooled.users += 1
        if pooled.idle_timer is not None:
            pooled.idle_timer.cancel()
            pooled.idle_timer = None
        return pooled

    def _give_back(self, pooled: PooledConnection) -> None:
        pooled.users -= 1
        if pooled.users > 0:
            return
        idle_timeout = self.endpoint.transfer.idle_timeout
        if not pooled.alive or idle_timeout <= 0:
            self._discard(pooled)
        else:
            loop = asyncio.get_running_loop()
            pooled.idle_timer = loop.call_later(idle_timeout, self._discard, pooled)

    def _discard(self, pooled: PooledConnection) -> None:
        if pooled not in self._conns:
            return
        self._conns.remove(pooled)
        if pooled.idle_timer is not None:
            pooled.idle_timer.cancel()
        task = asyncio.get_running_loop().create_task(self._close_one(pooled))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_one(self, pooled: PooledConnection) -> None:
        try:
            pooled.sftp.exit()
            pooled.conn.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await pooled.conn.wait_closed()
        finally:
            await self.budget.release(self.endpoint.partner)

    @contextlib.asynccontextmanager
    async def lease(self, *, exclusive: bool = False) -> AsyncIterator[PooledConnection]:
        """A connection for the block; a connection that failed mid-block is not reused."""
        pooled = await self._take(exclusive=exclusive, wait=True)
        assert pooled is not None
        try:
            yield pooled
        except (errors.ConnectionLost, errors.TransferTimeout, asyncssh.Error, OSError):
            pooled.broken = True
            raise
        finally:
            self._give_back(pooled)

    @contextlib.asynccontextmanager
    async def lease_many(self, n: int) -> AsyncIterator[list[PooledConnection]]:
        """One connection (waiting for it, shared if need be), plus up to ``n - 1`` more of
        its own if the budget has room right now. New ones are opened all at once: each costs
        about five round trips, which add up on a long link when opened one after another."""
        first = await self._take(exclusive=False, wait=True)
        assert first is not None
        got = [first]
        partner = self.endpoint.partner
        try:
            async with self._lock:
                for pooled in self._conns:
                    if len(got) < n and pooled.users == 0 and pooled.alive:
                        got.append(self._use(pooled))
                slots = 0
                while len(got) + slots < n and await self.budget.acquire(
                    partner, self._limit, wait=False
                ):
                    slots += 1
                opened = await asyncio.gather(
                    *(self._open() for _ in range(slots)), return_exceptions=True
                )
            # A connection that failed to open gave its slot back; go on with the others.
            got += [self._use(o) for o in opened if isinstance(o, PooledConnection)]
            yield got
        except (errors.ConnectionLost, errors.TransferTimeout, asyncssh.Error, OSError):
            for pooled in got:
                pooled.broken = True
            raise
        finally:
            for pooled in got:
                self._give_back(pooled)

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    async def close(self) -> None:
        for pooled in list(self._conns):
            self._discard(pooled)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
