"""``bench/transfer.py --server``: both clients against a partner's server, ratios printed.

A small run against paramiko's server (the quickest of the interop servers to start): the
benchmark starts it as the interop fixtures do, runs our probe and applies its advice, moves a
file up and down and a few small files with OpenSSH's ``sftp`` and with our transport, checks
every copy by SHA-256, and ends with one JSON line of ratios. The figures themselves are not
asserted (a shared machine's timings are not a test); that the run completes and reports one
positive ratio per scenario for the right server is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_bench_transfer_against_paramiko_prints_upload_and_download_ratios(
    tmp_path: Path,
) -> None:
    if shutil.which("sftp") is None:
        pytest.fail("OpenSSH's sftp client is missing: run scripts/system-deps.sh")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "transfer.py"),
            "--server",
            "paramiko",
            "--size",
            "2M",
            "--reps",
            "1",
            "--small-count",
            "20",
            "--workdir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    ratios = json.loads(lines[-1])
    assert ratios["server"] == "paramiko"
    assert set(ratios) == {"server", "loopback_up", "loopback_down", "small_files_up"}
    for scenario in ("loopback_up", "loopback_down", "small_files_up"):
        assert isinstance(ratios[scenario], float | int) and ratios[scenario] > 0
    # Our side ran with the probe's advice for this server, and said so.
    assert any(line.startswith("  recommended, applied to our side:") for line in lines)
    assert "paramiko's SFTPServer" in done.stdout
    # Every timed run was checked: 2 contenders x (up, down, small files).
    assert sum("(sha256 ok)" in line for line in lines) == 6
    # Each run says its client's CPU per unit of work and the load beside the wall time.
    timed = [line for line in lines if "(sha256 ok)" in line]
    assert all(" client " in line and " load " in line for line in timed), timed
    assert sum("CPU-s/GiB" in line for line in timed) == 4
    assert sum("CPU-ms/file" in line for line in timed) == 2


@pytest.mark.parametrize("direction", ["up", "down"])
def test_download_profile_measures_both_clients_cpu_per_gib(tmp_path: Path, direction: str) -> None:
    if shutil.which("sftp") is None:
        pytest.fail("OpenSSH's sftp client is missing: run scripts/system-deps.sh")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "download_profile.py"),
            "--direction",
            direction,
            "--set",
            "checksum=size",
            "--size",
            "4M",
            "--reps",
            "1",
            "--workdir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("4 MiB " + ("to" if direction == "up" else "from"))
    rows = [line for line in lines if line.startswith("  rep 1 ")]
    # One run each, checked by SHA-256 (a mismatch ends the bench with an error).
    assert sorted(row.split()[2] for row in rows) == ["openssh", "ours"]
    for row in rows:
        assert "CPU-s/GiB (sys " in row and " load " in row
    assert any(line.startswith("wall ratio ours/OpenSSH") for line in lines)


def test_bench_transfer_small_files_through_the_relay_prints_their_ratio(tmp_path: Path) -> None:
    if shutil.which("sftp") is None:
        pytest.fail("OpenSSH's sftp client is missing: run scripts/system-deps.sh")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "transfer.py"),
            "--only",
            "small_files_wan_up",
            "--size",
            "1M",
            "--wan-reps",
            "1",
            "--wan-small-count",
            "8",
            "--delay-ms",
            "5",
            "--workdir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    ratios = json.loads(lines[-1])
    assert set(ratios) == {"server", "small_files_wan_up"}
    assert ratios["server"] == "openssh" and ratios["small_files_wan_up"] > 0
    assert any("8 files of 50.0 KiB up" in line and "10 ms round trip" in line for line in lines)
    # Both contenders' runs went through the relay and were checked file by file.
    assert (
        sum("small_files_wan_up rep 1/1" in line and "(sha256 ok)" in line for line in lines) == 2
    )
