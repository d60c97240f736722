"""DICOM networking: receive instances into a durable spool, send results back (pynetdicom).

Imports no torch, no MONAI and nothing of medseg: what the node needs from the service it
runs in is described by the protocols in :mod:`dicom_node.ports` (where stored instances go,
the metrics, the audit recorder), and ``medseg.app`` binds them. Modules: ``config`` (the
``[node]`` settings), ``server`` (AE, association policy, TLS), ``handlers`` (C-ECHO/C-STORE
and association events, the DIMSE error boundary), ``spool`` (durable storage, UID
sanitizing), ``scu`` (C-STORE of a result), ``exceptions`` (errors with their DIMSE status).
"""

__all__ = ["config", "exceptions", "handlers", "ports", "scu", "server", "spool", "uids"]
