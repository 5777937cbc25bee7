"""consonance-sftp: automated, traceable file exchanges between Consonance and partners' SFTP
servers.
"""

__version__ = "0.1.0"
