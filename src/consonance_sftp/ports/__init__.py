"""Ports: the Protocols for everything with I/O. Flows and the engine see only these.

One module per port: ``consonance`` (ConsonanceAPI), ``remote_fs`` (RemoteFS), ``store``
(Store), ``clock`` (Clock). Adapters implement them; ``app`` wires adapters to ports.
"""
