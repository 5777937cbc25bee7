"""``serve`` on a terminal shows a live line while a poll reads the Consonance catalogue (the
first poll reads all of it), then one line with what it read."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from consonance_sftp.cli import service as cli_service


def test_a_catalogue_read_shows_a_live_line_then_what_it_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, highlight=False)
    monkeypatch.setattr(cli_service, "console", console)
    with cli_service._CatalogueStatus() as shown:
        shown.update("baseline", 10, 30, False)
        live = shown._status
        assert live is not None
        shown.update("baseline", 2140, 5380, False)
        assert shown._status is live  # one live line, updated in place
        console.file.flush()
        shown.update("baseline", 2140, 5380, True)
        assert shown._status is None
        shown.update("incremental", 1, 2, False)
        shown.update("incremental", 1, 2, True)  # a short poll leaves no line behind
    text = out.getvalue()
    assert "reading Consonance (baseline)" in text
    assert "Consonance baseline: 2,140 works, 5,380 products read" in text
    assert "Consonance incremental:" not in text
