"""A TLS fingerprint printed by the CLI reads as it was computed: Rich turns ':CD:' and
':AB:' into emoji unless told not to, which showed operators a fingerprint they could not
compare or paste (``partner trust``, and the error of a refused certificate)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from rich.console import Console

import consonance_sftp.cli as cli

FINGERPRINT = "SHA256:" + ":".join(["AB", "CD", "01"] * 10 + ["EF", "02"])


def _module_consoles() -> list[tuple[str, Console]]:
    """Every module-level Console of the CLI (alerts and statuses quote fingerprints too)."""
    found = []
    for info in pkgutil.iter_modules(cli.__path__):
        module = importlib.import_module(f"{cli.__name__}.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, Console):
                found.append((f"{info.name}.{name}", value))
    return found


CONSOLES = _module_consoles()


def test_the_cli_consoles_are_found() -> None:
    names = [name for name, _ in CONSOLES]
    assert "partner.console" in names and "main.err_console" in names, names


@pytest.mark.parametrize("console", [c for _, c in CONSOLES], ids=[n for n, _ in CONSOLES])
def test_a_fingerprint_prints_as_it_is(console: Console) -> None:
    with console.capture() as captured:
        console.print(f"presents a TLS certificate: {FINGERPRINT}", markup=False, soft_wrap=True)
        console.print(
            f"[bold red]error:[/bold red] certificate {FINGERPRINT}", markup=True, soft_wrap=True
        )
    text = captured.get()
    assert text.count(FINGERPRINT) == 2, text
