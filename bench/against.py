"""Comparing a benchmark with a previous commit in the same run (``bench/engine.py --against``).

The pieces a benchmark needs to measure two versions of ``consonance_sftp`` side by side:

* ``resolve`` and ``export``: a git revision's ``src/`` (``pyproject.toml``, and any other files
  the benchmark asks for) into a folder, by ``git archive`` (the repository's worktrees and
  index are not touched);
* ``unmet_requirements``: the revision's declared dependencies that this virtualenv does not
  satisfy (both versions run on the packages installed here, so they must fit both);
* ``compare`` and ``render``: per metric the median of each side's rounds, the ratio, and
  whether the working tree is no slower than the revision: within 5 %, or within the noise the
  rounds themselves show (the larger of the two sides' spreads, max - min).
"""

from __future__ import annotations

import io
import statistics
import subprocess
import tarfile
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

TOLERANCE = 0.05  # "no slower": HEAD may be this much worse than REV before it counts


class AgainstError(Exception):
    """Why the comparison cannot run, as one line for the user."""


def resolve(root: Path, rev: str) -> str:
    """The full commit id ``rev`` names in the repository at ``root``."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise AgainstError("--against needs git on PATH") from exc
    if out.returncode != 0 or not out.stdout.strip():
        raise AgainstError(f"{rev!r} is not a commit in {root} (git rev-parse found none)")
    return out.stdout.strip()


def _has(root: Path, commit: str, path: str) -> bool:
    probe = ["git", "-C", str(root), "cat-file", "-e", f"{commit}:{path}"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def export(root: Path, commit: str, dest: Path, extra: tuple[str, ...] = ()) -> Path:
    """Write ``commit``'s ``src/`` and ``pyproject.toml`` under ``dest``, and each of ``extra``
    the commit has; return its ``src``."""
    paths = ["src", "pyproject.toml", *(p for p in extra if _has(root, commit, p))]
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", commit, *paths],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise AgainstError(
            f"git archive {commit[:10]} {' '.join(paths)} failed: "
            f"{archive.stderr.decode(errors='replace').strip()}"
        )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    src = dest / "src"
    if not (src / "consonance_sftp").is_dir():
        raise AgainstError(f"{commit[:10]} has no src/consonance_sftp package")
    return src


def dependencies(pyproject: Path) -> list[str]:
    """``[project] dependencies`` of a ``pyproject.toml``."""
    data = tomllib.loads(pyproject.read_text())
    return [str(d) for d in data.get("project", {}).get("dependencies", [])]


def unmet_requirements(requirements: list[str]) -> list[str]:
    """Each requirement the packages installed here do not satisfy, with what is installed."""
    from packaging.requirements import Requirement  # pytest's dependency, so always here

    unmet = []
    for line in requirements:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            unmet.append(f"{line} (not installed)")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            unmet.append(f"{line} (installed: {have})")
    return unmet


@dataclass(frozen=True)
class Metric:
    key: str  # the field of the benchmark's JSON line
    label: str
    higher_is_better: bool
    judged: bool = True  # counts for the verdict (a control metric only shows machine noise)


@dataclass(frozen=True)
class Row:
    metric: Metric
    rev: list[float]
    head: list[float]

    @property
    def rev_median(self) -> float:
        return statistics.median(self.rev)

    @property
    def head_median(self) -> float:
        return statistics.median(self.head)

    @property
    def ratio(self) -> float:
        return self.head_median / self.rev_median if self.rev_median else float("nan")

    @property
    def worse_by(self) -> float:
        """How much worse HEAD is than REV, as a fraction of REV (negative: better)."""
        if not self.rev_median:
            return 0.0
        diff = self.head_median - self.rev_median
        return (-diff if self.metric.higher_is_better else diff) / abs(self.rev_median)

    @property
    def noise(self) -> float:
        """The larger spread (max - min) of the two sides' rounds, as a fraction of REV."""
        if not self.rev_median:
            return 0.0
        spread = max(max(v) - min(v) for v in (self.rev, self.head))
        return spread / abs(self.rev_median)

    @property
    def no_slower(self) -> bool:
        return self.worse_by <= max(TOLERANCE, self.noise)


Runs = list[dict[str, float | None]]  # each round's JSON line


def compare(metrics: list[Metric], rev_runs: Runs, head_runs: Runs) -> list[Row]:
    """One row per metric both sides measured in every round."""
    rows = []
    for m in metrics:
        rev = [r.get(m.key) for r in rev_runs]
        head = [r.get(m.key) for r in head_runs]
        if rev and head and None not in rev and None not in head:
            rows.append(Row(m, [float(v or 0) for v in rev], [float(v or 0) for v in head]))
    return rows


def _cell(values: list[float]) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} [{min(values):.2f}-{max(values):.2f}]"


def render(rows: list[Row], rev_title: str, head_title: str) -> list[str]:
    """The table (medians, [min-max] over rounds when more than one) and the verdict line."""
    header = ("metric", rev_title, head_title, "HEAD/REV", "")
    body = [
        (
            r.metric.label,
            _cell(r.rev),
            _cell(r.head),
            f"{r.ratio:.3f}",
            ("ok" if r.no_slower else f"SLOWER by {r.worse_by:.0%}")
            if r.metric.judged
            else "(control)",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(5)]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in [header, *body]
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(verdict(rows))
    return lines


def verdict(rows: list[Row]) -> str:
    judged = [r for r in rows if r.metric.judged]
    ok = bool(judged) and all(r.no_slower for r in judged)
    noise = max((r.noise for r in judged), default=0.0)
    return (
        f"HEAD is no slower than REV: {'yes' if ok else 'no'} (threshold: within "
        f"{TOLERANCE:.0%} or noise as measured by the spread of rounds, here up to {noise:.0%})"
    )
