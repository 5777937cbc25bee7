"""formats.finance.protect: age to the recipient's key (and nobody else's), AES-256 PDFs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyrage
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from fpdf import FPDF
from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError
from pyrage import ssh, x25519

from consonance_sftp.formats.finance.protect import age_encrypt, age_recipient, pdf_protect
from consonance_sftp.formats.finance.statements import StatementUnreadable, pdf_text


def ssh_ed25519_pair() -> tuple[str, bytes]:
    """A fresh ssh-ed25519 public key line and its OpenSSH private key (made per test)."""
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return public.decode() + " agent@example.org", private


@pytest.fixture
def statement(tmp_path: Path) -> Path:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    pdf.add_page()
    pdf.multi_cell(0, 6, "Royalty statement\nPayee: Zoë Doe\nContact ID: 501\nTotal 1,234.56")
    path = tmp_path / "statement_2024_501.pdf"
    pdf.output(str(path))
    return path


# --- age -------------------------------------------------------------------------------------


def test_age_x25519_decrypts_with_the_recipients_key_only(statement: Path, tmp_path: Path) -> None:
    mine, theirs = x25519.Identity.generate(), x25519.Identity.generate()
    dst = tmp_path / "out" / "statement.pdf.age"
    dst.parent.mkdir()
    age_encrypt(statement, dst, [str(mine.to_public())])
    sealed = dst.read_bytes()
    assert sealed.startswith(b"age-encryption.org/v1\n")
    assert statement.read_bytes()[:48] not in sealed  # not the PDF, not even its header
    assert pyrage.decrypt(sealed, [mine]) == statement.read_bytes()
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(sealed, [theirs])
    assert os.listdir(dst.parent) == ["statement.pdf.age"]  # no temporary file left


def test_age_ssh_ed25519_decrypts_with_the_recipients_key_only(
    statement: Path, tmp_path: Path
) -> None:
    public, private = ssh_ed25519_pair()
    _, other_private = ssh_ed25519_pair()
    dst = tmp_path / "statement.pdf.age"
    age_encrypt(statement, dst, [public])
    sealed = dst.read_bytes()
    assert pyrage.decrypt(sealed, [ssh.Identity.from_buffer(private)]) == statement.read_bytes()
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(sealed, [ssh.Identity.from_buffer(other_private)])
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(sealed, [x25519.Identity.generate()])


def test_age_several_recipients_each_decrypt(statement: Path, tmp_path: Path) -> None:
    agent, finance = x25519.Identity.generate(), x25519.Identity.generate()
    ssh_public, ssh_private = ssh_ed25519_pair()
    dst = tmp_path / "s.age"
    age_encrypt(statement, dst, [str(agent.to_public()), ssh_public, str(finance.to_public())])
    sealed = dst.read_bytes()
    for identity in (agent, finance, ssh.Identity.from_buffer(ssh_private)):
        assert pyrage.decrypt(sealed, [identity]) == statement.read_bytes()


def test_age_ssh_rsa_recipient_is_accepted() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert isinstance(age_recipient(line.decode()), ssh.Recipient)


@pytest.mark.parametrize(
    ("recipient", "words"),
    [
        ("age1notbech32", "not a valid age X25519 key"),
        ("ssh-ed25519 AAAAnot-base64", "not a valid ssh-ed25519 key"),
        ("ecdsa-sha2-nistp256 AAAAE2VjZHNh", "neither an age public key"),
        ("AGE-SECRET-KEY-1QQQQ", "neither an age public key"),
        ("", "neither an age public key"),
    ],
)
def test_age_malformed_recipient(
    recipient: str, words: str, statement: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "s.age"
    with pytest.raises(ValueError, match=re.escape(words)):
        age_encrypt(statement, dst, [str(x25519.Identity.generate().to_public()), recipient])
    assert not dst.exists()


def test_age_needs_recipients(statement: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one recipient"):
        age_encrypt(statement, tmp_path / "s.age", [])
    with pytest.raises(TypeError):
        age_encrypt(statement, tmp_path / "s.age", "age1abc")


def test_age_replaces_dst_whole(statement: Path, tmp_path: Path) -> None:
    identity = x25519.Identity.generate()
    dst = tmp_path / "s.age"
    dst.write_bytes(b"old content")
    age_encrypt(statement, dst, [str(identity.to_public())])
    assert pyrage.decrypt(dst.read_bytes(), [identity]) == statement.read_bytes()


# --- PDF password ----------------------------------------------------------------------------


def test_pdf_opens_only_with_the_password(statement: Path, tmp_path: Path) -> None:
    dst = tmp_path / "protected.pdf"
    pdf_protect(statement, dst, "correct horse battery")
    reader = PdfReader(dst)
    assert reader.is_encrypted
    assert reader.trailer["/Encrypt"]["/V"] == 5  # AES-256 (PDF 2.0 / ISO 32000-2)
    with pytest.raises(FileNotDecryptedError):
        reader.pages[0].extract_text()
    assert PdfReader(dst).decrypt("wrong password") == 0
    assert PdfReader(dst).decrypt("") == 0  # no empty user password either
    opened = PdfReader(dst)
    assert opened.decrypt("correct horse battery") != 0
    text = opened.pages[0].extract_text()
    assert "Payee: Zoë Doe" in text and "Total 1,234.56" in text
    assert text == PdfReader(statement).pages[0].extract_text()
    # The statements reader refuses it, as it must: nobody can check whose it is any more.
    with pytest.raises(StatementUnreadable, match="encrypted"):
        pdf_text(dst)


def test_pdf_owner_password_is_random(statement: Path, tmp_path: Path) -> None:
    pdf_protect(statement, tmp_path / "a.pdf", "pw")
    pdf_protect(statement, tmp_path / "b.pdf", "pw")
    a, b = PdfReader(tmp_path / "a.pdf"), PdfReader(tmp_path / "b.pdf")
    assert a.trailer["/Encrypt"]["/O"] != b.trailer["/Encrypt"]["/O"]


def test_pdf_protect_refuses_bad_input(statement: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        pdf_protect(statement, tmp_path / "x.pdf", "")
    not_pdf = tmp_path / "notes.txt"
    not_pdf.write_text("hello")
    with pytest.raises(StatementUnreadable, match=re.escape("notes.txt cannot be read")):
        pdf_protect(not_pdf, tmp_path / "x.pdf", "pw")
    pdf_protect(statement, tmp_path / "once.pdf", "pw")
    with pytest.raises(StatementUnreadable, match="already encrypted"):
        pdf_protect(tmp_path / "once.pdf", tmp_path / "twice.pdf", "pw")
    assert not (tmp_path / "x.pdf").exists() and not (tmp_path / "twice.pdf").exists()
