"""age encryption of a stream as it is produced (pyrage through a pipe): no plain copy on disk.

``encrypt_produced(produce, out, recipients)`` runs ``produce(sink)`` in a thread, writing the
plain bytes into a pipe that pyrage encrypts into ``out`` in the caller's thread.

Measured (512 MiB bag of incompressible files into age, 2-core VM; bench/archive.py's notes):
pyrage reads its input 8 KiB at a time, each read a call into Python. Straight from the pipe
that is one system call per 8 KiB and the pipe (64 KiB) keeps the two threads waiting on each
other: 303 MiB/s. A 1 MiB pipe and a 1 MiB read buffer in front of pyrage make those reads
memory copies: 642 MiB/s. The plain stream is handed to ``produce`` as a counting-only
``HashingWriter`` so a ``BagWriter`` writing into it does not hash bytes that are then
encrypted (the hash that matters is of the encrypted file, taken around ``out``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, TypeVar, cast

import pyrage

from consonance_sftp.formats.archive.bag import HashingWriter

T = TypeVar("T")

PIPE_BYTES = 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def encrypt_produced(
    produce: Callable[[BinaryIO], T],
    out: BinaryIO,
    recipients: Sequence[Any],
) -> T:
    """``produce(sink)``'s bytes, age-encrypted to ``recipients`` into ``out``; returns what
    ``produce`` returned. An exception in ``produce`` is raised here (the encrypted output is
    then unfinished and must be thrown away)."""
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):  # a larger pipe where the system allows it
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, PIPE_BYTES)
    made: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=0) as pipe:
                made.append(produce(cast(BinaryIO, HashingWriter(pipe, sha256=False))))
        except BaseException as exc:  # raised below, in the caller's thread
            failed.append(exc)

    producer = threading.Thread(target=run, name="archive-bag", daemon=True)
    producer.start()
    try:
        with open(read_fd, "rb", buffering=PIPE_BYTES) as pipe:
            pyrage.encrypt_io(cast(Any, pipe), cast(Any, out), list(recipients))
    finally:
        producer.join()
    if failed:
        raise failed[0]
    return made[0]
