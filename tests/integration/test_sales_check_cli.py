"""``sales check`` from the command line: its JSON's stable keys, and the refusals that name the
file once and say how to fix it (no server, no engine: the file is read and nothing written)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cli import CLI
from tests.sales_reports import Row, isbn13, write_vendor_report


def test_sales_check_json_has_the_stable_keys(tmp_path: Path) -> None:
    rows = [Row(n) for n in range(10)]
    path = write_vendor_report(tmp_path / "check.csv", rows)
    done = subprocess.run(
        [*CLI, "sales", "check", str(path), "--json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in (
        "layout",
        "period_from",
        "period_to",
        "currency",
        "lines",
        "accepted",
        "rejected",
        "rejections",
        "totals",
        "reconciled",
    ):
        assert key in result, key
    assert result["layout"] == "amazon-vendor"
    assert (result["lines"], result["accepted"], result["rejected"]) == (10, 10, 0)
    assert result["currency"] == "USD"
    assert result["totals"]["USD"]["value"] == str(sum(r.amount for r in rows))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check.csv"]  # wrote nothing
    # For people: the same facts in lines; a file no layout fits is one error line, exit 1.
    text = subprocess.run(
        [*CLI, "sales", "check", str(path)], capture_output=True, text=True, timeout=60
    )
    assert text.returncode == 0, text.stderr
    assert "(amazon-vendor digital-payment)" in text.stdout
    assert "lines: 10, accepted 10, rejected 0" in text.stdout
    assert "reconciled: the file states no totals" in text.stdout
    odd = tmp_path / "odd.csv"
    odd.write_text("Book Number,Money\n9781000000002,2.00\n")
    refused = subprocess.run(
        [*CLI, "sales", "check", str(odd)], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert "odd.csv" in refused.stderr and "Book Number" in refused.stderr
    as_json = subprocess.run(
        [*CLI, "sales", "check", str(odd), "--json"], capture_output=True, text=True, timeout=60
    )
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["refused"] == "unknown-layout"


def test_sales_check_refusals_name_the_file_once_and_the_fix(tmp_path: Path) -> None:
    """A file no layout fits, a wrong layout name, `generic` without a config: one error
        naming the file once, and a hint in `sales check`'s own options (`generic` reads the config,
    and says when there is none)."""
    odd = tmp_path / "odd.csv"
    odd.write_text("Book Number,Money\n9781000000002,2.00\n")

    def refused(*args: str) -> str:
        done = subprocess.run(
            [*CLI, "sales", "check", str(odd), *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode in (1, 2), done.stdout
        assert "Traceback" not in done.stderr
        return done.stderr

    unknown = refused()
    assert unknown.count("odd.csv") == 1, unknown
    assert "--layout NAME (one of: consonance, google-play" in unknown
    assert "flows.NAME.generic" in unknown and "--layout generic --flow NAME" in unknown
    misnamed = refused("--layout", "lsi")
    assert "no layout named 'lsi'" in misnamed
    assert "--layout NAME, one of: auto, generic, consonance" in misnamed
    no_config = refused("--layout", "generic")  # the mapping is in a config: none here
    assert "consonance-sftp.toml not found" in no_config and "init" in no_config


def test_sales_check_of_a_consonance_template_without_currency_says_how_to_give_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "template.csv"
    path.write_text(
        "Product ID type,Product ID,Channel ID,Sales date,Sales quantity,Sales value\n"
        f"ISBN,{isbn13(1)},RETAIL,2026-10-05,2,15.00\n"
    )

    def check(*args: str) -> str:
        done = subprocess.run(
            [*CLI, "sales", "check", str(path), *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    without = check()
    assert "rejected line 2 (currency): no currency" in without
    assert "hint: the template's values are in the house currency" in without
    assert "--currency GBP" in without
    given = check("--currency", "GBP")
    assert "accepted 1, rejected 0" in given and "hint:" not in given
