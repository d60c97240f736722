"""DICOM networking: receive studies into a durable spool, assemble them, send results back.

Imports no torch/MONAI (STYLE.md #2): the node hands complete series to the job
store (:mod:`medseg.jobs.store`) and sends files it is given; the worker that segments
lives in :mod:`medseg.jobs.worker`.
"""

__all__ = ["assembly", "exceptions", "handlers", "scu", "server", "spool"]
