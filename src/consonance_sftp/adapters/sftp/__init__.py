"""SFTP transport (asyncssh) behind the RemoteFS port.

One ``SftpRemoteFS`` per partner; ``app`` builds it from the partner's config::

    from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint, AuthMethod
    from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
    from consonance_sftp.adapters.sftp.connection import InProcessConnectionBudget

    endpoint = SftpEndpoint(partner="printer", host="sftp.example", port=22, user="pub01",
                            host_keys=("SHA256:...",), auth=AuthMethod.KEY,
                            key_path=Path("keys/client_ed25519"), max_connections=4,
                            transfer=TransferSettings(...))
    budget = InProcessConnectionBudget()          # one per process, shared by every partner
    async with SftpRemoteFS(endpoint, state_dir=Path("var/transfers"), budget=budget) as fs:
        result = await fs.upload(Path("a.pdf"), "/in/a.pdf",
                                 progress=lambda done, total: ...)   # -> UploadResult
        # A package: stage every file (temporary name, verified), then publish them all.
        staged = [await fs.stage(local, remote) for local, remote in package]  # StagedFile
        for s in staged:
            await fs.publish(s.remote_path, sha256=s.sha256)         # rename, done-marker
        results = await fs.upload_many([UploadItem(local_path=..., remote_path=...), ...])
        async for entry in fs.list("/out", pattern="*.csv"):          # lazy, 10k+ entries
            stable = await fs.wait_stable(entry)                     # None: still growing
            if stable:
                await fs.download(entry.path, Path("inbox") / entry.name,
                                  expected_size=stable.size,
                                  post_action=PostAction.MOVE,
                                  before_post_action=record_in_ledger)
        async for entry in fs.walk("/out", max_depth=2): ...
        report = await fs.probe()                  # what the server supports (ProbeReport)
        await fs.send_test_file()                  # `partner test`

Guarantees (each tested against real OpenSSH and the fault-injecting server):

* never half a file under its final name: temporary name, size (and SHA-256 where the server
  allows) verified, then rename; servers that forbid rename/overwrite/setstat get the
  partner's configured ``upload_strategy``, never a silent fallback; ``stage`` and
  ``publish`` split the two halves so a package can be published only once all of it is
  staged;
* resume, don't restart: a local journal of finished segments (``segmented.SegmentJournal``)
  per transfer, under ``state_dir/journals``;
* pinned host keys only, nothing read from ``~/.ssh``, the agent or ``ssh_config``; a mismatch
  raises ``HostKeyMismatch`` before any byte of a file is sent;
* nothing lost on intake: the remote post-action runs only after the local copy is fsynced and
  renamed into place, and after the caller's ``before_post_action`` (the ledger record);
* one connection cap per partner (``ConnectionBudget``), idle connections closed after
  ``idle_timeout``; every error is a ``TransportError`` naming the partner and the path.

Modules: ``endpoint`` (connection parameters), ``connection`` (connect, host keys, ciphers,
pool, budget), ``fs`` (``SftpRemoteFS``), ``upload`` and ``intake`` (the protocols),
``base`` (their shared plumbing), ``segmented`` (parallel ranges + journal), ``checksums``,
``throttle`` (bandwidth limit), ``translate`` (errors), ``probe`` (partner probe and test).
"""
