"""Transfer CPU profile: our transport against OpenSSH ``sftp``, CPU-seconds per GiB.

Wall-clock ratios on a shared two-core machine move by 30-50 % with other people's load; CPU
time per byte moves much less. This bench downloads one file from a private OpenSSH ``sshd``
on 127.0.0.1 with OpenSSH's ``sftp -b`` (``get``) and with our transport, alternating, and
prints for each run: wall seconds, the client's CPU seconds per GiB (user + system; ours from
``getrusage(RUSAGE_SELF)`` around the download, every thread included; OpenSSH's from
``getrusage(RUSAGE_CHILDREN)``, ``sftp`` and its ``ssh``), the server's (``sshd``'s reaped
children, from ``/proc``), and the load average. Every copy is checked by SHA-256.

    .venv/bin/python bench/download_profile.py --size 256M --reps 3
    .venv/bin/python bench/download_profile.py --size 128M --reps 1 --only ours --profile
    .venv/bin/python bench/download_profile.py --set max_requests=32 --set read_block_size=65536
    .venv/bin/python bench/download_profile.py --direction up --set checksum=size --reps 2

``--direction up`` uploads instead (OpenSSH's ``put`` against our ``upload``, into a fresh name
each run; ``--set checksum=size`` leaves out our read-back of the whole file, which OpenSSH's
client does not do; ``--engine raw`` is ``put_segmented`` alone: no hash, journal or rename).

``--engine raw`` runs ``get_segmented`` alone on a bare connection (no staging, journal, hash,
fsync or rename): the engine's own cost. ``--profile`` runs ours under cProfile, timed by the
event loop thread's CPU time (slower), and prints the top functions by internal time.
``--set KEY=VALUE`` forces a transfer setting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import io
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.sftp.segmented import MAX_OPENSSH_BLOCK, get_segmented, put_segmented
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.sandbox.openssh import OpenSshServer, start_openssh
from servers import Served, parse_setting
from transfer import CIPHERS, connect, make_file, parse_size

GIB = float(1 << 30)
TICK = os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    print(text, flush=True)


def server_cpu(sshd: OpenSshServer) -> float:
    """CPU seconds of every finished child of the sshd listener (one per connection)."""
    fields = Path(f"/proc/{sshd.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): cutime is field 16, cstime field 17.
    return (int(fields[13]) + int(fields[14])) / TICK


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def self_sys() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def children_sys() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def settle_server(sshd: OpenSshServer, before: float) -> float:
    """The server's CPU for the session that just closed (waits for sshd to reap it)."""
    deadline = time.monotonic() + 2
    last = server_cpu(sshd)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = server_cpu(sshd)
        if now == last and now > before:
            break
        last = now
    return server_cpu(sshd) - before


def openssh_get(sshd: OpenSshServer, kh: Path, remote: str, local: Path) -> None:
    openssh_batch(sshd, kh, f"get {remote} {local}\n")


def openssh_batch(sshd: OpenSshServer, kh: Path, commands: str) -> None:
    batch = kh.parent / "batch.txt"
    batch.write_text(commands)
    cmd = [
        "sftp",
        "-q",
        "-F",
        "/dev/null",
        "-b",
        str(batch),
        "-i",
        str(sshd.client_key_path),
        "-P",
        str(sshd.port),
        "-c",
        CIPHERS,
        "-o",
        f"UserKnownHostsFile={kh}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        f"{sshd.shell_user}@127.0.0.1",
    ]
    done = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode:
        raise SystemExit(f"sftp failed: {done.stderr.decode(errors='replace')}")


def openssh_put(sshd: OpenSshServer, kh: Path, local: Path, remote: str) -> None:
    openssh_batch(sshd, kh, f"put {local} {remote}\n")


def settings(overrides: dict[str, object]) -> TransferSettings:
    base: dict[str, object] = {
        "block_size": MAX_OPENSSH_BLOCK,
        "max_requests": 16,
        "segmented_threshold": 0,
        "segment_connections": 1,
    }
    return TransferSettings.model_validate({**base, **overrides})


def _served(sshd: OpenSshServer, remote: str) -> Served:
    """The private sshd as ``bench/servers.py`` describes a server, serving ``remote``'s folder."""
    return Served(
        kind="openssh",
        port=sshd.port,
        user=sshd.shell_user,
        host_key=sshd.host_key,
        client_key_path=sshd.client_key_path,
        folder=Path(remote).parent,
        remote_folder=str(Path(remote).parent),
        stop=sshd.stop,
    )


@contextlib.asynccontextmanager
async def raw_sftp(served: Served, port: int) -> AsyncIterator[asyncssh.SFTPClient]:
    """An SFTP session on a bare connection (``--engine raw``: no transport around it)."""
    from transfer import Target

    (conn,) = await connect(Target(served, port, Path("/dev/null"), False), 1, 2 << 20)
    try:
        yield await conn.start_sftp_client()
    finally:
        conn.close()
        await conn.wait_closed()


def ours_get(
    sshd: OpenSshServer,
    state: Path,
    remote: str,
    local: Path,
    size: int,
    ts: TransferSettings,
    engine: str,
) -> None:
    served = _served(sshd, remote)

    async def transport() -> None:
        async with SftpRemoteFS(served.endpoint(ts), state_dir=state) as fs:
            await fs.download(remote, local)

    async def raw() -> None:
        async with raw_sftp(served, sshd.port) as sftp:
            await get_segmented(
                [sftp],
                remote,
                local,
                size=size,
                segment_size=ts.segment_size,
                block_size=ts.read_block,
                max_requests=ts.max_requests,
            )

    asyncio.run(transport() if engine == "transport" else raw())


