"""The repository stands on its own: nothing in it reads a folder beside the clone, and every
third-party sample a test reads ships in ``tests/data`` with its source named."""

from __future__ import annotations

import re
from pathlib import Path

from tests.samples import DATA

ROOT = Path(__file__).resolve().parents[2]
# Built from parts so this file does not match itself.
OUTSIDE = re.compile(r"\.\./" + "shared" + r"|\b" + "shared" + r"/(samples|reference)\b")


def _tree() -> list[Path]:
    files = [ROOT / name for name in ("Makefile", ".ci/run", "pyproject.toml", "README.md")]
    for top in ("src", "tests", "bench", "scripts", "docs"):
        files += [
            p for p in (ROOT / top).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        ]
    return files


def test_nothing_refers_to_a_folder_beside_the_clone() -> None:
    offenders = []
    for path in _tree():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_every_sample_in_tests_data_has_its_source_and_licence_named() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    samples = sorted(p for p in DATA.rglob("*") if p.is_file() and p.name != "README.md")
    assert samples, "tests/data holds no samples"
    for sample in samples:
        name = sample.relative_to(DATA).as_posix()
        rows = [line for line in readme.splitlines() if name in line or sample.name in line]
        assert rows, f"{name} is not named in tests/data/README.md"
        assert "Apache-2.0" in rows[0] or "licence" in rows[0].lower(), rows[0]
