"""Where the shared third-party samples are: ``shared/`` beside the repository (as CI lays it
out), or ``CONSONANCE_SFTP_SAMPLES`` when set."""

from __future__ import annotations

import os
from pathlib import Path

SAMPLES = Path(
    os.environ.get("CONSONANCE_SFTP_SAMPLES")
    or Path(__file__).resolve().parents[2] / "shared" / "samples"
)
ONIX_SAMPLES = SAMPLES / "onix"
EDITEUR_REFERENCE = ONIX_SAMPLES / "editeur-sample-onix3-reference.xml"
