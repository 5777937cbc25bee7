"""The CLI as a user runs it: ``init``, then ``config check`` on good and broken files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).with_name("consonance-sftp")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CSFTP_E2E_UNSET_TOKEN"}
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_init_then_check_passes(tmp_path: Path) -> None:
    init = run("init", "--dir", str(tmp_path))
    assert init.returncode == 0, init.stderr
    config = tmp_path / "consonance-sftp.toml"
    assert stat.S_IMODE((tmp_path / "keys" / "client_ed25519").stat().st_mode) == 0o600

    check = run("--config", str(config), "config", "check")
    assert check.returncode == 0, check.stderr
    assert "config ok" in check.stdout
    for partner in ("printer", "distributor", "ebook-vendor", "audio-vendor", "marketing"):
        assert f"{partner}: {partner}@127.0.0.1:2222, key auth" in check.stdout
    token = (tmp_path / "keys" / "consonance-sandbox-token").read_text().strip()
    assert token not in check.stdout + check.stderr

    again = run("init", "--dir", str(tmp_path))
    assert again.returncode != 0
    assert "would overwrite" in again.stderr
    assert str(config) in again.stderr.replace("\n", "")
    assert "Traceback" not in again.stderr


BROKEN = """
[consonance]
base_url = "http://127.0.0.1:8765"
token = { env = "CSFTP_E2E_UNSET_TOKEN" }

[partners.printer]
host = "127.0.0.1"
port = "abc"
user = "printer"
auth = { password = "hunter2-literal" }
folders = { send = "/in" }
colour = "blue"

[flows.print]
kind = "production"
partners = ["printer", "printr"]
schedule = { cron = "0 25 * * *" }
"""


def test_broken_config_reports_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text(BROKEN)
    result = run("--config", str(config), "config", "check")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    expected = {
        "consonance.token:": "CSFTP_E2E_UNSET_TOKEN",
        "partners.printer.host_keys:": "required",
        "partners.printer.port:": "abc",
        "partners.printer.auth.password:": "literal secret",
        "partners.printer.colour:": "unknown field",
        "flows.print.partners:": "printr",
        "flows.print.schedule.cron:": "cron",
    }
    flat = " ".join(output.split())
    for path, word in expected.items():
        assert path in output, f"{path} not reported:\n{output}"
        after = flat.split(path, 1)[1]
        assert word in after[:200], f"{path} lacks {word!r}"
    assert "7 problems" in flat
    assert "hunter2-literal" not in output


def test_toml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[consonance]\nbase_url = "http://x"\nport = = 3\n')
    result = run("--config", str(config), "config", "check")
    assert result.returncode == 2
    assert "line 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_docs_config_reference_matches_generator() -> None:
    from consonance_sftp.config.reference import config_reference

    result = run("docs", "config-reference")
    assert result.returncode == 0, result.stderr
    assert result.stdout == config_reference()


def test_check_reports_what_would_fail_later(tmp_path: Path) -> None:
    """A config that validates but would fail or surprise: each finding with its TOML path."""
    assert run("init", "--dir", str(tmp_path)).returncode == 0
    config = tmp_path / "consonance-sftp.toml"
    # The starter's archive flow switched on: it runs, with a shortfall `config check` notes.
    text = config.read_text().replace('kind = "archive"\nenabled = false\n', 'kind = "archive"\n')
    key = tmp_path / "keys" / "client_ed25519"
    token = tmp_path / "keys" / "consonance-sandbox-token"
    token.chmod(0o644)
    # The designer's inbox polled by a second flow with an overlapping pattern.
    text += '\n[flows.design-pdfs]\nkind = "sales_in"\npartners = ["designer"]\n'
    text += 'patterns = ["*.pdf"]\n'
    config.write_text(text)

    warned = run("--config", str(config), "config", "check")
    output = warned.stdout + warned.stderr
    assert warned.returncode == 2, output
    assert "Traceback" not in output
    flat = " ".join(output.split())
    assert "flows.design-pdfs.patterns: flow 'design-intake' polls the same folder /out" in flat
    assert "'*' overlaps '*.pdf' (both take e.g. 'a.pdf')" in flat
    # Warnings and notes come with the errors, on stdout.
    assert f"warning: consonance.token: secret file {token} is open to its group and others" in flat
    assert f"(mode 0644); only the service's user should read it: chmod 600 {token}" in flat
    assert "note: flows.nightly-archive.kind: archive: writes and delivers each run's" in flat
    assert "note: flows.design-intake.kind: intake: polls and stores" in flat

    key.unlink()
    key.mkdir()
    broken = run("--config", str(config), "config", "check")
    flat = " ".join((broken.stdout + broken.stderr).split())
    assert broken.returncode == 2
    assert "7 problems found by the checks" in flat  # six partners share the key, one overlap
    assert f"partners.printer.auth.key: {key} is a folder, not a private key file" in flat
    assert f"partners.designer.auth.key: {key} is a folder" in flat


def test_warnings_pass_unless_strict(tmp_path: Path) -> None:
    assert run("init", "--dir", str(tmp_path)).returncode == 0
    config = tmp_path / "consonance-sftp.toml"
    (tmp_path / "keys" / "client_ed25519").chmod(0o640)
    ok = run("--config", str(config), "config", "check")
    assert ok.returncode == 0, ok.stderr
    assert "config ok" in ok.stdout
    assert "warning: partners.printer.auth.key: private key" in ok.stdout
    strict = run("--config", str(config), "config", "check", "--strict")
    assert strict.returncode == 2
    assert "partners.printer.auth.key: private key" in strict.stderr
    assert "chmod 600" in strict.stderr


def test_a_mistyped_partner_or_flow_name_gets_the_closest_name(tmp_path: Path) -> None:
    """Every command that takes a partner or flow name answers a typo the same way."""
    assert run("init", "--dir", str(tmp_path)).returncode == 0
    config = str(tmp_path / "consonance-sftp.toml")
    partners = "printer, distributor, ebook-vendor, audio-vendor, marketing, designer"
    partner_typo = (
        f"no partner named 'printr'; did you mean 'printer'? (partners in {config}: {partners})"
    )
    for args in (
        ("partner", "probe", "printr"),
        ("partner", "test", "printr"),
        ("partner", "pause", "printr"),
        ("partner", "resume", "printr"),
        ("history", "--partner", "printr"),
    ):
        result = run("--config", config, *args)
        flat = " ".join(result.stderr.split())
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert partner_typo in flat, (args, flat)
        assert "hint: Partner names are the NAME of each partners.NAME table in" in flat
        assert "Traceback" not in result.stderr
    for args in (
        ("run", "print-file"),
        ("run", "print-file", "--dry-run"),
        ("flow", "pause", "print-file"),
        ("history", "--flow", "print-file"),
    ):
        result = run("--config", config, *args)
        flat = " ".join(result.stderr.split())
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "no flow named 'print-file'; did you mean 'print-files'? (flows in" in flat, args
        assert "Traceback" not in result.stderr
    # No close name: the list alone.
    far = run("--config", config, "partner", "probe", "zzz")
    assert f"no partner named 'zzz' (partners in {config}: {partners})" in " ".join(
        far.stderr.split()
    )
