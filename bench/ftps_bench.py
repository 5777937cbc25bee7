"""``bench/transfer.py --protocol ftps``: our FTPS transport against Debian's ``curl`` (explicit
TLS, ``--ssl-reqd``), the same vsftpd, the same files, the same run.

Starts vsftpd 3.0.3 on 127.0.0.1 as the tests do (``tests/fixtures/ftp_servers.py``: explicit
TLS, data connections must resume the control connection's TLS session, its default; needs
root and ``make system-deps``) and measures, in alternating order, several repetitions:

* ``loopback_up`` / ``loopback_down``: one large file (``--size``, 256 MiB by default for a quick
  run; ``--size 1G`` for the issue's figure);
* ``small_files_up``: 2,000 files of 50 KiB into a fresh folder.

Every copy is checked by SHA-256 (uploads on the server's disk, downloads on ours). Our side
is ``FtpRemoteFS`` with its full upload protocol (temporary name, ``SIZE``, ``RNFR``/``RNTO``;
the large file's SHA-256 given, as the engine gives a planned file's, and checked on the
bytes as they are sent; downloads hashed as they arrive) and ``checksum = "size"`` by
default, so both clients move each file once (vsftpd offers no server hash: ``auto`` would
read every upload back, a second transfer; ``--verify auto`` measures that). curl runs once
per large-file run (one connection, TLS session reuse, ``-k``: the certificate is the test's
own); lftp sends the small files (see ``Lftp``). Times include connecting and logging in.
Ratios are ours / theirs in throughput (higher is better); the last line is one JSON object:

    {"protocol": "ftps", "server": "vsftpd", "size": N, "loopback_up": r, "loopback_down": r,
     "small_files_up": r, "ours_checksum": "size", ...}

Quick run: .venv/bin/python bench/transfer.py --protocol ftps --reps 3
Issue's:   .venv/bin/python bench/transfer.py --protocol ftps --size 1G --reps 3
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.ftp_servers import FtpServer, start_vsftpd  # noqa: E402

from consonance_sftp.adapters.ftp.fs import FtpRemoteFS  # noqa: E402
from consonance_sftp.config.transfer import ChecksumMethod  # noqa: E402
from consonance_sftp.ports.remote_fs import UploadItem  # noqa: E402

SCENARIOS = ("loopback_up", "loopback_down", "small_files_up")


def _sha(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class Curl:
    """Debian's curl against the server: explicit TLS required, one connection per run."""

    def __init__(self, server: FtpServer) -> None:
        self.base = f"ftp://{server.host}:{server.port}"
        self.auth = f"{server.user}:{server.password}"

    def _run(self, *args: str, cwd: Path | None = None) -> None:
        subprocess.run(
            ["curl", "-sS", "--ssl-reqd", "-k", "--user", self.auth, *args],
            check=True,
            cwd=cwd,
        )

    def upload(self, local: Path, remote: str) -> None:
        self._run("-T", str(local), f"{self.base}{remote}")

    def download(self, remote: str, local: Path) -> None:
        self._run("-o", str(local), f"{self.base}{remote}")


class Lftp:
    """lftp for the small files: curl 7.88 cannot send many files over one control
    connection to vsftpd (with TLS 1.3 its second and later data connections fail the
    session-reuse check, "522", curl/curl#4654; vsftpd's TLS 1.2 ciphers and curl's share
    none here), and one curl per file would measure process starts. lftp 4.9 (Debian): TLS
    required on control and data, one connection, ``mput`` of the folder."""

    def __init__(self, server: FtpServer) -> None:
        self.url = f"ftp://{server.host}:{server.port}"
        self.auth = f"{server.user},{server.password}"

    def upload_many(self, folder: Path, names: list[str], remote_dir: str) -> None:
        del names  # the folder holds exactly these
        script = "; ".join(
            [
                "set ftp:ssl-force true",
                "set ftp:ssl-protect-data true",
                "set ssl:verify-certificate no",
                "set net:max-retries 1",
                f"mkdir -p {remote_dir}",
                f"cd {remote_dir}",
                f"lcd {folder}",
                "mput *.dat",
                "bye",
            ]
        )
        subprocess.run(["lftp", "-u", self.auth, "-e", script, self.url], check=True)


