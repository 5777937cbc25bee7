"""Which inbox files a flow takes, decided over a listing without a server: patterns, hidden
files, links and folders, our own temporary names, done-markers, ``min_age`` and stability."""

from __future__ import annotations

from consonance_sftp.config.flows import IntakeFlow
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.flows.inbox import old_enough, take, unchanged, with_done_markers
from consonance_sftp.ports.remote_fs import RemoteEntry

FOLDER = "/in"


def entry(name: str, size: int = 10, mtime: float = 1000.0) -> RemoteEntry:
    return RemoteEntry(path=f"{FOLDER}/{name}", name=name, size=size, mtime=mtime)


def names(entries: list[RemoteEntry]) -> list[str]:
    return [e.name for e in entries]


FLOW = IntakeFlow.model_validate({"kind": "intake", "partners": ["p"], "patterns": ["*.pdf"]})


def test_take_keeps_the_flows_files_and_says_why_it_leaves_the_others() -> None:
    listing = [
        (entry("a.pdf"), "file"),
        (entry(".hidden.pdf"), "file"),
        (entry("b.csv"), "file"),
        (entry("sub"), "folder"),
        (entry("link.pdf"), "symbolic link"),
        (entry(".c.pdf.part"), "file"),
    ]
    taking = take(FLOW, listing, TransferSettings())
    assert names(taking.candidates) == ["a.pdf"]
    why = {i.entry.name: (i.reason, i.noted) for i in taking.ignored}
    assert why["b.csv"] == ("not in patterns", False)
    assert why[".hidden.pdf"][1] and "hidden" in why[".hidden.pdf"][0]
    assert "folder" in why["sub"][0] and "symbolic link" in why["link.pdf"][0]
    assert why[".c.pdf.part"][1]
    assert set(taking.files) == {
        f"{FOLDER}/{n}" for n in ("a.pdf", ".hidden.pdf", "b.csv", ".c.pdf.part")
    }


def test_done_markers_go_with_their_files_and_hold_back_those_without() -> None:
    ts = TransferSettings(intake_done_marker="{name}.done")
    listing = [(entry(n), "file") for n in ("a.pdf", "a.pdf.done", "b.pdf")]
    taking = take(FLOW, listing, ts)
    assert names(taking.candidates) == ["a.pdf", "b.pdf"]  # the marker is neither taken nor noted
    assert taking.ignored == []
    ready, waiting = with_done_markers(taking.candidates, taking.files, FOLDER, "{name}.done")
    assert (names(ready), names(waiting)) == (["a.pdf"], ["b.pdf"])


def test_young_and_moving_files_wait_for_a_later_poll() -> None:
    old, young = old_enough([entry("a.pdf", mtime=100.0), entry("b.pdf", mtime=990.0)], 60, 1000.0)
    assert (names(old), names(young)) == (["a.pdf"], ["b.pdf"])
    assert names(old_enough([entry("b.pdf", mtime=990.0)], 0, 1000.0)[0]) == ["b.pdf"]
    first = [entry("a.pdf"), entry("b.pdf"), entry("c.pdf")]
    again = {e.path: e for e in [entry("a.pdf"), entry("b.pdf", size=20)]}
    stable, moving = unchanged(first, again)
    assert (names(stable), names(moving)) == (["a.pdf"], ["b.pdf", "c.pdf"])


def test_take_never_takes_our_acknowledgements_back_in() -> None:
    every = IntakeFlow.model_validate({"kind": "intake", "partners": ["p"]})  # patterns ["*"]
    listing = [
        (entry("cover.pdf"), "file"),
        (entry("cover.pdf.accepted"), "file"),
        (entry("-rf.pdf.quarantined"), "file"),
        (entry("accepted.pdf"), "file"),  # a name that merely contains the word
    ]
    taking = take(every, listing, TransferSettings())
    assert names(taking.candidates) == ["cover.pdf", "accepted.pdf"]
    assert [(i.entry.name, i.reason, i.noted) for i in taking.ignored] == [
        ("cover.pdf.accepted", "an acknowledgement we wrote", False),
        ("-rf.pdf.quarantined", "an acknowledgement we wrote", False),
    ]
