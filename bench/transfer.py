"""Transfer benchmark: our SFTP transport against OpenSSH ``sftp -b``, same files, same run.

Starts a server on 127.0.0.1 (``--server``: a private OpenSSH ``sshd`` by default, or ProFTPD
mod_sftp, rclone serve sftp or paramiko's server as the interop tier starts them, see
``bench/servers.py``) and measures, for each scenario, OpenSSH's ``sftp`` client and our
transport against that same server in alternating order, several repetitions, every copy
checked by SHA-256 (uploads on the server's own disk, downloads on ours):

* loopback: a large file (1 GiB) up and down, and 2,000 files of 50 KiB up;
* wan: the same large file up and down through ``bench/latency_relay.py``, a userspace relay
  that holds every chunk 50 ms each way (100 ms round trip: it emulates latency, not loss).
  OpenSSH runs there with its best flags for such a link (``-R 256 -B 261120``);
* small_files_wan_up: the 2,000 small files up through the same relay (round trips decide:
  OpenSSH's ``sftp`` sends one file at a time, about 10 minutes for 2,000).

Both sides prefer aes128-gcm@openssh.com (our transport's order on AES-NI CPUs; the server
picks the first it has). Against a server other than OpenSSH, our probe runs once first and
its recommended settings are what our side uses (what ``partner probe --apply`` gives a user);
they are printed. Times include connecting and logging in (OpenSSH's process start
included), because a user waits for those too. Medians and ratios (ours /
OpenSSH throughput, higher is better) are printed; the last line is one JSON object:

    {"server": "openssh", "loopback_up": r, "loopback_down": r, "small_files_up": r,
     "wan_up": r, "wan_down": r, "small_files_wan_up": r}

(only the scenarios that ran; ``server`` names the ``--server``).

Quick run:  .venv/bin/python bench/transfer.py --size 256M --reps 3 --wan-reps 1
Full run:   .venv/bin/python bench/transfer.py          (about 25 minutes on 2 cores)
Partner's:  .venv/bin/python bench/transfer.py --server proftpd --size 256M --reps 3
FTPS:       .venv/bin/python bench/transfer.py --protocol ftps [--size 1G]   (bench/ftps_bench.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from consonance_sftp.adapters.sftp.connection import (
    ConnectionPool,
    PooledConnection,
    open_connection,
)
from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.sftp.packets import coalesce_writes
from consonance_sftp.adapters.sftp.segmented import (
    MAX_OPENSSH_BLOCK,
    get_segmented,
    put_segmented,
    read_requests,
)
from consonance_sftp.config.transfer import OverwritePolicy, TransferSettings
from consonance_sftp.errors import TransportError
from consonance_sftp.ports.remote_fs import UploadItem
from latency_relay import RelayProcess, measure_relay, spawn_relay
from servers import (
    SERVERS,
    Served,
    link_into,
    parse_setting,
    probe_advice,
    remote_mkdir,
    sha256_file,
    start_served,
    wait_for_content,
)

# The order our transport offers on AES-NI machines (connection._GCM_FIRST); OpenSSH's sftp
# is given the same, so both sides end up with the same cipher on every server.
CIPHERS = (
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
    "aes128-ctr,aes256-ctr"
)
SCENARIOS = (
    "loopback_up",
    "loopback_down",
    "small_files_up",
    "wan_up",
    "wan_down",
    "small_files_wan_up",
)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def say(text: str) -> None:
    print(text, flush=True)


# --- test data -------------------------------------------------------------------------------


def make_file(path: Path, size: int) -> str:
    """Random content of ``size`` bytes (kept between runs when the size matches); its SHA-256."""
    if not (path.exists() and path.stat().st_size == size):
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            left = size
            while left:
                chunk = os.urandom(min(left, 8 << 20))
                fh.write(chunk)
                left -= len(chunk)
        os.replace(tmp, path)
    return sha256_file(path)


def make_small_files(folder: Path, count: int, size: int) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"small-{i:05d}.dat" for i in range(count)]
    existing = {p.name for p in folder.iterdir()}
    if existing != set(names) or any((folder / n).stat().st_size != size for n in names):
        shutil.rmtree(folder)
        folder.mkdir()
        for n in names:
            (folder / n).write_bytes(os.urandom(size))
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# --- the two contenders ----------------------------------------------------------------------


@dataclass
class Target:
    server: Served
    port: int  # the server itself, or the relay in front of it
    known_hosts: Path
    wan: bool


def openssh(target: Target, commands: str) -> None:
    """One ``sftp -b`` run; raises when sftp fails."""
    batch = target.known_hosts.parent / "batch.txt"
    batch.write_text(commands + "\n")
    cmd = [
        "sftp",
        "-q",
        "-F",
        "/dev/null",
        "-b",
        str(batch),
        "-i",
        str(target.server.client_key_path),
        "-P",
        str(target.port),
        "-c",
        CIPHERS,
        "-o",
        f"UserKnownHostsFile={target.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
    ]
    if target.wan:
        # OpenSSH at its best on a long fat link: deepest request queue, largest block.
        cmd += ["-R", "256", "-B", str(MAX_OPENSSH_BLOCK)]
    cmd.append(f"{target.server.user}@127.0.0.1")
    done = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode:
        raise SystemExit(f"sftp failed ({commands!r}): {done.stderr.decode(errors='replace')}")


class ParallelOpenPool(ConnectionPool):
    """Bench-only stand-in for a proposed change to ``ConnectionPool.lease_many``.

    The committed pool opens the extra connections of a segmented transfer one after another;
    each costs about 5 round trips (TCP, key exchange, auth, channel, SFTP init), so 8 of them
    take 8 s on a 100 ms link. This variant takes the budget slots first, then opens all of
    them at once.
    """

    @contextlib.asynccontextmanager
    async def lease_many(self, n: int) -> AsyncIterator[list[PooledConnection]]:
        first = await self._take(exclusive=False, wait=True)
        assert first is not None
        got = [first]
        partner = self.endpoint.partner
        slots = 0
        async with self._lock:
            for pooled in self._conns:
                if len(got) < n and pooled.users == 0 and pooled.alive:
                    got.append(self._use(pooled))
            while len(got) + slots < n and await self.budget.acquire(
                partner, self._limit, wait=False
            ):
                slots += 1
            opened = await asyncio.gather(
                *(self._open() for _ in range(slots)), return_exceptions=True
            )
        got += [self._use(o) for o in opened if isinstance(o, PooledConnection)]
        try:
            yield got
        except (TransportError, asyncssh.Error, OSError):
            for pooled in got:
                pooled.broken = True
            raise
        finally:
            for pooled in got:
                self._give_back(pooled)


@dataclass
class Ours:
    """Our side's settings for one scenario; ``engine`` picks what runs.

    ``transport``: ``SftpRemoteFS``, the service's own path (pooled pinned connections, temp
    name, size check, atomic rename, resume journal). ``raw``: the segmented engine and plain
    concurrent puts on bare asyncssh connections, to see the engine's own ceiling.
    """

    engine: str
    connections: int
    segment_size: int
    max_requests: int
    window: int
    file_concurrency: int
    state_dir: Path
    shims: frozenset[str] = frozenset()
    block_size: int = MAX_OPENSSH_BLOCK
    # The probe's recommended settings for the server (applied over the ones above)
    recommended: dict[str, object] = field(default_factory=dict)
    # --set KEY=VALUE: settings forced from the command line, over the probe's (experiments)
    overrides: dict[str, object] = field(default_factory=dict)

    def settings(self) -> TransferSettings:
        base: dict[str, object] = {
            "block_size": self.block_size,
            "max_requests": self.max_requests,
            "segment_size": self.segment_size,
            "segmented_threshold": 0,
            "segment_connections": self.connections,
            "file_concurrency": self.file_concurrency,
            "overwrite": OverwritePolicy.REPLACE,
        }
        return TransferSettings.model_validate({**base, **self.recommended, **self.overrides})

    def remote_fs(self, target: Target) -> SftpRemoteFS:
        endpoint = target.server.endpoint(
            self.settings(), port=target.port, max_connections=max(self.connections, 1)
        )
        fs = SftpRemoteFS(endpoint, state_dir=self.state_dir)
        if self.shims:
            connector = open_connection
            if "coalesce" in self.shims:

                async def coalesced(ep: SftpEndpoint) -> asyncssh.SSHClientConnection:
                    conn = await open_connection(ep)
                    coalesce_writes(conn)
                    return conn

                connector = coalesced
            pool_class = ParallelOpenPool if "parallel-open" in self.shims else ConnectionPool
            fs.pool = pool_class(endpoint, fs.pool.budget, connector=connector)
        return fs

    def upload(self, target: Target, local: Path, remote: str) -> None:
        async def run() -> None:
            if self.engine == "raw":

                async def work(sftps: list[asyncssh.SFTPClient]) -> None:
                    await put_segmented(
                        sftps,
                        local,
                        remote,
                        segment_size=self.segment_size,
                        block_size=self.settings().block_size,
                        max_requests=self.max_requests,
                    )

                await ours_session(
                    target, self.connections, self.window, work, "coalesce" in self.shims
                )
                return
            async with self.remote_fs(target) as fs:
                await fs.upload(local, remote)

        asyncio.run(run())

    def download(self, target: Target, remote: str, local: Path, size: int) -> None:
        async def run() -> None:
            if self.engine == "raw":

                async def work(sftps: list[asyncssh.SFTPClient]) -> None:
                    await get_segmented(
                        sftps,
                        remote,
                        local,
                        size=size,
                        segment_size=self.segment_size,
                        block_size=self.settings().block_size,
                        max_requests=self.max_requests,
                    )

                await ours_session(
                    target, self.connections, self.window, work, "coalesce" in self.shims
                )
                return
            async with self.remote_fs(target) as fs:
                await fs.download(remote, local)

        asyncio.run(run())

    def upload_many(self, target: Target, files: list[Path], remote_dir: str) -> None:
        async def run() -> None:
            if self.engine == "raw":

                async def work(sftps: list[asyncssh.SFTPClient]) -> None:
                    await ours_put_many(sftps, files, remote_dir, self.file_concurrency)

                await ours_session(
                    target, self.connections, self.window, work, "coalesce" in self.shims
                )
                return
            async with self.remote_fs(target) as fs:
                items = [
                    UploadItem(local_path=p, remote_path=f"{remote_dir}/{p.name}") for p in files
                ]
                results = await fs.upload_many(items)
            failed = [r for r in results if isinstance(r, TransportError)]
            if failed:
                raise SystemExit(f"{len(failed)} small uploads failed, first: {failed[0]}")

        asyncio.run(run())


async def connect(target: Target, n: int, window: int) -> list[asyncssh.SSHClientConnection]:
    host_key = target.server.host_key.convert_to_public()
    return list(
        await asyncio.gather(
            *(
                asyncssh.connect(
                    "127.0.0.1",
                    target.port,
                    username=target.server.user,
                    client_keys=[str(target.server.client_key_path)],
                    known_hosts=([host_key], [], []),
                    agent_path=None,
                    config=[],
                    encryption_algs=CIPHERS.split(","),
                    compression_algs=None,
                    window=window,
                )
                for _ in range(n)
            )
        )
    )


async def ours_session(
    target: Target,
    n: int,
    window: int,
    work: Callable[[list[asyncssh.SFTPClient]], Awaitable[None]],
    coalesce: bool,
) -> None:
    conns = await connect(target, n, window)
    if coalesce:
        for c in conns:
            coalesce_writes(c)
    try:
        # Concurrently: each start costs several round trips on a long link.
        sftps = list(await asyncio.gather(*(c.start_sftp_client() for c in conns)))
        await work(sftps)
    finally:
        for c in conns:
            c.close()
        await asyncio.gather(*(c.wait_closed() for c in conns))


async def ours_put_many(
    sftps: list[asyncssh.SFTPClient], files: list[Path], remote_dir: str, concurrency: int
) -> None:
    """Many small files in flight at once, spread over the sessions."""
    slots = asyncio.Semaphore(concurrency * len(sftps))

    async def one(i: int, path: Path) -> None:
        async with slots:
            sftp = sftps[i % len(sftps)]
            data = path.read_bytes()
            async with await sftp.open(
                f"{remote_dir}/{path.name}", "wb", encoding=None, block_size=0
            ) as fh:
                await fh.write(data, 0)

    await asyncio.gather(*(one(i, p) for i, p in enumerate(files)))


# --- runner ---------------------------------------------------------------------------------


@dataclass
class Results:
    seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    amount: dict[str, float] = field(default_factory=dict)  # MiB or files per run
    unit: dict[str, str] = field(default_factory=dict)

    def add(self, scenario: str, who: str, seconds: float) -> None:
        self.seconds.setdefault((scenario, who), []).append(seconds)

    def rate(self, scenario: str, who: str) -> float:
        return self.amount[scenario] / statistics.median(self.seconds[(scenario, who)])

    def ratio(self, scenario: str) -> float:
        return self.rate(scenario, "ours") / self.rate(scenario, "openssh")


def timed(fn: Callable[[], None]) -> float:
    os.sync()  # dirty pages of the previous run must not be flushed on this run's clock
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def client_cpu(who: str) -> float:
    """CPU seconds so far of the client ``who``: ours runs in this process (every thread),
    OpenSSH's ``sftp`` and its ``ssh`` are children reaped once each run ends."""
    ru = resource.getrusage(resource.RUSAGE_SELF if who == "ours" else resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_pair(
    results: Results,
    scenario: str,
    rep: int,
    reps: int,
    openssh_run: Callable[[str], None],
    ours_run: Callable[[str], None],
    prepare: Callable[[str], None],
    check: Callable[[str], None],
) -> None:
    """One repetition of ``scenario`` for both contenders. Each run gets a name of its own
    (``<scenario>-<rep>-<who>``) for what it writes: a name is never used twice, so no
    server's cache (rclone's listings) can mistake one run's file for another's."""
    # Alternate who goes first so slow drift of a noisy machine hits both alike.
    order = [("openssh", openssh_run), ("ours", ours_run)]
    if rep % 2:
        order.reverse()
    for who, fn in order:
        name = f"{scenario}-{rep}-{who}"
        prepare(name)
        cpu = client_cpu(who)
        seconds = timed(lambda fn=fn, name=name: fn(name))  # type: ignore[misc]
        cpu = client_cpu(who) - cpu
        check(name)
        results.add(scenario, who, seconds)
        rate = results.amount[scenario] / seconds
        amount = results.amount[scenario]
        # The client's CPU per unit of work: load moves it far less than the wall time.
        per = (
            f"{cpu * 1024 / amount:5.2f} CPU-s/GiB"
            if results.unit[scenario] == "MiB/s"
            else f"{cpu * 1000 / amount:5.2f} CPU-ms/file"
        )
        say(
            f"  {scenario:15s} rep {rep + 1}/{reps} {who:8s} {seconds:7.2f} s "
            f"{rate:8.1f} {results.unit[scenario]}  client {per}  load "
            f"{os.getloadavg()[0]:.2f}  (sha256 ok)"
        )


def bench_large(
    results: Results,
    prefix: str,
    target: Target,
    big: Path,
    digest: str,
    out: Path,
    reps: int,
    ours: Ours,
    source: str,
) -> None:
    """``source`` is the server's name for a copy of ``big`` in its folder (downloads)."""
    size = big.stat().st_size
    served = target.server
    for scenario in (f"{prefix}_up", f"{prefix}_down"):
        results.amount[scenario] = size / (1 << 20)
        results.unit[scenario] = "MiB/s"
    # Uploads land in the served folder and are checked there, on the server's own disk.

    def nothing(name: str) -> None:
        pass

    def check_up(name: str) -> None:
        landed = served.folder / f"{name}.bin"
        waited = wait_for_content(landed, size, digest)
        if waited > 0.5:
            say(f"  (the server wrote the file to its disk {waited:.1f} s after the upload)")
        remove(landed)

    def check_down(name: str) -> None:
        local = out / f"{name}.bin"
        got = sha256_file(local)
        if got != digest:
            raise SystemExit(f"SHA-256 mismatch for {local}: {got} != {digest}")
        remove(local)

    for rep in range(reps):
        run_pair(
            results,
            f"{prefix}_up",
            rep,
            reps,
            lambda name: openssh(target, f"put {big} {served.remote(name + '.bin')}"),
            lambda name: ours.upload(target, big, served.remote(name + ".bin")),
            nothing,
            check_up,
        )
        run_pair(
            results,
            f"{prefix}_down",
            rep,
            reps,
            lambda name: openssh(target, f"get {source} {out / (name + '.bin')}"),
            lambda name: ours.download(target, source, out / (name + ".bin"), size),
            nothing,
            check_down,
        )


def bench_small(
    results: Results,
    target: Target,
    folder: Path,
    digests: dict[str, str],
    reps: int,
    ours: Ours,
    scenario: str = "small_files_up",
) -> None:
    """``put dir/*`` against ``upload_many``; through the relay when ``target.wan``."""
    results.amount[scenario] = len(digests)
    results.unit[scenario] = "files/s"
    served = target.server
    files = sorted(folder.iterdir())

    def prepare(name: str) -> None:
        remote_mkdir(served, name)  # through the server: it may cache its listings

    def check(name: str) -> None:
        landed = served.folder / name
        deadline = time.monotonic() + 120  # rclone's write cache reaches the disk later
        while True:
            names = {p.name for p in landed.iterdir()}
            bad = [
                n
                for n, d in digests.items()
                if n not in names or hashlib.sha256((landed / n).read_bytes()).hexdigest() != d
            ]
            if not bad and names == set(digests):
                break
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"small files: {len(names)} arrived, {len(digests)} expected, "
                    f"{len(bad)} missing or with the wrong SHA-256 (first: {bad[:1]})"
                )
            time.sleep(0.5)
        shutil.rmtree(landed, ignore_errors=True)

    for rep in range(reps):
        run_pair(
            results,
            scenario,
            rep,
            reps,
            lambda name: openssh(target, f"put {folder}/* {served.remote(name)}/"),
            lambda name: ours.upload_many(target, files, served.remote(name)),
            prepare,
            check,
        )


