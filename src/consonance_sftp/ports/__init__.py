"""Ports: the Protocols for everything with I/O. Flows and the engine see only these.

One module per port: ``consonance`` (ConsonanceAPI), ``remote_fs`` (RemoteFS), ``store``
(Store), ``snapshots`` (SnapshotStore), ``clock`` (Clock), and ``delivery``: what the engine's
delivery workflow needs (DeliveryTransport, DeliveryLedger and its DeliveryRecord rows,
AlertSink, Fence). Adapters implement them; ``app`` wires adapters to ports.
"""
