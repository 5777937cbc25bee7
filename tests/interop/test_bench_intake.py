"""``bench/intake.py``: a partner's batch of small files, taken in by the service's intake poll
and fetched by OpenSSH's ``sftp -b get`` from the same private sshd, in the same run.

A small run (50 files): every file must be taken in once (the benchmark counts the intake
ledger rows, checks each SHA-256 and that a second poll takes nothing, and stops otherwise),
OpenSSH's copies are checked too, and the run ends with one JSON line of files per second and
their ratio. The figures themselves are not asserted (a shared machine's timings are not a
test); that both sides ran, were checked, and were reported is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_bench_intake_takes_every_file_once_and_prints_the_ratio(tmp_path: Path) -> None:
    if shutil.which("sftp") is None:
        pytest.fail("OpenSSH's sftp client is missing: run scripts/system-deps.sh")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "intake.py"),
            "--files",
            "50",
            "--min-size",
            "2K",
            "--max-size",
            "20K",
            "--workdir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result) == {"files", "bytes", "openssh_files_per_s", "ours_files_per_s", "ratio"}
    assert result["files"] == 50 and result["bytes"] >= 50 * 2048
    for key in ("openssh_files_per_s", "ours_files_per_s", "ratio"):
        assert isinstance(result[key], float | int) and result[key] > 0
    ratio = result["ours_files_per_s"] / result["openssh_files_per_s"]
    assert abs(ratio - result["ratio"]) <= 0.01 * ratio + 0.001
    # Both sides ran once and every copy was checked: each file once, with its SHA-256.
    checked = [line for line in lines if "(sha256 ok, each file once)" in line]
    assert [line.split()[2] for line in checked] == ["openssh", "ours"]
    # The run's files (sshd, inbox, state) are gone.
    assert list(tmp_path.iterdir()) == []
