"""Archives (issue 17): one dated BagIt bag (RFC 8493, BagIt-Version 1.0) streamed into a tar,
optionally zstd-compressed, that standard tools read without this service (``tar -x``, then
``sha256sum -c manifest-sha256.txt`` inside the bag's folder; ``zstd -d`` / ``tar --zstd`` and
``age -d`` first when it was compressed or encrypted).

- ``bag``: the streaming writer (``BagWriter``), its ``BagSummary`` and the checksum sidecar.
- ``verify``: the streaming validator (``verify_bag``) and the restore (``extract_bag``), which
  re-hash every file and never trust the archive; ``complete_bag`` fetches an incremental bag's
  referenced files (fetch.txt) from the archives that carry them.

Pure: no network, no store; only the streams and paths handed in.
"""

from consonance_sftp.formats.archive.bag import (
    BagSummary,
    BagWriter,
    HashingWriter,
    PayloadFile,
    ReferencedFile,
    sidecar_line,
)
from consonance_sftp.formats.archive.verify import (
    BagProblem,
    BagReport,
    OpenBag,
    Referenced,
    complete_bag,
    extract_bag,
    verify_bag,
)

__all__ = [
    "BagProblem",
    "BagReport",
    "BagSummary",
    "BagWriter",
    "HashingWriter",
    "OpenBag",
    "PayloadFile",
    "Referenced",
    "ReferencedFile",
    "complete_bag",
    "extract_bag",
    "sidecar_line",
    "verify_bag",
]
