"""The archive path against the standard tools, in the same run (issue 17).

Makes a set of asset files (random bytes: incompressible, like PDFs, EPUBs and audio) and a
metadata file, then measures, alternating who goes first, each repetition:

* **ours**: the flow's path: the bag written as a tar (``formats.archive.BagWriter``, each
  file hashed as it streams; zstd by default, the flow's default), encrypted by age through a
  pipe (``formats.archive.encrypt``, as ``flows.archive.write_archive`` does), the encrypted
  file hashed for its sidecar as it is written, then uploaded to a loopback OpenSSH ``sshd``
  by the service's SFTP transport (temporary name, the server's copy verified by hash, rename;
  ``--verify`` says how: the server's ``openssl dgst -sha256`` or ``sha256sum`` over SSH, or
  reading it back);
* **peer**: ``tar -cf - DIR | age -r KEY > FILE``, ``sha256sum FILE`` (the sidecar), then
  ``sftp -b`` ``put FILE`` to the same server (which proves nothing about the server's copy:
  ours does more).

Each copy on the server is decrypted and its tar checked. The last line is one JSON object:
``{"mib_per_s": ours, "peer_mib_per_s": peer, "ratio": ours / peer, ...}`` (MiB of payload a
second, end to end, medians over the repetitions; higher is better), with each repetition's
own ratio (``pair_ratios``: the two copies ran back to back) and the seconds of each stage on
the report lines.

    .venv/bin/python bench/archive.py                 # 2 GiB of assets, 3 repetitions
    .venv/bin/python bench/archive.py --size 256M --reps 1   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO, cast

import pyrage
import zstandard

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.servers import Served, start_served  # noqa: E402
from bench.transfer import human, parse_size, say  # noqa: E402

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS  # noqa: E402
from consonance_sftp.config.transfer import TransferSettings  # noqa: E402
from consonance_sftp.formats.archive import BagWriter, HashingWriter  # noqa: E402
from consonance_sftp.formats.archive.bag import Compression  # noqa: E402
from consonance_sftp.formats.archive.encrypt import encrypt_produced  # noqa: E402

FILE_SIZE = 64 << 20  # each asset: a large print PDF or audio master
STAGES: dict[str, str] = {}  # each stage of the last copy made: its seconds, its CPU seconds
_CPU_MARK: list[float] = [0.0]


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its finished children: on a shared
    machine the wall clock says how busy the others were, this says what the work cost (the
    server's side, sshd, is not counted, for either copy)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def lap(name: str, since: float) -> float:
    """Note ``name``'s seconds since ``since`` (and CPU since the last lap); returns now."""
    now, cpu = time.perf_counter(), _cpu()
    STAGES[name] = f"{now - since:.2f} s (cpu {cpu - _CPU_MARK[0]:.2f})"
    _CPU_MARK[0] = cpu
    return now


def make_assets(folder: Path, total: int) -> int:
    """Random files totalling ``total`` bytes (cached between runs by size)."""
    folder.mkdir(parents=True, exist_ok=True)
    made, i = 0, 0
    while made < total:
        size = min(FILE_SIZE, total - made)
        path = folder / f"asset-{i:04d}.bin"
        if not path.exists() or path.stat().st_size != size:
            with path.open("wb") as f:
                left = size
                while left:
                    chunk = os.urandom(min(left, 8 << 20))
                    f.write(chunk)
                    left -= len(chunk)
        made += size
        i += 1
    (folder / "metadata.json").write_text(json.dumps({"works": list(range(2000))}))
    return made


VERIFY = {
    # how the server's copy is proven before it counts as delivered (TransferSettings)
    "openssl": {"allow_shell": True, "shell_hash_command": "openssl dgst -sha256 -r"},
    "sha256sum": {"allow_shell": True, "shell_hash_command": "sha256sum"},
    "read_back": {"allow_shell": False},
}


def ours(
    assets: Path,
    out: Path,
    recipient: pyrage.x25519.Recipient,
    served: Served,
    *,
    compression: Compression,
    verify: str,
    connections: int = 4,
) -> str:
    """Bag -> tar (-> zstd) -> age (pipe) -> file + sidecar hash -> our SFTP upload: the
    pieces ``flows.archive.write_archive`` puts together, then the upload the engine's
    delivery runs (stage: temporary name, verify; publish: rename)."""

    def produce(sink: BinaryIO) -> None:
        info = {"Source-Organization": "bench"}
        with BagWriter(
            sink, name=out.name.split(".")[0], info=info, compression=compression
        ) as bag:
            for path in sorted(assets.iterdir()):
                bag.add_file(f"assets/{path.name}", path)

    t, _CPU_MARK[0] = time.perf_counter(), _cpu()
    with out.open("wb") as raw:
        hashing = HashingWriter(raw)
        encrypt_produced(produce, cast(BinaryIO, hashing), [recipient])
    digest = hashing.hexdigest()
    t = lap("write+encrypt+hash", t)

    async def upload() -> None:
        settings = TransferSettings(**VERIFY[verify])  # type: ignore[arg-type]
        endpoint = served.endpoint(settings, max_connections=connections)
        fs = SftpRemoteFS(endpoint, state_dir=out.parent)
        async with fs:
            await fs.upload(out, served.remote(out.name), sha256=digest)

    asyncio.run(upload())
    lap("upload+verify+rename", t)
    return digest


