"""C-STORE SCU: send one result file to a destination (TLS when the destination asks for it).

Retries, backoff and the delivery state live with the job table (``medseg.jobs.delivery``);
this module only performs one send and reports its outcome.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pydicom
from pynetdicom import AE

from dicom_node.config import DestinationSettings


def send_file(path: Path, dest: DestinationSettings, calling_ae: str, timeout_s: float = 30.0) -> tuple[bool, str, str]:
    """C-STORE one file. Returns (ok, status, error): status is the DIMSE status in hex or a short word."""
    ds = pydicom.dcmread(path)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    tls = None
    if dest.tls:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(dest.tls_ca) if dest.tls_ca else None)
        if dest.tls_cert:
            context.load_cert_chain(str(dest.tls_cert), str(dest.tls_key))
        tls = (context, dest.host)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls)
    if not assoc.is_established:
        reason = "association rejected" if assoc.is_rejected else "association aborted" if assoc.is_aborted else "no connection"
        return False, reason, f"{reason} by {dest.ae_title}@{dest.host}:{dest.port}"
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    if not status or "Status" not in status:
        return False, "no response", "no C-STORE response (timeout or connection lost)"
    code = int(status.Status)
    if code in (0x0000, 0xB000, 0xB007, 0xB006):  # success and the warnings that still store the object
        return True, f"0x{code:04X}", ""
    return False, f"0x{code:04X}", f"destination answered 0x{code:04X}"
