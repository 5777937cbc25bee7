"""Downloading files Consonance links to: atomic, checksummed, token only to the API's origin."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from consonance_sftp.adapters.consonance.transport import GraphQLTransport
from consonance_sftp.errors import ConsonanceUnavailable
from tests.fixtures.consonance_sandbox import SandboxHandle


async def test_production_file_downloads_whole_with_its_sha256(
    consonance_sandbox: SandboxHandle, tmp_path: Path
):
    async with consonance_sandbox.client() as api:
        pf = None
        async for work in api.iter_works():
            files = [f for p in work.products for f in p.production_files]
            if files:
                pf = files[0]
                break
        assert pf is not None
        assert pf.url
        dest = tmp_path / "out" / pf.filename
        size, sha = await api.download_file(pf.url, dest)
    data = dest.read_bytes()
    assert data.startswith(b"%PDF-")
    assert size == len(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert [p.name for p in dest.parent.iterdir()] == [pf.filename]  # no .part left behind


async def test_missing_file_is_an_error_naming_the_url_and_leaves_nothing(
    consonance_sandbox: SandboxHandle, tmp_path: Path
):
    url = f"{consonance_sandbox.url}/files/no/such/file.pdf"
    async with consonance_sandbox.client() as api:
        with pytest.raises(ConsonanceUnavailable, match=r"no/such/file\.pdf"):
            await api.download_file(url, tmp_path / "x.pdf")
    assert not list(tmp_path.iterdir())


def test_api_token_goes_only_to_the_api_origin():
    transport = GraphQLTransport("https://web.consonance.app", "secret-token-123")
    assert transport.auth_headers_for("https://web.consonance.app/files/a.pdf") == {
        "Authorization": "Bearer secret-token-123"
    }
    assert transport.auth_headers_for("https://bucket.s3.amazonaws.com/a.pdf?X-Amz=1") == {}
    assert transport.auth_headers_for("http://web.consonance.app/files/a.pdf") == {}
