"""FTP and FTPS transport (stdlib ``ftplib``) behind the RemoteFS port.

For partners who offer no SFTP: Consonance's own ONIX recipients, a distributor's sales
reports in an FTP ``OUT`` folder, wholesalers that take FTP(S) only. ``app`` builds one
``FtpRemoteFS`` per partner whose config says ``protocol = "ftps"``, ``"ftps-implicit"`` or
``"ftp"``; flows, engine and ledger see the same port as for SFTP::

    endpoint = FtpEndpoint(partner="nbni", host="ftp.example", user="pub01", password="...",
                           mode=FtpMode.EXPLICIT, tls_fingerprints=("SHA256:AB:...",))
    async with FtpRemoteFS(endpoint, state_dir=Path("var/transfers"), budget=budget) as fs:
        await fs.upload(Path("feed.xml"), "/in/feed.xml")

Modules: ``endpoint`` (connection parameters), ``client`` (ftplib with TLS session reuse,
implicit TLS, certificate pinning, error translation), ``pool`` (connections under the
budget), ``ops`` (blocking FTP operations), ``fs`` (``FtpRemoteFS``: the protocols).
"""
