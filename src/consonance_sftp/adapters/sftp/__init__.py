"""SFTP transport (asyncssh) behind the RemoteFS port."""