class Ours:
    """``FtpRemoteFS`` in a fresh event loop per run (connect and login on the clock)."""

    def __init__(
        self, server: FtpServer, state: Path, checksum: ChecksumMethod, connections: int
    ) -> None:
        self.endpoint = server.endpoint(
            max_connections=connections,
            file_connections=connections,
            checksum=checksum,
            operation_timeout=600.0,
        )
        self.state = state

    def _fs(self) -> FtpRemoteFS:
        return FtpRemoteFS(self.endpoint, state_dir=self.state)

    def upload(self, local: Path, remote: str, sha256: str | None = None) -> None:
        async def run() -> None:
            async with self._fs() as fs:
                await fs.upload(local, remote, sha256=sha256)

        asyncio.run(run())

    def download(self, remote: str, local: Path) -> None:
        async def run() -> None:
            async with self._fs() as fs:
                await fs.download(remote, local)

        asyncio.run(run())

    def upload_many(self, folder: Path, names: list[str], remote_dir: str) -> None:
        async def run() -> None:
            async with self._fs() as fs:
                await fs.makedirs(remote_dir)
                items = [
                    UploadItem(local_path=folder / n, remote_path=f"{remote_dir}/{n}")
                    for n in names
                ]
                results = await fs.upload_many(items)
                failed = [r for r in results if isinstance(r, Exception)]
                if failed:
                    raise failed[0]

        asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    from transfer import Results, human, machine_note, make_file, make_small_files, say, timed
    from transfer import parse_size as size_of

    p = argparse.ArgumentParser(description="Our FTPS transport against curl, same vsftpd.")
    p.add_argument("--protocol", choices=("ftps",), default="ftps")
    p.add_argument("--size", type=size_of, default=size_of("256M"), help="large file")
    p.add_argument("--reps", type=int, default=3, help="repetitions of each scenario")
    p.add_argument("--small-count", type=int, default=2000)
    p.add_argument("--small-size", type=size_of, default=size_of("50K"))
    p.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    p.add_argument(
        "--verify",
        choices=[m.value for m in (ChecksumMethod.SIZE, ChecksumMethod.AUTO)],
        default="size",
        help="our checksum setting (auto: vsftpd has no hash, so every upload is read back)",
    )
    p.add_argument("--connections", type=int, default=1, help="ours, for the small files")
    p.add_argument(
        "--workdir", type=Path, default=Path("/var/tmp/consonance-sftp-bench"), help="data"
    )
    args = p.parse_args(argv)
    wanted = [s for s in SCENARIOS if s in args.only.split(",")]
    if shutil.which("curl") is None:
        say("curl is not installed (apt-get install curl)")
        return 2
    if "small_files_up" in wanted and shutil.which("lftp") is None:
        say("lftp is not installed (apt-get install lftp), or leave out --only small_files_up")
        return 2

    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    say(f"machine: {machine_note()}")
    big = work / "large.bin"
    t = time.perf_counter()
    digest = make_file(big, args.size)
    small_dir = work / f"small-{args.small_count}x{args.small_size}"
    small = (
        make_small_files(small_dir, args.small_count, args.small_size)
        if "small_files_up" in wanted
        else {}
    )
    names = sorted(small)
    say(
        f"test data ready ({human(args.size)} file, {len(small)} small files) in "
        f"{time.perf_counter() - t:.1f} s; every copy is checked by SHA-256"
    )

    run_dir = Path(tempfile.mkdtemp(prefix="ftps-run-", dir=work))
    server = start_vsftpd(implicit=False)
    results = Results()
    rivals: dict[str, str] = {}
    try:
        say(f"server: vsftpd 3.0.3, explicit TLS, session reuse required, 127.0.0.1:{server.port}")
        curl = Curl(server)
        ours = Ours(server, run_dir / "state", ChecksumMethod(args.verify), args.connections)
        lftp = Lftp(server)
        Client = Curl | Lftp | Ours

        def record(scenario: str, rep: int, who: str, seconds: float) -> None:
            results.add(scenario, who, seconds)
            rate = results.amount[scenario] / seconds
            say(
                f"  {scenario:15s} rep {rep + 1}/{args.reps} {who:5s} {seconds:7.2f} s "
                f"{rate:8.1f} {results.unit[scenario]}  (sha256 ok)"
            )

        def check(ok: bool, what: str) -> None:
            if not ok:
                raise SystemExit(f"SHA-256 mismatch: {what}")

        def measure(
            scenario: str,
            run: Callable[[int, str, Client], None],
            after: Callable[[int, str], None],
            rival: tuple[str, Client],
        ) -> None:
            """``run`` on the clock, then ``after`` (checks and cleans up) off it; who goes
            first alternates, so a noisy machine's drift hits both alike."""
            rivals[scenario] = rival[0]
            pair: list[tuple[str, Client]] = [rival, ("ours", ours)]
            for rep in range(args.reps):
                for who, client in pair if rep % 2 == 0 else pair[::-1]:
                    seconds = timed(functools.partial(run, rep, who, client))
                    after(rep, who)
                    record(scenario, rep, who, seconds)

        if "loopback_up" in wanted:
            results.amount["loopback_up"] = args.size / 2**20
            results.unit["loopback_up"] = "MiB/s"

            def up(rep: int, who: str, client: Client) -> None:
                assert not isinstance(client, Lftp)
                if isinstance(client, Ours):  # as the engine does: the plan's SHA-256
                    client.upload(big, f"/in/up-{rep}-{who}.bin", sha256=digest)
                else:
                    client.upload(big, f"/in/up-{rep}-{who}.bin")

            def up_check(rep: int, who: str) -> None:
                stored = server.local(f"/in/up-{rep}-{who}.bin")
                check(_sha(stored) == digest, str(stored))
                stored.unlink()

            measure("loopback_up", up, up_check, ("curl", curl))
        if "loopback_down" in wanted:
            results.amount["loopback_down"] = args.size / 2**20
            results.unit["loopback_down"] = "MiB/s"
            shutil.copyfile(big, server.local("/out/large.bin"))

            def down(rep: int, who: str, client: Client) -> None:
                assert not isinstance(client, Lftp)
                client.download("/out/large.bin", run_dir / f"down-{rep}-{who}.bin")

            def down_check(rep: int, who: str) -> None:
                local = run_dir / f"down-{rep}-{who}.bin"
                check(_sha(local) == digest, str(local))
                local.unlink()

            measure("loopback_down", down, down_check, ("curl", curl))
        if "small_files_up" in wanted:
            results.amount["small_files_up"] = float(len(names))
            results.unit["small_files_up"] = "files/s"

            def many(rep: int, who: str, client: Client) -> None:
                assert not isinstance(client, Curl)
                client.upload_many(small_dir, names, f"/in/small-{rep}-{who}")

            def many_check(rep: int, who: str) -> None:
                folder = server.local(f"/in/small-{rep}-{who}")
                got = {p.name: _sha(p) for p in folder.iterdir()}
                check(got == small, str(folder))
                shutil.rmtree(folder)

            measure("small_files_up", many, many_check, ("lftp", lftp))
    finally:
        server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)

    summary: dict[str, object] = {
        "protocol": "ftps",
        "server": "vsftpd",
        "client": "curl " + _curl_version(),
        "size": args.size,
        "ours_checksum": args.verify,
        "small_files_client": "lftp " + _lftp_version(),
    }
    for scenario in wanted:
        ours_rate = results.rate(scenario, "ours")
        rival = rivals[scenario]
        their_rate = results.rate(scenario, rival)
        ratio = ours_rate / their_rate
        unit = results.unit[scenario]
        say(
            f"{scenario:15s} ours {ours_rate:8.1f} {unit}, {rival} {their_rate:8.1f} {unit}: "
            f"ratio {ratio:.2f} (medians of {args.reps})"
        )
        summary[scenario] = round(ratio, 3)
    print(json.dumps(summary), flush=True)
    return 0


def _curl_version() -> str:
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.split()[1] if out.stdout else "?"


def _lftp_version() -> str:
    out = subprocess.run(["lftp", "--version"], capture_output=True, text=True, check=False)
    words = out.stdout.split()
    return words[words.index("Version") + 1] if "Version" in words else "?"
