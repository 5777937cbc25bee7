"""The ``intake`` flow: revised files from designers, typesetters, indexers and cover artists.

Fired by its inbox: each partner's ``folder`` is polled every ``poll_interval``.

* **Which files it takes** (``take``): of one listing of a partner's inbox, every regular,
  visible file matching the flow's ``patterns`` that is not a done-marker nor one of our own
  temporary upload names (the shared decision in ``flows.inbox``); the app then waits for the
  partner to finish writing it and starts one intake workflow per file version.
* **What it does with a taken file today**: nothing more. The intake workflow stores it
  (``state_dir/inbox``, checksummed, one intake ledger row ``stored``) and applies the
  partner's post-action; the file stays stored, awaiting processing. Matching it to a
  Consonance work or product and its to-do is not built yet: it belongs in this module, as
  the flow's hand-off.
"""

from __future__ import annotations

from collections.abc import Iterable

from consonance_sftp.config.flows import IntakeFlowBase
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.flows import inbox
from consonance_sftp.flows.inbox import Taking
from consonance_sftp.ports.remote_fs import RemoteEntry


def take(
    flow: IntakeFlowBase, listing: Iterable[tuple[RemoteEntry, str]], ts: TransferSettings
) -> Taking:
    """Of one listing of (entry, kind) of a partner's inbox, the files this flow takes in and
    those it leaves alone (with why)."""
    return inbox.take(flow, listing, ts)
