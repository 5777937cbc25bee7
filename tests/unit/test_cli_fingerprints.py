"""A TLS fingerprint printed by the CLI reads as it was computed: Rich turns ':CD:' and
':AB:' into emoji unless told not to, which showed operators a fingerprint they could not
compare or paste (``partner trust``, and the error of a refused certificate)."""

from __future__ import annotations

import pytest

from consonance_sftp.cli import main, partner

FINGERPRINT = "SHA256:" + ":".join(["AB", "CD", "01"] * 10 + ["EF", "02"])


@pytest.mark.parametrize("console", [partner.console, main.err_console])
def test_a_fingerprint_prints_as_it_is(console) -> None:  # type: ignore[no-untyped-def]
    with console.capture() as captured:
        console.print(f"presents a TLS certificate: {FINGERPRINT}", markup=False)
        console.print(f"[bold red]error:[/bold red] certificate {FINGERPRINT}", markup=True)
    text = captured.get()
    assert text.count(FINGERPRINT) == 2, text
