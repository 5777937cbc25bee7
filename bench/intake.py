"""Intake benchmark: a partner uploads 1,000 small files at once; the service takes them all in.

Starts a private OpenSSH ``sshd`` on 127.0.0.1 (``bench/servers.py``, as ``transfer.py`` does)
and puts N files of random sizes (default 1,000 of 20-200 KiB, the sizes of covers and ONIX
deltas) in a partner's inbox folder on it. Then, in alternating order, ``--reps`` times each:

* **OpenSSH**: ``sftp -b`` with ``get inbox/* dest/``: the same files from the same server, one
  process, one connection (its process start and login included);
* **ours**: the service's intake poll as ``serve`` runs it (``app.intake.poll_inbox`` on an
  ``intake`` flow, with the engine on SQLite in this process: one durable intake workflow per
  file, fetched to ``state_dir/inbox``, checksummed, recorded in the intake ledger), timed from
  the poll's first listing to the last file recorded. Each repetition starts from an empty
  state folder (a new store and engine database), so every file is new to it.

Every copy is checked: OpenSSH's by SHA-256 on our disk; ours by the count of intake ledger
rows (one per file, none twice), each row's SHA-256 and local copy, and a second poll that must
take nothing. The stability check is kept but short (``--stable-interval``, default 0.2 s; it
is a wait, not work, and a real partner's is seconds): it is inside our time.

The last line is one JSON object (files per second, medians; ratio = ours / OpenSSH, higher is
better)::

    {"files": 1000, "bytes": n, "openssh_files_per_s": r, "ours_files_per_s": r, "ratio": r}

Quick run:  .venv/bin/python bench/intake.py --files 200
Full run:   .venv/bin/python bench/intake.py               (about a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from consonance_sftp.app import App
from consonance_sftp.app.intake import LINGER_S, SftpIntakeTransport, poll_inbox
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import IntakeFlow
from consonance_sftp.models import IntakeOutcome
from servers import Served, start_served

PARTNER = "designer"
FLOW = "covers-in"


def say(text: str) -> None:
    print(text, flush=True)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def make_inbox(folder: Path, count: int, low: int, high: int, seed: int) -> dict[str, str]:
    """``count`` files of random sizes in ``low``..``high`` (a cover, an ONIX delta), their
    mtime a minute ago (uploaded and finished); name -> SHA-256."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    then = time.time() - 60
    out: dict[str, str] = {}
    for i in range(count):
        name = f"97819002{i:05d}_cover.pdf" if i % 2 else f"onix-delta-{i:05d}.xml"
        data = rng.randbytes(rng.randint(low, high))
        path = folder / name
        path.write_bytes(data)
        os.utime(path, (then, then))
        out[name] = hashlib.sha256(data).hexdigest()
    return out


# --- OpenSSH ---------------------------------------------------------------------------------


def openssh_get(server: Served, inbox: str, dest: Path, known_hosts: Path) -> float:
    """``sftp -b`` ``get inbox/*`` into ``dest``; seconds."""
    batch = dest.parent / "batch.txt"
    batch.write_text(f"get {inbox}/* {dest}/\n")  # no quotes: they would stop the glob
    cmd = [
        "sftp",
        "-q",
        "-F",
        "/dev/null",
        "-b",
        str(batch),
        "-i",
        str(server.client_key_path),
        "-P",
        str(server.port),
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        f"{server.user}@127.0.0.1",
    ]
    started = time.perf_counter()
    done = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"sftp failed: {done.stderr.decode(errors='replace')}")
    return seconds


def check_openssh(dest: Path, files: dict[str, str]) -> None:
    got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in dest.iterdir()}
    if got != files:
        missing = sorted(set(files) - set(got))[:5]
        wrong = sorted(n for n in files if n in got and got[n] != files[n])[:5]
        raise SystemExit(f"OpenSSH's copies differ: missing {missing}, wrong {wrong}")


# --- ours ------------------------------------------------------------------------------------


def settings_for(server: Served, inbox: str, state: Path, args: argparse.Namespace) -> Settings:
    token = state / "token"
    state.mkdir(parents=True)
    token.write_text("unused")
    return Settings.model_validate(
        {
            "state_dir": str(state / "var"),
            # Never called: an intake flow without a hand-off does not reach Consonance.
            "consonance": {"base_url": "http://127.0.0.1:9", "token": {"file": str(token)}},
            "partners": {
                PARTNER: {
                    "host": "127.0.0.1",
                    "port": server.port,
                    "user": server.user,
                    "host_keys": [server.known_hosts_line()],
                    "auth": {"key": str(server.client_key_path)},
                    "folders": {"receive": inbox},
                    "max_connections": args.max_connections,
                    "transfer": {"stable_interval": args.stable_interval},
                }
            },
            "flows": {FLOW: {"kind": "intake", "partners": [PARTNER], "folder": "receive"}},
        }
    )


