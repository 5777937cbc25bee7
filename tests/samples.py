"""Where the third-party sample files the tests read are: ``tests/data/`` in this repository
(sources and licences in ``tests/data/README.md``)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
ONIX_SAMPLES = DATA / "onix"
SALES_SAMPLES = DATA / "sales"
EDITEUR_REFERENCE = ONIX_SAMPLES / "editeur-sample-onix3-reference.xml"
