"""The CLI starts fast: building the command tree loads none of the heavy libraries.

Each command imports the engine (DBOS), the store (SQLAlchemy), SFTP (asyncssh), the Consonance
client (httpx) and ONIX (lxml) inside its function, when it runs. ``--version`` and ``--help``
must not pay for them (they took over 2 s on a small machine when the modules imported them).
Checked in a fresh interpreter, since this test process has imported them long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("dbos", "sqlalchemy", "asyncssh", "lxml", "httpx", "pydantic", "fastapi")

_PROBE = """
import json, sys
import consonance_sftp.cli.main as main
main._register()  # every command module, as `consonance-sftp --version` loads them
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _loaded_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded: list[str] = json.loads(out.strip().splitlines()[-1])
    return loaded


def test_building_the_cli_imports_no_heavy_library() -> None:
    assert _loaded_after(_PROBE.format(heavy=HEAVY)) == []


def test_version_runs_without_the_heavy_libraries() -> None:
    code = (
        "import json, sys\n"
        "from consonance_sftp.cli.main import main\n"
        "sys.argv = ['consonance-sftp', '--version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    assert _loaded_after(code) == []