def peer(assets: Path, out: Path, recipient: str, served: Served, known_hosts: Path) -> str:
    """``tar | age > file``, ``sha256sum``, ``sftp -b put``."""
    t, _CPU_MARK[0] = time.perf_counter(), _cpu()
    with out.open("wb") as f:
        tar = subprocess.Popen(["tar", "-cf", "-", "-C", str(assets), "."], stdout=subprocess.PIPE)
        age = subprocess.run(["age", "-r", recipient], stdin=tar.stdout, stdout=f, check=True)
        tar.wait()
        assert age.returncode == 0 and tar.returncode == 0
    t = lap("tar|age", t)
    digest = subprocess.run(
        ["sha256sum", str(out)], check=True, capture_output=True, text=True
    ).stdout.split()[0]
    t = lap("sha256sum", t)
    batch = out.with_suffix(".batch")
    batch.write_text(f"put {out} {served.remote(out.name)}\n")
    subprocess.run(
        [
            "sftp",
            "-q",
            "-F",
            "/dev/null",
            "-b",
            str(batch),
            "-i",
            str(served.client_key_path),
            "-P",
            str(served.port),
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"{served.user}@127.0.0.1",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    lap("sftp put", t)
    return digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="2G", help="assets in total (default 2G)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--compression",
        choices=("zstd", "none"),
        default="zstd",
        help="the bag's compression (default zstd, the archive flow's default)",
    )
    parser.add_argument(
        "--verify",
        choices=tuple(VERIFY),
        default="openssl",
        help="how our upload proves the server's copy: the partner's hash command over SSH "
        "(default 'openssl dgst -sha256 -r'; or sha256sum), or read_back (no shell)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench-archive"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=4,
        help="the partner's max_connections for our upload (default 4: segments in parallel)",
    )
    args = parser.parse_args(argv)
    for tool in ("tar", "age", "sftp", "sha256sum"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (make system-deps)")
    total = parse_size(args.size)
    assets = args.workdir / f"assets-{total}"
    say(f"making {human(total)} of assets in {assets} (kept between runs)")
    payload = make_assets(assets, total)
    mib = payload / (1 << 20)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=args.workdir))
    served = start_served("openssh", run_dir)
    known_hosts = run_dir / "known_hosts"
    known_hosts.write_text(served.known_hosts_line() + "\n")
    identity = pyrage.x25519.Identity.generate()
    recipient = identity.to_public()
    times: dict[str, list[float]] = {"ours": [], "peer": []}
    try:
        for rep in range(args.reps):
            order = ["ours", "peer"] if rep % 2 == 0 else ["peer", "ours"]
            for who in order:
                out = run_dir / f"{who}-{rep}.tar.age"
                os.sync()
                started = time.perf_counter()
                if who == "ours":
                    digest = ours(
                        assets,
                        out,
                        recipient,
                        served,
                        compression=args.compression,
                        verify=args.verify,
                        connections=args.connections,
                    )
                else:
                    digest = peer(assets, out, str(recipient), served, known_hosts)
                seconds = time.perf_counter() - started
                landed = served.folder / out.name
                check_copy(
                    landed,
                    digest,
                    identity,
                    payload,
                    zstd=who == "ours" and args.compression == "zstd",
                )
                times[who].append(seconds)
                rate = mib / seconds
                stages = ", ".join(f"{k} {v}" for k, v in STAGES.items())
                STAGES.clear()
                say(
                    f"  rep {rep + 1}/{args.reps} {who:5s} {seconds:7.2f} s {rate:8.1f} MiB/s"
                    f"  ({stages}; load {Path('/proc/loadavg').read_text().split()[0]})"
                )
                out.unlink()
                landed.unlink()
    finally:
        served.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    ours_rate = mib / statistics.median(times["ours"])
    peer_rate = mib / statistics.median(times["peer"])
    # Each repetition's two copies ran back to back: on a shared machine their ratio is the
    # figure least moved by the load of the moment (the medians above may come from reps
    # under different loads).
    pairs = [p / o for o, p in zip(times["ours"], times["peer"], strict=True)]
    print(
        json.dumps(
            {
                "mib_per_s": round(ours_rate, 1),
                "peer_mib_per_s": round(peer_rate, 1),
                "ratio": round(ours_rate / peer_rate, 2),
                "pair_ratios": [round(r, 2) for r in pairs],
                "pair_ratio_median": round(statistics.median(pairs), 2),
                "payload_mib": round(mib, 1),
                "reps": args.reps,
                "compression": args.compression,
                "verify": args.verify,
                "connections": args.connections,
                "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            }
        )
    )
    return 0


def check_copy(
    landed: Path, digest: str, identity: pyrage.x25519.Identity, payload: int, *, zstd: bool
) -> None:
    """The server's copy: its SHA-256 against the sidecar's, then decrypted (streamed), a tar
    whose asset files add up to the payload."""
    sha = hashlib.sha256()
    with landed.open("rb") as f:
        while chunk := f.read(8 << 20):
            sha.update(chunk)
    if sha.hexdigest() != digest:
        raise SystemExit(f"SHA-256 mismatch for {landed}")
    read_fd, write_fd = os.pipe()

    def decrypt() -> None:
        with landed.open("rb") as f, os.fdopen(write_fd, "wb") as pipe:
            pyrage.decrypt_io(f, pipe, [identity])  # type: ignore[arg-type]

    worker = threading.Thread(target=decrypt)
    worker.start()
    with os.fdopen(read_fd, "rb") as pipe:
        plain = zstandard.ZstdDecompressor().stream_reader(pipe) if zstd else pipe
        with tarfile.open(fileobj=plain, mode="r|") as tar:
            sizes = sum(m.size for m in tar if m.isfile() and "asset-" in m.name)
    worker.join()
    if sizes != payload:
        raise SystemExit(f"{landed}: the tar holds {sizes} bytes of assets, not {payload}")


if __name__ == "__main__":
    raise SystemExit(main())