def machine_note() -> str:
    load = os.getloadavg()
    cpus = os.cpu_count()
    aes = "aes" in Path("/proc/cpuinfo").read_text().split()
    return f"{cpus} CPUs, AES-NI {'yes' if aes else 'no'}, load average {load[0]:.2f} {load[1]:.2f}"


def main(argv: list[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--protocol", choices=("sftp", "ftps"), default="sftp")
    known, _rest = pre.parse_known_args(argv)
    if known.protocol == "ftps":  # our FTPS transport against curl, same vsftpd
        import ftps_bench

        return ftps_bench.main(argv)
    p = argparse.ArgumentParser(
        description="Our SFTP transport against OpenSSH sftp, loopback and a 100 ms link."
    )
    p.add_argument(
        "--protocol",
        choices=("sftp", "ftps"),
        default="sftp",
        help="ftps: our FTPS transport against curl on vsftpd (bench/ftps_bench.py, its own "
        "options: --protocol ftps --help)",
    )
    p.add_argument(
        "--server",
        choices=SERVERS,
        default="openssh",
        help="the server both clients talk to: OpenSSH's sshd (default), or one a partner runs "
        "(proftpd: AllowOverwrite off, its default; rclone: no VFS cache, its default; "
        "rclone-writes: --vfs-cache-mode writes), started as the interop tests start it",
    )
    p.add_argument(
        "--probe",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run our probe once and use its recommended settings on our side (default: on "
        "for every server but openssh, whose figures stay comparable with earlier runs)",
    )
    p.add_argument("--size", type=parse_size, default=parse_size("1G"), help="large file")
    p.add_argument("--reps", type=int, default=5, help="repetitions on loopback")
    p.add_argument("--wan-reps", type=int, default=3, help="repetitions through the relay")
    p.add_argument("--wan-size", type=parse_size, default=None, help="default: --size")
    p.add_argument("--small-count", type=int, default=2000)
    p.add_argument("--small-size", type=parse_size, default=parse_size("50K"))
    p.add_argument(
        "--wan-small-count",
        type=int,
        default=None,
        help="small files through the relay (small_files_wan_up; default: --small-count)",
    )
    p.add_argument(
        "--wan-small-reps",
        type=int,
        default=1,
        help="repetitions of small_files_wan_up (OpenSSH takes about 10 minutes for each)",
    )
    p.add_argument(
        "--wan-small-connections",
        type=int,
        default=2,
        help="connections for small files through the relay (the service's file_connections "
        "default)",
    )
    p.add_argument("--delay-ms", type=float, default=50.0, help="relay hold, each way")
    p.add_argument(
        "--only",
        default=None,
        help="comma list of scenario groups to run (loopback, small_files_up, wan, "
        "small_files_wan_up, or single scenarios; default: all on openssh, loopback and "
        "small_files_up on the other servers)",
    )
    p.add_argument("--loopback-connections", type=int, default=1)
    p.add_argument("--wan-connections", type=int, default=8)
    p.add_argument(
        "--engine",
        choices=("transport", "raw"),
        default="transport",
        help="ours = the service's SftpRemoteFS (default) or the bare segmented engine",
    )
    p.add_argument(
        "--shims",
        default="none",
        help="experimental changes applied to the transport from the bench (comma list, or "
        "'none', the default: measure the transport as shipped, which already coalesces "
        "writes and opens extra connections at once): coalesce = packets.coalesce_writes on "
        "every connection; parallel-open = open a segmented transfer's extra connections at once",
    )
    p.add_argument(
        "--small-connections",
        type=int,
        default=1,
        help="connections for small files (the transport spreads them over file_connections, "
        "within this many)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="force a transfer setting on our side, over the probe's advice (repeatable; "
        "e.g. --set block_size=32768 --set checksum=none): for experiments, printed",
    )
    p.add_argument("--file-concurrency", type=int, default=16, help="small files per conn")
    p.add_argument("--segment-size", type=parse_size, default=parse_size("64M"))
    p.add_argument("--wan-segment-size", type=parse_size, default=parse_size("16M"))
    p.add_argument("--max-requests", type=int, default=16, help="loopback, per connection")
    p.add_argument("--wan-max-requests", type=int, default=64, help="per connection")
    p.add_argument("--wan-window", type=parse_size, default=parse_size("16M"), help="raw only")
    p.add_argument("--loopback-window", type=parse_size, default=parse_size("2M"), help="raw only")
    p.add_argument(
        "--workdir", type=Path, default=Path("/var/tmp/consonance-sftp-bench"), help="data"
    )
    args = p.parse_args(argv)
    if args.only is None:
        args.only = ",".join(SCENARIOS) if args.server == "openssh" else "loopback,small_files_up"
    if args.probe is None:
        args.probe = args.server != "openssh"
    only = set(args.only.split(","))
    overrides = dict(parse_setting(item) for item in args.set)
    shims = frozenset() if args.shims == "none" else frozenset(args.shims.split(","))
    wanted = [s for s in SCENARIOS if s in only or s.rsplit("_", 1)[0] in only]
    wan_small_count = args.wan_small_count or args.small_count

    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    say(f"machine: {machine_note()}")
    say(f"data in {work}; every copy is checked by SHA-256")
    big = work / "large.bin"
    t = time.perf_counter()
    digest = make_file(big, args.size)
    small_dir = work / f"small-{args.small_count}x{args.small_size}"
    small = (
        make_small_files(small_dir, args.small_count, args.small_size)
        if "small_files_up" in wanted
        else {}
    )
    wan_small_dir = work / f"small-{wan_small_count}x{args.small_size}"
    wan_small = (
        make_small_files(wan_small_dir, wan_small_count, args.small_size)
        if "small_files_wan_up" in wanted
        else {}
    )
    say(
        f"test data ready ({human(args.size)} file, {len(small) or len(wan_small)} small files) in "
        f"{time.perf_counter() - t:.1f} s"
    )
    wan_big, wan_digest = big, digest
    if args.wan_size and args.wan_size != args.size:
        wan_big = work / "large-wan.bin"
        wan_digest = make_file(wan_big, args.wan_size)

    # Everything but the cached test data is private to this run: two runs at once (other
    # engineers run the bench too) must not share an sshd folder, keys or output files.
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    out = fresh_dir(run_dir / "out")
    state_dir = fresh_dir(run_dir / "state")
    server = start_served(args.server, run_dir / "server")
    relay: RelayProcess | None = None
    relay_rate = 0.0
    results = Results()
    try:
        kh = run_dir / "known_hosts"
        lines = [server.known_hosts_line()]
        target = Target(server, server.port, kh, wan=False)
        if any("wan" in s for s in wanted):
            mib_s, rtt = measure_relay(args.delay_ms, 1 << 30)
            say(
                f"latency relay: holds every chunk {args.delay_ms:g} ms each way, round trip "
                f"{rtt:.0f} ms; it emulates latency, not loss. Raw TCP through it: "
                f"{mib_s:.0f} MiB/s (checked against the WAN rates at the end)"
            )
            relay_rate = mib_s
            relay = spawn_relay(server.port, args.delay_ms)
            lines.append(server.known_hosts_line(relay.port))
        kh.write_text("\n".join(lines) + "\n")
        say(f"server: {server.description} on 127.0.0.1:{server.port}")
        # The files downloads read, linked into the served folder before anything lists it
        # (rclone caches listings: a file put there later stays invisible to it).
        source = link_into(server, big, "loopback-source.bin")
        wan_source = link_into(server, wan_big, "wan-source.bin")
        loop_options = {
            "connections": args.loopback_connections,
            "segment_size": args.segment_size,
            "max_requests": args.max_requests,
            "window": args.loopback_window,
            "file_concurrency": args.file_concurrency,
            "engine": args.engine,
            "state_dir": state_dir,
        }
        recommended: dict[str, object] = {}
        if args.probe:
            base = Ours(**loop_options)
            recommended = probe_advice(server, base.settings(), state_dir)
        if overrides:
            forced = ", ".join(f"{k} = {v!r}" for k, v in sorted(overrides.items()))
            say(f"forced on our side (--set): {forced}")
        say(
            "ours: "
            + (
                "SftpRemoteFS (temp name, size check, atomic rename, resume journal), "
                f"bench shims: {', '.join(sorted(shims)) or 'none'}"
                if args.engine == "transport"
                else "raw segmented engine on bare asyncssh connections (no upload protocol)"
            )
        )

        # What every scenario's side shares; each adds its connections, segments and window.
        shared = {
            "file_concurrency": args.file_concurrency,
            "engine": args.engine,
            "state_dir": state_dir,
            "shims": shims,
            "recommended": recommended,
            "overrides": overrides,
        }

        def small_files_ours(connections: int) -> Ours:
            return Ours(
                connections=connections,
                segment_size=args.segment_size,
                max_requests=args.max_requests,
                window=2 << 20,
                **shared,  # type: ignore[arg-type]
            )

        loop_ours = Ours(**loop_options, shims=shims, recommended=recommended, overrides=overrides)
        if "loopback_up" in wanted or "loopback_down" in wanted:
            ts = loop_ours.settings()
            say(
                f"loopback, {human(args.size)}: OpenSSH sftp -b (defaults: 64 requests of 32 "
                f"KiB) vs ours ({ts.segment_connections} connection(s), {ts.max_requests} "
                f"writes of {ts.block_size} bytes, "
                f"{read_requests(ts.max_requests, ts.block_size, ts.read_block)} reads of "
                f"{ts.read_block}, checksum {ts.checksum.value})"
            )
            bench_large(results, "loopback", target, big, digest, out, args.reps, loop_ours, source)
        if "small_files_up" in wanted:
            small_ours = small_files_ours(args.small_connections)
            say(
                f"loopback, {len(small)} files of {human(args.small_size)} up: OpenSSH "
                f"'put dir/*' vs ours ({small_ours.connections} connection(s), "
                f"{small_ours.file_concurrency} files in flight on each)"
            )
            bench_small(results, target, small_dir, small, args.reps, small_ours)
        if relay is not None:
            wan_target = Target(server, relay.port, kh, wan=True)
            wan_ours = Ours(
                connections=args.wan_connections,
                segment_size=args.wan_segment_size,
                max_requests=args.wan_max_requests,
                window=args.wan_window,
                **shared,  # type: ignore[arg-type]
            )
            if "wan_up" in wanted or "wan_down" in wanted:
                say(
                    f"long fat link ({2 * args.delay_ms:g} ms round trip through the relay), "
                    f"{human(wan_big.stat().st_size)}: OpenSSH sftp -R 256 -B "
                    f"{MAX_OPENSSH_BLOCK} vs ours ({wan_ours.connections} connections, "
                    f"segments of {human(wan_ours.segment_size)}, {wan_ours.max_requests} "
                    "requests each"
                    + (f", window {human(wan_ours.window)})" if args.engine == "raw" else ")")
                )
                bench_large(
                    results,
                    "wan",
                    wan_target,
                    wan_big,
                    wan_digest,
                    out,
                    args.wan_reps,
                    wan_ours,
                    wan_source,
                )
            if "small_files_wan_up" in wanted:
                wan_small_ours = small_files_ours(args.wan_small_connections)
                say(
                    f"long fat link ({2 * args.delay_ms:g} ms round trip through the relay), "
                    f"{len(wan_small)} files of {human(args.small_size)} up: OpenSSH sftp -R "
                    f"256 -B {MAX_OPENSSH_BLOCK} 'put dir/*' (one file at a time) vs ours "
                    f"({wan_small_ours.connections} connection(s), "
                    f"{wan_small_ours.file_concurrency} files in flight on each)"
                )
                bench_small(
                    results,
                    wan_target,
                    wan_small_dir,
                    wan_small,
                    args.wan_small_reps,
                    wan_small_ours,
                    "small_files_wan_up",
                )
    finally:
        if relay is not None:
            relay.stop()
        server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)

    say("")
    say(f"machine after the run: {machine_note()}")
    wan_rates = [
        results.rate(s, w)
        for s in ("wan_up", "wan_down")
        for w in ("ours", "openssh")
        if (s, w) in results.seconds
    ]
    if relay_rate and wan_rates:
        fastest = max(wan_rates)
        verdict = (
            "not the bottleneck"
            if fastest < relay_rate / 2
            else "WARNING: close to the relay's own limit, the WAN figures may be capped by it"
        )
        say(
            f"relay check: fastest WAN transfer {fastest:.0f} MiB/s, raw relay {relay_rate:.0f} "
            f"MiB/s: {verdict}"
        )
    say(f"{'scenario':16s} {'OpenSSH':>12s} {'ours':>12s} {'ratio':>7s}   (medians)")
    ratios: dict[str, float] = {}
    for s in SCENARIOS:
        if (s, "ours") not in results.seconds:
            continue
        ratios[s] = round(results.ratio(s), 2)
        unit = results.unit[s]
        say(
            f"{s:16s} {results.rate(s, 'openssh'):8.1f} {unit:<7s} "
            f"{results.rate(s, 'ours'):8.1f} {unit:<7s} {ratios[s]:6.2f}x"
        )
    print(json.dumps({"server": args.server, **ratios}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
