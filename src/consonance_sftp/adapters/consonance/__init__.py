"""Consonance GraphQL client (httpx) behind the ConsonanceAPI port.

``ConsonanceClient`` is the entry point; GraphQL documents live in ``documents/`` as
``.graphql`` files, results are mapped to domain models in ``mapping``, and the guessed
mutation shape is isolated in ``mutations`` (see docs/reference/consonance.md).
"""

from consonance_sftp.adapters.consonance.client import ConsonanceClient
from consonance_sftp.adapters.consonance.transport import RequestStats, RetryPolicy

__all__ = ["ConsonanceClient", "RequestStats", "RetryPolicy"]