async def ours_once(
    settings: Settings,
    files: dict[str, str],
    profile: cProfile.Profile | None,
    linger: float | None = None,
) -> float:
    """One poll of the flow through the engine, every file taken in; seconds. Checks each file
    was taken once with its bytes, and that a second poll takes nothing."""
    app = App(settings)
    flow = settings.flows[FLOW]
    assert isinstance(flow, IntakeFlow)
    runner = DeliveryRunner(app, executor=True, quiet=True)
    await runner.__aenter__()
    try:
        transport = runner.engine.intake_transport if runner.engine else None
        if linger is not None and isinstance(transport, SftpIntakeTransport):
            transport.linger = linger
        if profile is not None:
            profile.enable()
        started = time.perf_counter()
        report = await poll_inbox(app, runner, FLOW, flow, trigger="bench")
        # One at a time, as ``run`` waits: each wait polls the engine's database until its
        # workflow ends, and a thousand of them polling at once would slow the work itself.
        results = [
            await runner.wait(f.workflow_id, timeout_s=1800) for f in report.taken if f.workflow_id
        ]
        seconds = time.perf_counter() - started
        if profile is not None:
            profile.disable()
        if report.errors or len(report.taken) != len(files):
            raise SystemExit(
                f"the poll took {len(report.taken)} of {len(files)} files; "
                f"errors {report.errors}, not yet {len(report.unstable)}"
            )
        bad = [r for r in results if r.get("outcome") != IntakeOutcome.STORED.value]
        if bad:
            raise SystemExit(f"{len(bad)} intakes did not end stored, e.g. {bad[0]}")
        check_ours(app, files)
        again = await poll_inbox(app, runner, FLOW, flow, trigger="bench")
        if again.taken or len(again.known) != len(files):
            raise SystemExit(
                f"a second poll took {len(again.taken)} files again "
                f"({len(again.known)} known of {len(files)})"
            )
        return seconds
    finally:
        await runner.__aexit__(None, None, None)
        app.store.close()


def check_ours(app: App, files: dict[str, str]) -> None:
    rows = app.store.list_intakes(partner=PARTNER)
    names = [Path(r.remote_path).name for r in rows]
    if len(rows) != len(files) or set(names) != set(files):
        raise SystemExit(f"{len(rows)} intake ledger rows for {len(files)} files")
    for row in rows:
        name = Path(row.remote_path).name
        if row.sha256 != files[name] or row.local_path is None:
            raise SystemExit(f"{name}: recorded SHA-256 {row.sha256}, expected {files[name]}")
        local = Path(row.local_path)
        if hashlib.sha256(local.read_bytes()).hexdigest() != files[name]:
            raise SystemExit(f"{name}: the local copy {local} does not hold the file's bytes")


def profile_report(profile: cProfile.Profile, limit: int) -> None:
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(limit)


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="files in the inbox")
    parser.add_argument("--min-size", default="20K", help="smallest file (20K)")
    parser.add_argument("--max-size", default="200K", help="largest file (200K)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of each side")
    parser.add_argument("--seed", type=int, default=14, help="random sizes and contents")
    parser.add_argument(
        "--stable-interval", type=float, default=0.2, help="the poll's stability wait (s)"
    )
    parser.add_argument(
        "--max-connections", type=int, default=2, help="the partner's connection cap (2)"
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=LINGER_S,
        help=f"seconds an intake connection stays open for the next file ({LINGER_S}; "
        "0: closed after each file, as before the intake bench)",
    )
    parser.add_argument("--profile", type=int, default=0, help="print the N top cProfile lines")
    parser.add_argument("--workdir", type=Path, help="where the run's files go (a temp folder)")
    args = parser.parse_args()
    if shutil.which("sftp") is None:
        raise SystemExit("OpenSSH's sftp client is missing: run scripts/system-deps.sh")
    base = args.workdir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="intake-bench-", dir=base))
    server = start_served("openssh", run_dir)
    try:
        run(server, run_dir, args)
    finally:
        server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def run(server: Served, run_dir: Path, args: argparse.Namespace) -> None:
    inbox_dir = server.folder / "inbox"
    low, high = parse_size(args.min_size), parse_size(args.max_size)
    files = make_inbox(inbox_dir, args.files, low, high, args.seed)
    total = sum((inbox_dir / n).stat().st_size for n in files)
    inbox = server.remote("inbox")
    known_hosts = run_dir / "known_hosts"
    known_hosts.write_text(server.known_hosts_line() + "\n")
    say(
        f"{len(files)} files, {total / (1 << 20):.1f} MiB ({low // 1024}-{high // 1024} KiB), "
        f"OpenSSH sshd on 127.0.0.1:{server.port}; stable_interval {args.stable_interval} s, "
        f"max_connections {args.max_connections}, linger {args.linger} s"
    )
    profile = cProfile.Profile() if args.profile else None
    theirs: list[float] = []
    mine: list[float] = []
    for rep in range(args.reps):
        sides = ("openssh", "ours") if rep % 2 == 0 else ("ours", "openssh")
        for side in sides:
            if side == "openssh":
                dest = run_dir / f"openssh-{rep}" / "files"
                dest.mkdir(parents=True)
                seconds = openssh_get(server, inbox, dest, known_hosts)
                check_openssh(dest, files)
                shutil.rmtree(dest.parent)
                theirs.append(seconds)
            else:
                settings = settings_for(server, inbox, run_dir / f"ours-{rep}", args)
                seconds = asyncio.run(ours_once(settings, files, profile, args.linger))
                shutil.rmtree(run_dir / f"ours-{rep}")
                mine.append(seconds)
            rate = len(files) / seconds
            say(
                f"  rep {rep + 1} {side:8} {seconds:7.2f} s  {rate:8.1f} files/s  "
                "(sha256 ok, each file once)"
            )
    openssh_rate = len(files) / statistics.median(theirs)
    ours_rate = len(files) / statistics.median(mine)
    say(f"OpenSSH sftp -b get: {openssh_rate:.1f} files/s (median of {len(theirs)})")
    say(f"ours (intake poll):  {ours_rate:.1f} files/s (median of {len(mine)})")
    say(f"ratio ours/OpenSSH:  {ours_rate / openssh_rate:.3f}")
    if profile is not None:
        profile_report(profile, args.profile)
    result: dict[str, Any] = {
        "files": len(files),
        "bytes": total,
        "openssh_files_per_s": round(openssh_rate, 1),
        "ours_files_per_s": round(ours_rate, 1),
        "ratio": round(ours_rate / openssh_rate, 4),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
