"""Per-partner SFTP transfer settings (upload protocol, fallbacks, timeouts, limits).

One ``TransferSettings`` sits under each partner (``[partners.NAME.transfer]``). The defaults
are the safe choice for an unknown server: temp name then rename, never setstat, verify the
content by hash (reading it back when the server offers no other way), never overwrite.
``consonance-sftp partner probe NAME`` measures what a server really supports and recommends
the fields to change; ``--apply`` writes them here.
"""

from __future__ import annotations

import enum

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

# OpenSSH's sftp-server caps one message at 256 KiB; a write block of 262,144 bytes of data
# plus the header makes it drop the connection. 255 KiB (261,120) is the largest safe block.
MAX_OPENSSH_BLOCK = 261_120


class UploadStrategy(enum.StrEnum):
    """How a finished temporary file becomes the final name."""

    AUTO = "auto"  # posix-rename when offered, else rename (delete first when the name is taken)
    POSIX_RENAME = "posix_rename"  # atomic, replaces an existing file
    RENAME = "rename"  # SFTPv3 rename; fails when the final name exists
    DELETE_RENAME = "delete_rename"  # delete the existing final file, then rename (a gap)
    DIRECT = "direct"  # no rename allowed: write under the final name; pair with a done-marker


class OverwritePolicy(enum.StrEnum):
    FAIL = "fail"
    REPLACE = "replace"
    SKIP_IF_IDENTICAL = "skip_if_identical"


class ChecksumMethod(enum.StrEnum):
    """How to prove the remote bytes equal the local ones after an upload. A file is recorded
    as sent only with a hash match, or with ``size`` configured explicitly."""

    # check-file when offered, else the hash command when allowed, else read the file back
    AUTO = "auto"
    SIZE = "size"  # size only: the ledger row says so ("none" is its older spelling)
    CHECK_FILE = "check_file"  # the SFTP 'check-file' extension
    SHELL = "shell"  # exec `shell_hash_command` (needs a shell account)
    READ_BACK = "read_back"  # download the file again and hash it (costs a second transfer)

    @classmethod
    def _missing_(cls, value: object) -> ChecksumMethod | None:
        # Config files written before "size" had its name said "none", which meant the same.
        return cls.SIZE if value == "none" else None


class PostAction(enum.StrEnum):
    """What happens to a partner's file after its local copy is durable."""

    LEAVE = "leave"
    DELETE = "delete"
    MOVE = "move"


