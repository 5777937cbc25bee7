"""Where the third-party sample files the tests read are: ``tests/data/`` in this repository
(sources and licences in ``tests/data/README.md``)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
ONIX_SAMPLES = DATA / "onix"
SALES_SAMPLES = DATA / "sales"
EDITEUR_REFERENCE = ONIX_SAMPLES / "editeur-sample-onix3-reference.xml"
# Google's sample ONIX 2.1 feed (one ebook), as onixcheck bundles it.
GOOGLE_ONIX21 = ONIX_SAMPLES / "google-sample-onix21.xml"
