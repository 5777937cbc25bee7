"""``bench/sales.py`` at a tiny size: both sides run on the same generated report, ours loads
every line and writes every one into the import file (checked against the generator's sums),
and the last line carries the figures the issue asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sales.py"


def _run(*args: str) -> tuple[list[str], dict[str, object]]:
    done = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])


@pytest.mark.parametrize("layout", ["lightning-source", "consonance"])
def test_tiny_run_reports_ratio_and_rss(tmp_path: Path, layout: str) -> None:
    lines, figures = _run(
        "--lines", "3000", "--titles", "100", "--rss-every", "1000",
        "--layout", layout, "--workdir", str(tmp_path),
    )  # fmt: skip
    for key in ("seconds", "bare_seconds", "ratio_to_bare", "peak_rss_mb"):
        assert isinstance(figures[key], int | float) and figures[key] > 0, key
    assert figures["ratio_to_bare"] == round(
        float(figures["seconds"]) / float(figures["bare_seconds"]),  # type: ignore[arg-type]
        2,
    )
    assert figures["checked"] is True
    assert figures["import_rows"] == 3000
    assert set(figures["rss_mb_at"]) == {"1000", "2000", "3000"}  # type: ignore[arg-type]
    assert any("RSS at 1,000 lines" in line for line in lines)
    assert not any(line.startswith("MISMATCH") for line in lines)
    # The import file and summary were written (and kept, since --workdir was given).
    outbox = tmp_path / "ours" / "outbox"
    assert sorted(p.suffix for p in outbox.iterdir()) == [".csv", ".xlsx"]


def test_writer_comparison_names_each_installed_writer(tmp_path: Path) -> None:
    lines, figures = _run("--writers", "500", "--workdir", str(tmp_path))
    assert figures["rows"] == 500
    for writer in ("rows-only", "shipped", "openpyxl", "xlsxwriter"):
        run = figures[writer]
        assert isinstance(run, dict) and run["seconds"] >= 0 and run["peak_rss_mb"] > 0
    assert figures["xlsxwriter"]["bytes"] > 0  # type: ignore[index]
    assert any(line.strip().startswith("openpyxl:") for line in lines)
