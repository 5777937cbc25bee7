"""Pure parts of inbox polling: poll schedules on the clock, names that go to quarantine, the
intake workflow ID, done-marker names and the local inbox layout."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from croniter import croniter
from pydantic import ValidationError

from consonance_sftp.adapters.sftp.connection import InProcessConnectionBudget
from consonance_sftp.app.intake import local_path_for
from consonance_sftp.config.flows import IntakeFlow, SalesInFlow
from consonance_sftp.engine.ids import intake_workflow_id
from consonance_sftp.engine.intake import INTAKE_WORKFLOW, name_problem, safe_local_name
from consonance_sftp.flows.inbox import marker_name, marker_regex
from consonance_sftp.ports.intake import IntakeRequest


@pytest.mark.parametrize(
    ("seconds", "cron"),
    [
        (10, "*/10 * * * * *"),
        (30, "*/30 * * * * *"),
        (60, "0 * * * * *"),
        (300, "0 */5 * * * *"),
        (1800, "0 */30 * * * *"),
        (3600, "0 0 * * * *"),
        (21600, "0 0 */6 * * *"),
        (86400, "0 0 0 * * *"),
    ],
)
def test_poll_interval_maps_onto_a_cron_with_seconds(seconds: int, cron: str) -> None:
    flow = IntakeFlow(kind="intake", partners=["p"], poll_interval=seconds)
    assert flow.poll_cron() == cron
    assert croniter.is_valid(cron, second_at_beginning=True)
    # The cron fires exactly every poll_interval, also across the wrap of its unit.
    unit = 60 if seconds < 60 else 3600 if seconds < 3600 else 86400
    it = croniter(cron, 0, second_at_beginning=True)
    ticks = [it.get_next(float) for _ in range(2 * unit // seconds + 1)]
    assert {b - a for a, b in itertools.pairwise(ticks)} == {seconds}


@pytest.mark.parametrize(
    ("seconds", "message"),
    [
        (45, "does not divide a minute"),
        (90, "whole number of minutes dividing an hour"),
        (420, "whole number of minutes dividing an hour"),
        (5400, "whole number of hours dividing a day"),
        (18000, "whole number of hours dividing a day"),
        (5, "greater than or equal to 10"),
        (172800, "less than or equal to 86400"),
    ],
)
def test_poll_intervals_off_the_clock_are_refused_clearly(seconds: int, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SalesInFlow(kind="sales_in", partners=["p"], poll_interval=seconds)


def test_patterns_choose_the_files_a_flow_takes() -> None:
    flow = SalesInFlow(kind="sales_in", partners=["p"], patterns=["*.csv", "*.xlsx"])
    assert flow.accepts("sales.csv") and flow.accepts("q3.xlsx")
    assert not flow.accepts("sales.CSV.tmp")
    assert IntakeFlow(kind="intake", partners=["p"]).accepts("anything at all.bin")
    with pytest.raises(ValidationError, match="without '/'"):
        IntakeFlow(kind="intake", partners=["p"], patterns=["sub/*.pdf"])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../../etc/passwd", "path separator"),
        ("a\\b.pdf", "path separator"),
        ("..", "'.' or '..'"),
        ("-rf", "starts with '-'"),
        (".hidden.pdf", "starts with '.'"),
        ("tab\there.pdf", "U+0009"),
        ("esc\x1b[31m.pdf", "U+001B"),
        ("rtl\u202etxt.pdf", "U+202E"),
        (" padded.pdf", "white space"),
        ("x" * 201 + ".pdf", "longer than 200 bytes"),
        ("", "empty"),
    ],
)
def test_dangerous_names_are_refused_with_a_reason(name: str, reason: str) -> None:
    problem = name_problem(name)
    assert problem is not None and reason in problem
    safe = safe_local_name(name)
    assert safe and not safe.startswith((".", "-")) and len(safe) <= 100
    assert name_problem(safe) is None


@pytest.mark.parametrize("name", ["interior.pdf", "Élan vital (v2).epub", "9780000000001_c.tif"])
def test_ordinary_names_are_kept(name: str) -> None:
    assert name_problem(name) is None


def test_the_intake_workflow_id_is_one_per_file_version() -> None:
    base = ("intake", "typesetter", "/out/a.pdf", 100, 1_700_000_000.0)
    wid = intake_workflow_id(*base)
    assert wid == intake_workflow_id(*base) and wid.startswith("ing-typesetter-")
    assert intake_workflow_id("intake", "typesetter", "/out/a.pdf", 101, 1_700_000_000.0) != wid
    assert intake_workflow_id("intake", "typesetter", "/out/a.pdf", 100, 1_700_000_001.0) != wid
    assert intake_workflow_id("sales", "typesetter", "/out/a.pdf", 100, 1_700_000_000.0) != wid


def test_the_intake_workflows_persisted_names_are_those_earlier_versions_recorded() -> None:
    """DBOS stores the workflow name and ID of every intake and recovers pending ones by them:
    renaming either (the word was "ingest" before intake had one name) would orphan the work an
    older version left pending, and make a poll fetch a file that is already being taken in.
    The expected ID is the one the previous version derived for the same file."""
    assert INTAKE_WORKFLOW == "consonance.ingest"
    wid = intake_workflow_id("intake", "typesetter", "/out/a.pdf", 100, 1_700_000_000.0)
    assert wid == "ing-typesetter-d344ba7f9f88404eb3ccf88708b5ed1216071e3d"


def test_done_markers_are_recognised_by_their_template() -> None:
    assert marker_name("{name}.done", "a.csv") == "a.csv.done"
    assert marker_name("{stem}.ok", "a.csv") == "a.ok"
    regex = marker_regex("{name}.done")
    assert regex.fullmatch("a.csv.done") and not regex.fullmatch("a.csv")
    assert marker_regex("{stem}.ok").fullmatch("a.ok")


def test_each_file_version_has_its_own_local_folder(tmp_path: Path) -> None:
    req = IntakeRequest(
        flow="intake", kind="intake", partner="p", remote_path="/out/a.pdf", size=5, mtime=0.0
    )
    newer = IntakeRequest.from_dict({**req.to_dict(), "size": 6, "mtime": 60.0})
    first = local_path_for(tmp_path, req, quarantine=False)
    assert first.parent.parent == tmp_path / "inbox" / "intake" / "p"
    assert first.name == "a.pdf" and first.parent.name.startswith("19700101T000000Z-")
    assert local_path_for(tmp_path, newer, quarantine=False).parent != first.parent
    odd = IntakeRequest.from_dict({**req.to_dict(), "remote_path": "/out/-x y.pdf"})
    kept = local_path_for(tmp_path, odd, quarantine=True)
    assert kept.parent.parent == tmp_path / "quarantine" / "intake" / "p"
    assert kept.name == "x_y.pdf"


def test_a_slot_released_on_another_event_loop_wakes_the_waiter() -> None:
    """DBOS runs downloads on its own loop while polls run on the service's: a slot given back
    there must wake a poll waiting here (an asyncio primitive would leave it waiting)."""
    budget = InProcessConnectionBudget()
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever)
    thread.start()

    def there(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, other))

    async def main() -> None:
        assert await there(budget.acquire("p", 1))
        waiter = asyncio.ensure_future(budget.acquire("p", 1))
        cancelled = asyncio.ensure_future(budget.acquire("p", 1))
        await asyncio.sleep(0.05)
        assert not waiter.done() and budget.in_use("p") == 1
        assert not await budget.acquire("p", 1, wait=False)
        cancelled.cancel()

        async def release_later() -> None:
            await asyncio.sleep(0.2)  # this loop is asleep by then
            await budget.release("p")

        # Given back over there, while nothing else would wake this loop up.
        asyncio.run_coroutine_threadsafe(release_later(), other)
        started = time.monotonic()
        assert await asyncio.wait_for(waiter, 5)
        # Woken at once, not when this loop happens to wake up for something else (here
        # the wait_for timer; in the service, nothing: it hung).
        assert time.monotonic() - started < 3.0  # the wait_for timer would be 5 s
        assert budget.in_use("p") == 1 and cancelled.cancelled()
        await budget.release("p")
        assert budget.in_use("p") == 0

    try:
        asyncio.run(main())
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(5)
        other.close()


def test_a_name_that_is_not_utf8_is_shown_escaped_and_quarantined() -> None:
    from consonance_sftp.engine.intake import name_problem, printable_path

    raw = b"/out/r\xe9sum\xe9.pdf"
    path = raw.decode("utf-8", "surrogateescape")  # as the SFTP client decodes it
    assert printable_path(path) == "/out/r\\xe9sum\\xe9.pdf"
    assert printable_path("/out/résumé.pdf") == "/out/résumé.pdf"  # UTF-8 is kept as is
    problem = name_problem(path.rsplit("/", 1)[1])
    assert problem is not None and "not valid UTF-8" in problem
    assert b"r\xe9sum\xe9.pdf".hex() in problem


@pytest.mark.parametrize(
    ("name", "note", "nfc"),
    [
        ("Cafe\u0301.pdf", "not in NFC form", "Café.pdf"),
        ("p\u0430ypal.pdf", "look-alike scripts (Cyrillic, Latin)", None),
        ("\uff46ile.pdf", "compatibility characters", None),
        ("\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac.pdf", None, None),  # Greek, .pdf
        ("\u041c\u043e\u0441\u043a\u0432\u0430-2026.pdf", None, None),  # Cyrillic, .pdf
        ("interior final (v2).pdf", None, None),
    ],
)
def test_look_alike_and_decomposed_names_get_a_note(
    name: str, note: str | None, nfc: str | None
) -> None:
    from consonance_sftp.engine.intake import name_notes

    got_note, got_nfc = name_notes(name)
    if note is None:
        assert got_note is None
    else:
        assert got_note is not None and note in got_note
    assert got_nfc == nfc