def ours_put(
    sshd: OpenSshServer,
    state: Path,
    local: Path,
    remote: str,
    ts: TransferSettings,
    engine: str,
) -> None:
    served = _served(sshd, remote)

    async def transport() -> None:
        async with SftpRemoteFS(served.endpoint(ts), state_dir=state) as fs:
            await fs.upload(local, remote)

    async def raw() -> None:
        async with raw_sftp(served, sshd.port) as sftp:
            await put_segmented(
                [sftp],
                local,
                remote,
                segment_size=ts.segment_size,
                block_size=ts.block_size,
                max_requests=ts.max_requests,
            )

    asyncio.run(transport() if engine == "transport" else raw())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=parse_size, default=parse_size("256M"))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--only", choices=("both", "ours", "openssh"), default="both")
    p.add_argument("--engine", choices=("transport", "raw"), default="transport")
    p.add_argument("--direction", choices=("down", "up"), default="down")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--profile", action="store_true", help="cProfile our runs (top 30 printed)")
    p.add_argument("--no-check", action="store_true", help="skip the SHA-256 of each copy")
    p.add_argument(
        "--workdir", type=Path, default=Path("/var/tmp/consonance-sftp-bench"), help="data"
    )
    args = p.parse_args(argv)
    ts = settings(dict(parse_setting(item) for item in args.set))
    args.workdir.mkdir(parents=True, exist_ok=True)
    big = args.workdir / f"download-{args.size}.bin"
    digest = make_file(big, args.size)
    run_dir = Path(tempfile.mkdtemp(prefix="dl-", dir=args.workdir))
    out = run_dir / "out"
    out.mkdir()
    state = run_dir / "state"
    sshd = start_openssh(run_dir / "sshd", chroot=False)
    kh = run_dir / "known_hosts"
    kh.write_text(
        f"[127.0.0.1]:{sshd.port} "
        + " ".join(sshd.host_key.export_public_key("openssh").decode().split()[:2])
        + "\n"
    )
    gib = args.size / GIB
    up = args.direction == "up"
    inbox = run_dir / "inbox"
    inbox.mkdir()
    say(
        f"{args.size >> 20} MiB {'to' if up else 'from'} a private sshd; ours: {args.engine}, "
        + (
            f"{ts.max_requests} writes of {ts.block_size} in flight, checksum {ts.checksum}, "
            if up
            else f"{ts.max_requests} reads of {ts.read_block} in flight, "
        )
        + f"resume {ts.resume}, segment {ts.segment_size >> 20} MiB"
    )
    results: dict[str, dict[str, list[float]]] = {}
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    who_runs = ["openssh", "ours"] if args.only == "both" else [args.only]
    try:
        for rep in range(args.reps):
            order = who_runs if rep % 2 == 0 else list(reversed(who_runs))
            for who in order:
                local = (inbox if up else out) / f"{who}-{rep}.bin"
                os.sync()
                load = os.getloadavg()[0]
                s0, c0, srv0 = self_cpu(), children_cpu(), server_cpu(sshd)
                sys0 = children_sys() if who == "openssh" else self_sys()
                m0 = time.thread_time()
                t = time.perf_counter()
                if profiler is not None and who == "ours":
                    profiler.enable()
                if who == "openssh" and up:
                    openssh_put(sshd, kh, big, str(local))
                elif who == "openssh":
                    openssh_get(sshd, kh, str(big), local)
                elif up:
                    ours_put(sshd, state, big, str(local), ts, args.engine)
                else:
                    ours_get(sshd, state, str(big), local, args.size, ts, args.engine)
                if profiler is not None and who == "ours":
                    profiler.disable()
                wall = time.perf_counter() - t
                main_thread = time.thread_time() - m0
                client = (children_cpu() - c0) if who == "openssh" else (self_cpu() - s0)
                kernel = (children_sys() if who == "openssh" else self_sys()) - sys0
                srv = settle_server(sshd, srv0)
                if not args.no_check and sha256_file(local) != digest:
                    raise SystemExit(f"SHA-256 mismatch: {local}")
                local.unlink()
                row = results.setdefault(who, {"wall": [], "client": [], "server": []})
                row["wall"].append(wall)
                row["client"].append(client / gib)
                row["server"].append(srv / gib)
                say(
                    f"  rep {rep + 1} {who:8s} {wall:6.2f} s {args.size / wall / (1 << 20):7.1f}"
                    f" MiB/s  client {client / gib:5.2f} CPU-s/GiB (sys {kernel / gib:4.2f})"
                    f"  sshd {srv / gib:5.2f}"
                    f" CPU-s/GiB  load {load:.2f}"
                    + (f"  (event loop {main_thread / gib:.2f})" if who == "ours" else "")
                )
    finally:
        sshd.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    say("medians:")
    for who, row in results.items():
        say(
            f"  {who:8s} {args.size / statistics.median(row['wall']) / (1 << 20):7.1f} MiB/s"
            f"  client {statistics.median(row['client']):5.2f} CPU-s/GiB"
            f"  sshd {statistics.median(row['server']):5.2f} CPU-s/GiB"
        )
    if len(results) == 2:
        ratio = statistics.median(results["openssh"]["wall"]) / statistics.median(
            results["ours"]["wall"]
        )
        say(f"wall ratio ours/OpenSSH {ratio:.2f} (load average now {os.getloadavg()[0]:.2f})")
    if profiler is not None:
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(30)
        say(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
