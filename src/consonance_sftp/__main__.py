"""Allows ``python -m consonance_sftp``."""

from consonance_sftp.cli.main import main

main()