class TransferSettings(BaseModel):
    """How files move to and from one partner."""

    model_config = ConfigDict(extra="forbid")

    # --- connection ---------------------------------------------------------------------
    connect_timeout: float = Field(
        15.0, gt=0, description="Seconds to open the TCP connection and log in."
    )
    operation_timeout: float = Field(
        120.0,
        gt=0,
        description="Seconds one SFTP request (or one block of a transfer) may take before "
        "the connection is treated as stalled and the transfer is retried.",
    )
    idle_timeout: float = Field(
        60.0,
        ge=0,
        description="Seconds an unused pooled connection stays open before it is closed.",
    )
    keepalive_interval: float = Field(
        15.0, ge=0, description="Seconds between SSH keepalives (0 turns them off)."
    )
    keepalive_count_max: int = Field(
        3, ge=1, description="Unanswered keepalives before the connection counts as lost."
    )
    ciphers: list[str] | None = Field(
        None,
        description="SSH ciphers in order of preference. Unset: AES-GCM first when the CPU has "
        "AES-NI, ChaCha20-Poly1305 first otherwise.",
    )
    # --- throughput ---------------------------------------------------------------------
    block_size: int = Field(
        MAX_OPENSSH_BLOCK,
        ge=4096,
        le=MAX_OPENSSH_BLOCK,
        description="Bytes per SFTP write request (and read request, unless read_block_size "
        "is set). 261,120 is the largest OpenSSH accepts.",
    )
    read_block_size: int | None = Field(
        None,
        ge=4096,
        le=MAX_OPENSSH_BLOCK,
        description="Bytes per SFTP read request (downloads, read-back checks) where the "
        "server answers reads with less than it takes in a write (rclone: 32 KiB). Unset: "
        "block_size. `partner probe` measures both.",
    )
    max_requests: int = Field(
        32, ge=1, le=1024, description="SFTP requests in flight per file (pipelining depth)."
    )
    segment_size: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes per segment of a large file sent over several connections at once "
        "(SFTP only; an FTP/FTPS file is one stream).",
    )
    segmented_threshold: int = Field(
        128 * 1024 * 1024,
        ge=0,
        description="Files of at least this many bytes are sent in parallel segments (SFTP only).",
    )
    segment_connections: int = Field(
        4,
        ge=1,
        description="Connections one segmented transfer uses, within the partner's "
        "max_connections (SFTP only).",
    )
    file_connections: int = Field(
        2,
        ge=1,
        description="Connections a batch of small files is spread over, within the partner's "
        "max_connections (each server-side SFTP process then works in parallel).",
    )
    channel_window: int = Field(
        8 * 1024 * 1024,
        ge=64 * 1024,
        description="SSH channel window in bytes: how much may be in flight per SFTP session. "
        "Raise it on long, fat links (round trip x bandwidth).",
    )
    file_concurrency: int = Field(
        16,
        ge=1,
        le=256,
        description="Small files in flight at once on one connection.",
    )
    bandwidth_limit: int | None = Field(
        None,
        gt=0,
        description="Bytes per second for all transfers to this partner from this process "
        "(SFTP and FTP/FTPS; uploads, downloads and read-back checks).",
    )
    # --- upload protocol ----------------------------------------------------------------
    upload_strategy: UploadStrategy = Field(
        UploadStrategy.AUTO,
        description="How the temporary file becomes the final name: auto, posix_rename, "
        "rename, delete_rename or direct (servers that forbid rename).",
    )
    temp_prefix: str = Field(".", description="Prefix of the temporary upload name.")
    temp_suffix: str = Field(".part", description="Suffix of the temporary upload name.")
    temp_folder: str | None = Field(
        None,
        description="Remote folder for temporary files (same file system as the target), "
        "instead of a temporary name next to the final one.",
    )
    overwrite: OverwritePolicy = Field(
        OverwritePolicy.FAIL,
        description="When the final name already exists: fail, replace, or "
        "skip_if_identical (same size and SHA-256).",
    )
    rename_keeps_existing: bool = Field(
        False,
        description="The server's plain rename refuses to replace an existing file, as "
        "OpenSSH's does ('partner probe' finds out, and recommends it). With overwrite = "
        "'fail' and the plain rename, a small file sent on its own or in a batch then skips "
        "the look at its final name before it is sent: the rename itself refuses an existing "
        "name, with no moment between look and rename, and the temporary file is removed. "
        "A package's files are still all looked at before any is sent (SFTP only).",
    )
    checksum: ChecksumMethod = Field(
        ChecksumMethod.AUTO,
        description="How to verify the remote bytes after upload: auto (check_file where "
        "offered, else the hash command where allow_shell for files from 1 MiB, else read_back), "
        "check_file, shell, "
        "read_back (downloads the whole file again: a second transfer of its size), or size "
        "(size only, recorded as such in the ledger; 'none' is its older name). After an "
        "interrupted upload the file is verified by hash whatever this says.",
    )
    allow_shell: bool = Field(
        False, description="The account may run commands (enables the shell checksum)."
    )
    shell_hash_command: str = Field(
        "sha256sum", description="Command run over SSH to hash a remote file (shell checksum)."
    )
    set_mtime: bool = Field(
        False,
        description="Copy the local modification time to the remote file (needs setstat; "
        "many managed servers refuse it).",
    )
    done_marker: str | None = Field(
        None,
        description="Name of a marker written after the file, e.g. '{name}.done'. Holds "
        "'<sha256>  <name>'. Placeholders: {name}, {stem}, {suffix}.",
    )
    resume: bool = Field(
        True, description="Continue an interrupted upload or download from its journal."
    )
    # --- download / intake (files taken in from the partner's inbox) ----------------------
    stable_interval: float = Field(
        5.0,
        ge=0,
        description="Seconds a file in the partner's inbox must keep its size and mtime "
        "(listed, then a stat of the file this much later) before it is taken in.",
    )
    min_age: float = Field(
        0.0,
        ge=0,
        description="Seconds since a file's mtime in the partner's inbox before it is taken in. "
        "Set it longer than a caching server's listing lag (`partner probe` measures it, and "
        "recommends a value where listings lag).",
    )
    intake_done_marker: str | None = Field(
        None,
        # The key was `inbound_done_marker` before the intake path had one name: existing
        # config files keep loading (the new name wins when both are given).
        validation_alias=AliasChoices("intake_done_marker", "inbound_done_marker"),
        description="Take a file in only once this marker exists, e.g. '{name}.done' "
        "(replaces the stability wait). The older key `inbound_done_marker` is still accepted.",
    )
    post_action: PostAction = Field(
        PostAction.LEAVE,
        description="After a file taken in is stored locally: leave, delete or move it.",
    )
    processed_folder: str | None = Field(
        None, description="Remote folder that post_action 'move' moves taken files into."
    )

    @property
    def read_block(self) -> int:
        """Bytes per SFTP read request."""
        return self.read_block_size or self.block_size

    @model_validator(mode="after")
    def _check(self) -> TransferSettings:
        if self.post_action is PostAction.MOVE and not self.processed_folder:
            raise ValueError("post_action 'move' needs processed_folder")
        has_temp_name = bool(self.temp_prefix or self.temp_suffix or self.temp_folder)
        if not has_temp_name and self.upload_strategy is not UploadStrategy.DIRECT:
            raise ValueError(
                "a temporary name needs temp_prefix, temp_suffix or temp_folder "
                "(or upload_strategy 'direct')"
            )
        return self
