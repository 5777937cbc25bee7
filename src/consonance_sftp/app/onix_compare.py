"""``onix compare``: the fidelity report of a produced ONIX file against its source (issue 18).

The work is ``formats.onix.compare``; this is the user interfaces' way in (they go through
app). A file that is not ONIX (3.x or 2.1), or not well-formed, raises ValidationFailed
naming it.
"""

from __future__ import annotations

from consonance_sftp.formats.onix.compare import FACETS, Comparison, compare_files

__all__ = ["FACETS", "Comparison", "compare_files"]
