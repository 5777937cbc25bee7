"""SegmentJournal: the durable record of finished segments that a resume trusts."""

from __future__ import annotations

from pathlib import Path

import pytest

from consonance_sftp.adapters.sftp.segmented import (
    SegmentJournal,
    file_source_id,
    read_requests,
    segment_count,
)

MiB = 1024 * 1024


def journal(path: Path, source_id: str = "src-a", size: int = 10 * MiB) -> SegmentJournal:
    return SegmentJournal(path, file_size=size, segment_size=4 * MiB, source_id=source_id)


def test_segment_count_rounds_up_and_never_returns_zero() -> None:
    assert segment_count(10 * MiB, 4 * MiB) == 3
    assert segment_count(8 * MiB, 4 * MiB) == 2
    assert segment_count(0, 4 * MiB) == 1


def test_marks_survive_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "j" / "upload.journal"
    first = journal(path)
    assert first.done() == set()
    first.mark(0)
    first.mark(2)
    first.mark(2)  # idempotent
    # A new process (a crash, then a retry) reads the same file.
    again = journal(path)
    assert again.done() == {0, 2}
    assert path.read_text().splitlines()[1:] == ["0", "2"]


def test_changed_source_starts_an_empty_journal(tmp_path: Path) -> None:
    path = tmp_path / "upload.journal"
    journal(path, "src-a").mark(1)
    assert journal(path, "src-b").done() == set()
    # ... and the old marks are gone for good, not revived by the old source id.
    assert journal(path, "src-a").done() == set()


def test_changed_segment_size_or_file_size_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "upload.journal"
    journal(path).mark(1)
    assert (
        SegmentJournal(path, file_size=10 * MiB, segment_size=2 * MiB, source_id="src-a").done()
        == set()
    )
    journal(path).mark(1)
    assert journal(path, size=11 * MiB).done() == set()


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "upload.journal"
    j = journal(path)
    j.mark(0)
    with open(path, "ab") as fh:
        fh.write(b"2")  # a crash in the middle of the next mark: no newline yet
    assert journal(path).done() == {0}


def test_corrupt_journal_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "upload.journal"
    path.write_text("not json\n0\n")
    assert journal(path).done() == set()
    journal(path).mark(1)
    with open(path, "a") as fh:
        fh.write("garbage\n")
    assert journal(path).done() == set()


def test_mark_out_of_range_is_refused(tmp_path: Path) -> None:
    j = journal(tmp_path / "upload.journal")
    with pytest.raises(ValueError, match="out of range"):
        j.mark(3)
    with pytest.raises(ValueError, match="out of range"):
        j.mark(-1)


def test_remove_deletes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "upload.journal"
    j = journal(path)
    j.mark(0)
    j.remove()
    assert not path.exists()
    assert j.done() == set()
    j.remove()  # twice is fine


def test_file_source_id_changes_with_content_and_mtime(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"x" * 10)
    first = file_source_id(f, "abc")
    assert first == file_source_id(f, "abc")
    assert first != file_source_id(f, "abd")
    f.write_bytes(b"y" * 11)
    assert file_source_id(f, "abc") != first


def test_segment_hashes_survive_and_keep_corrects_the_journal(tmp_path: Path) -> None:
    """An upload journal holds each segment's SHA-256 (what a resume checks the server
    against); ``keep`` forgets the segments the server showed it does not hold, durably."""
    path = tmp_path / "upload.journal"
    first = journal(path)
    first.mark_hashed(0, "a" * 64)
    first.mark_hashed(1, "b" * 64)
    first.mark(2)  # a download's mark: no hash
    again = journal(path)
    assert again.hashes() == {0: "a" * 64, 1: "b" * 64, 2: None}
    again.keep({1})
    assert again.done() == {1}
    assert journal(path).hashes() == {1: "b" * 64}
    journal(path).keep(set())
    assert journal(path).done() == set()


def test_a_journal_of_bare_indexes_still_loads(tmp_path: Path) -> None:
    """Journals written before segment hashes were recorded still load: their segments have
    no hash, so a resume cannot verify them and sends them again."""
    path = tmp_path / "old.journal"
    j = journal(path)
    j.mark(0)
    j.mark(1)
    assert journal(path).hashes() == {0: None, 1: None}


def test_reads_smaller_than_writes_keep_the_same_bytes_in_flight() -> None:
    # rclone: 255 KiB writes, 32 KiB reads: 16 writes in flight are 128 reads (4 MiB either way)
    assert read_requests(16, 261_120, 32_768) == 128
    assert read_requests(32, 261_120, 261_120) == 32  # same size: unchanged
    assert read_requests(32, 32_768, 261_120) == 32  # larger reads never lower the depth
    assert read_requests(1024, 261_120, 4_096) == 1024  # within the setting's own cap
