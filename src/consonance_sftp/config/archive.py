"""The ``archive`` flow's restore drills (``config.flows.ArchiveFlow.drill``): how often a
random sample of archives is fetched back, decrypted, unpacked and re-hashed
(``app.archive_drill``), and when the lack of a successful drill raises an alert.

Durations are written as a number and a unit: ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"``
(minutes, hours, days, weeks), or ``"off"``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from consonance_sftp.config.profiles import StrictModel
from consonance_sftp.config.secrets import resolve_path

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
OFF = ("off", "never", "none")


def parse_duration(text: str) -> timedelta | None:
    """``"7d"`` -> 7 days; ``"off"`` -> None. A ValueError says what is accepted."""
    value = text.strip().lower()
    if value in OFF:
        return None
    match = _DURATION.match(value)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit (s, m, h, d, w), e.g. "
            "'7d' or '12h', or 'off'"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _duration(value: str) -> str:
    parse_duration(value)
    return value.strip().lower()


class ArchiveDrill(StrictModel):
    """Restore drills: whenever one is due (checked by each run of the archive flow, and by
    `serve` every 10 minutes even when the flow does not run) and on demand with
    `consonance-sftp archive drill`, a random sample of the flow's archives is fetched from
    each partner that holds a copy (else the local copy), decrypted with `identity_file`,
    unpacked and re-hashed against its manifest, and compared with the ledger (the SHA-256
    and size recorded when it was written). Each drill is on the audit trail
    (`archive.drill`); a failed drill, or none successful within `overdue_after`, raises an
    alert. See docs/how-to/archive.md."""

    every: Annotated[str, AfterValidator(_duration)] = Field(
        default="7d",
        description="How often a drill is due: a number and a unit (`s`, `m`, `h`, `d`, `w`), "
        "e.g. `7d`, or `off` (only `archive drill` runs one).",
    )
    sample_archives: int = Field(
        default=1, ge=1, description="How many archives (picked at random) each drill reads back."
    )
    sample_percent: float = Field(
        default=100.0,
        gt=0,
        le=100,
        description="Percent of each archive's files re-hashed (picked at random); the tag "
        "files, the sidecar and the ledger's hash are always checked.",
    )
    overdue_after: Annotated[str, AfterValidator(_duration)] | None = Field(
        default=None,
        description="Alert when no drill has succeeded for this long (unset: twice `every`; "
        "`off`: never).",
    )
    identity_file: Annotated[Path, AfterValidator(resolve_path)] | None = Field(
        default=None,
        description="The age identity (`age-keygen`'s file) or SSH private key that decrypts "
        "the archives. Without it an encrypted archive is checked by its sidecar and the "
        "ledger only, and the drill says so.",
    )

    @property
    def interval(self) -> timedelta | None:
        """How often a drill is due (None: off)."""
        return parse_duration(self.every)

    @property
    def overdue(self) -> timedelta | None:
        """How long without a successful drill before an alert (None: never)."""
        if self.overdue_after is not None:
            return parse_duration(self.overdue_after)
        interval = self.interval
        return None if interval is None else 2 * interval
