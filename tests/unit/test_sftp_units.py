"""SFTP transport pieces that need no server: settings, pins, ciphers, errors, budget, naming."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncssh
import pydantic
import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.connection import (
    HostKeyPins,
    InProcessConnectionBudget,
    cpu_has_aes_ni,
    preferred_ciphers,
)
from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.sftp.throttle import TokenBucket
from consonance_sftp.adapters.sftp.translate import translate
from consonance_sftp.app.operations import apply_recommendations
from consonance_sftp.config.transfer import MAX_OPENSSH_BLOCK, TransferSettings


def test_transfer_settings_defaults_are_the_safe_choice() -> None:
    ts = TransferSettings()
    assert ts.upload_strategy.value == "auto"
    assert ts.overwrite.value == "fail"
    assert ts.set_mtime is False
    assert ts.block_size == MAX_OPENSSH_BLOCK == 261_120
    assert ts.post_action.value == "leave"


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"block_size": 262_144}, "block_size"),
        ({"surprise": 1}, "surprise"),
        ({"post_action": "move"}, "processed_folder"),
        ({"temp_prefix": "", "temp_suffix": ""}, "temporary name"),
        ({"overwrite": "sometimes"}, "overwrite"),
    ],
)
def test_transfer_settings_reject(fields: dict[str, object], fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=fragment):
        TransferSettings(**fields)  # type: ignore[arg-type]


def test_every_transfer_field_is_described() -> None:
    missing = [n for n, f in TransferSettings.model_fields.items() if not f.description]
    assert missing == []


def test_cipher_preference_follows_aes_ni(tmp_path: Path) -> None:
    with_aes = tmp_path / "aes"
    with_aes.write_text("processor: 0\nflags\t\t: fpu sse2 aes avx2\n")
    without = tmp_path / "noaes"
    without.write_text("processor: 0\nflags\t\t: fpu sse2 avx2 aesx\n")
    assert cpu_has_aes_ni(with_aes) is True
    assert cpu_has_aes_ni(without) is False
    assert preferred_ciphers(["aes256-ctr"]) == ["aes256-ctr"]
    first = preferred_ciphers()[0]
    assert first == (
        "aes128-gcm@openssh.com" if cpu_has_aes_ni() else "chacha20-poly1305@openssh.com"
    )


def test_host_key_pins_parse_every_form() -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    kind, blob = key.export_public_key().decode().split()[:2]
    fingerprint = key.get_fingerprint("sha256")
    for pin in (
        f"[sftp.example]:2222 {kind} {blob} comment",
        f"sftp.example,10.0.0.1 {kind} {blob}",
        f"{kind} {blob}",
        fingerprint,
        fingerprint.rstrip("=") + "=",
    ):
        pins = HostKeyPins.parse([pin], partner="p")
        assert pins.matches(key), pin
    other = asyncssh.generate_private_key("ssh-ed25519")
    assert not HostKeyPins.parse([fingerprint], partner="p").matches(other)
    with pytest.raises(errors.ConfigError, match="does not parse"):
        HostKeyPins.parse(["ssh-ed25519 AAAAnotbase64!!"], partner="p")
    with pytest.raises(errors.HostKeyMismatch, match="no host key is pinned"):
        HostKeyPins.parse([], partner="p")


@pytest.mark.parametrize(
    ("exc", "cls", "retryable"),
    [
        (asyncssh.SFTPNoSuchFile("gone"), errors.RemotePathNotFound, False),
        (asyncssh.SFTPPermissionDenied("no"), errors.RemotePermissionDenied, False),
        (asyncssh.SFTPFailure("No space left on device"), errors.RemoteDiskFull, False),
        (asyncssh.SFTPFailure("Disk quota exceeded"), errors.RemoteDiskFull, False),
        (asyncssh.SFTPOpUnsupported("nope"), errors.UnsupportedOperation, False),
        (asyncssh.SFTPConnectionLost("bye"), errors.ConnectionLost, True),
        (asyncssh.ConnectionLost("reset"), errors.ConnectionLost, True),
        (asyncssh.PermissionDenied("auth"), errors.AuthenticationFailed, False),
        (asyncssh.HostKeyNotVerifiable("key"), errors.HostKeyMismatch, False),
        (ConnectionRefusedError(111, "Connection refused"), errors.ConnectionLost, True),
        (TimeoutError(), errors.TransferTimeout, True),
    ],
)
def test_translate(exc: BaseException, cls: type[errors.TransportError], retryable: bool) -> None:
    out = translate(exc, partner="printer", path="/in/a.pdf")
    assert type(out) is cls
    assert out.retryable is retryable
    assert "printer" in str(out) and "/in/a.pdf" in str(out)


def test_translate_unwraps_task_groups_and_adds_the_partner() -> None:
    group = ExceptionGroup("tg", [ExceptionGroup("inner", [asyncssh.SFTPNoSuchFile("x")])])
    assert isinstance(translate(group, partner="p", path="a"), errors.RemotePathNotFound)
    bare = errors.IntegrityError("remote file ended at 10 bytes", path=".a.part")
    out = translate(bare, partner="printer")
    assert isinstance(out, errors.IntegrityError)
    assert str(out) == "remote file ended at 10 bytes (partner 'printer', .a.part)"


def _fs(tmp_path: Path, **transfer: object) -> SftpRemoteFS:
    ep = SftpEndpoint(
        partner="p",
        host="h",
        user="u",
        host_keys=("SHA256:" + "A" * 43,),
        transfer=TransferSettings(**transfer),  # type: ignore[arg-type]
    )
    return SftpRemoteFS(ep, state_dir=tmp_path)


def test_temp_names(tmp_path: Path) -> None:
    assert _fs(tmp_path).temp_name("/in/a.pdf") == "/in/.a.pdf.part"
    assert _fs(tmp_path).temp_name("a.pdf") == ".a.pdf.part"
    assert _fs(tmp_path, temp_prefix="", temp_suffix=".tmp").temp_name("/in/a") == "/in/a.tmp"
    assert _fs(tmp_path, temp_folder="/tmp").temp_name("/in/a.pdf") == "/tmp/.a.pdf.part"


async def test_budget_caps_and_wakes_waiters() -> None:
    budget = InProcessConnectionBudget()
    assert await budget.acquire("p", 2)
    assert await budget.acquire("p", 2)
    assert not await budget.acquire("p", 2, wait=False)
    assert await budget.acquire("other", 2, wait=False)  # per partner
    waiter = asyncio.create_task(budget.acquire("p", 2))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await budget.release("p")
    assert await asyncio.wait_for(waiter, 1)
    assert budget.in_use("p") == 2
    async with budget.slot("q", 1):
        assert budget.in_use("q") == 1
    assert budget.in_use("q") == 0


async def test_token_bucket_paces() -> None:
    bucket = TokenBucket(1_000_000)
    started = time.monotonic()
    for _ in range(5):
        await bucket.consume(100_000)  # 0.25 MB burst, then 0.25 MB more at 1 MB/s
    assert time.monotonic() - started >= 0.2


def test_apply_recommendations_keeps_comments(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '# top comment\n[partners.printer]\nhost = "h"  # inline comment\n'
        '\n[partners.printer.transfer]\n# keep me\noverwrite = "replace"\n'
        '\n[partners.other]\nhost = "o"\n'
    )
    apply_recommendations(config, "printer", {"upload_strategy": "rename", "set_mtime": False})
    apply_recommendations(config, "other", {"checksum": "none"})
    text = config.read_text()
    for kept in ("# top comment", "# inline comment", "# keep me", 'overwrite = "replace"'):
        assert kept in text
    assert 'upload_strategy = "rename"' in text and "set_mtime = false" in text
    assert "[partners.other.transfer]" in text and 'checksum = "none"' in text
    with pytest.raises(errors.ConfigError, match="ghost"):
        apply_recommendations(config, "ghost", {"checksum": "none"})


def test_reference_documents_every_transfer_setting() -> None:
    text = (Path(__file__).parents[2] / "docs" / "reference" / "transfer.md").read_text()
    missing = [name for name in TransferSettings.model_fields if f"| `{name}` |" not in text]
    assert missing == []


async def test_hashing_journal_hashes_in_order_as_segments_land(tmp_path: Path) -> None:
    import hashlib
    import os

    from consonance_sftp.adapters.sftp.intake import HashingJournal

    data = os.urandom(5 * 1000 + 7)
    staging = tmp_path / "staging"
    staging.write_bytes(data)
    journal = HashingJournal(tmp_path / "j", len(data), 1000, "src", staging)
    hashing = asyncio.ensure_future(asyncio.to_thread(journal.hash_in_order))
    for index in (3, 1, 0, 5, 2):
        await asyncio.to_thread(journal.mark, index)
    await asyncio.sleep(0.05)
    assert not hashing.done()  # segment 4 is still missing
    await asyncio.to_thread(journal.mark, 4)
    assert await asyncio.wait_for(hashing, 5) == hashlib.sha256(data).hexdigest()

    again = HashingJournal(tmp_path / "j2", len(data), 1000, "src", staging)
    waiting = asyncio.ensure_future(asyncio.to_thread(again.hash_in_order))
    await asyncio.to_thread(again.mark, 0)
    again.stop()
    assert await asyncio.wait_for(waiting, 5) is None
