"""Every command's ``--help`` says what its source says: no ``<bool>`` after a flag, and no
bracketed text (``[flows]``, ``[partners.NAME]``) eaten as markup.

The commands are walked from the real CLI tree, so a command added later is checked too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from consonance_sftp.cli.commands import register
from consonance_sftp.cli.main import app

# Typer's commands are its own (vendored) Click classes: walked by duck typing.
Command = Any


def _walk(
    command: Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Command]]:
    yield path, command
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from _walk(sub, (*path, name))


def _root() -> Command:
    if not app.registered_commands:
        register(app)
    return typer.main.get_command(app)


def _commands() -> list[tuple[tuple[str, ...], Command]]:
    return list(_walk(_root()))


def _flat(text: str) -> str:
    """Help is wrapped to the terminal: compare with all runs of whitespace made one space."""
    return " ".join(text.split())


_BRACKETED = re.compile(r"\[[^\]\s][^\]]*\]")


def _bracketed_texts(command: Command) -> list[str]:
    """Bracketed text of the help we wrote: the command's short help and each parameter's."""
    texts = [command.get_short_help_str(limit=10_000)]
    texts += [getattr(p, "help", None) or "" for p in command.params]
    return [m.group(0) for t in texts for m in _BRACKETED.finditer(t)]


def test_the_walk_finds_every_command_group() -> None:
    paths = {" ".join(p) for p, _ in _commands()}
    # A walk that found nothing would make the checks below pass on nothing.
    assert {"run", "history", "sandbox stage", "partner probe", "audit verify"} <= paths


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in _commands()])
def test_help_shows_no_bool_metavar_and_keeps_brackets(path: str) -> None:
    commands = dict((" ".join(p), c) for p, c in _commands())
    command = commands[path]
    result = CliRunner().invoke(app, [*path.split(), "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "<bool>" not in out, f"'{path} --help' shows a <bool> metavar:\n{out}"
    for text in _bracketed_texts(command):
        assert _flat(text) in _flat(out), f"'{path} --help' lost {text!r}:\n{out}"


def test_run_help_names_the_flows_table() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert "a key of [flows]" in result.output, result.output
