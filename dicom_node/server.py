"""Bootstrap of the SCP: AE, presentation contexts, association policy, TLS (handlers: ``handlers``).

Association policy:

* calling AE titles: ``allowed_calling_aets`` (pynetdicom's ``require_calling_aet``):
  others get A-ASSOCIATE-RJ (permanent, calling AE not recognized) and an audit event;
* called AE title: ``require_called_aet`` (on by default): an association addressed to another AE
  title gets A-ASSOCIATE-RJ (permanent, called AE not recognized) and an audit event naming it;
* peer addresses: a connection from an address not in ``allowed_addresses`` is closed before
  any PDU is read (what a firewall would do) and audited;
* TLS: the handshake runs in the connection's own thread with ``handshake_timeout_s``.
  pynetdicom wraps the socket in its accept loop, so one peer that opens TCP and never
  finishes the handshake would stall every other association; :class:`NodeServer` moves it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable

from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    EnhancedPETImageStorage,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    SegmentationStorage,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node import handlers
from dicom_node.config import NodeSettings, TLSSettings
from dicom_node.gate import AuditGate
from dicom_node.ports import NodeMetrics, Pseudonymizer, Recorder, SeriesSink
from dicom_node.spool import Spool

log = logging.getLogger(__name__)

STORAGE_CLASSES = (
    CTImageStorage, EnhancedCTImageStorage, MRImageStorage, EnhancedMRImageStorage,
    PositronEmissionTomographyImageStorage, EnhancedPETImageStorage, SegmentationStorage,
)
#: every transfer syntax the segmentation core decodes (README "Transfer syntaxes")
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",     # Explicit VR Little Endian
    "1.2.840.10008.1.2",       # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.70",  # JPEG lossless, first-order prediction (process 14 SV1)
    "1.2.840.10008.1.2.4.57",  # JPEG lossless (process 14)
    "1.2.840.10008.1.2.5",     # RLE lossless
)


class NodeServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the peer-address check and the TLS handshake per thread."""

    def __init__(self, *args, policy: NodeSettings, record: Recorder, **kwargs) -> None:
        self.policy, self.record = policy, record
        self._tls = kwargs.pop("tls_context", None)
        super().__init__(*args, **kwargs)

    def get_request(self):
        client, address = self.socket.accept()  # no TLS here: the accept loop must never wait on a peer
        return client, address

    def process_request_thread(self, request, client_address) -> None:
        peer = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        if self.policy.allowed_addresses and peer not in self.policy.allowed_addresses:
            self.record("dicom.connection.refused", outcome="failure", actor="", peer=peer,
                        reason="peer address not allowed")
            self.shutdown_request(request)
            return
        if self._tls is not None:
            try:
                request.settimeout(self.policy.tls.handshake_timeout_s)
                request = self._tls.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (OSError, ssl.SSLError) as exc:
                reason = "handshake timed out" if isinstance(exc, socket.timeout) else f"TLS handshake failed ({type(exc).__name__})"
                self.record("dicom.tls.handshake_failed", outcome="failure", actor="", peer=peer, reason=reason)
                _close(request)
                return
        super().process_request_thread(request, client_address)


def _close(sock) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def tls_context(tls: TLSSettings) -> ssl.SSLContext | None:
    if not tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca) if tls.ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert), str(tls.key))
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_NONE
    return context


class NodeAE(AE):
    """An AE whose association limit counts only peers that sent an A-ASSOCIATE-RQ.

    pynetdicom counts every acceptor thread, so TCP connections that never request an
    association would hold all ``max_associations`` slots until their ACSE timeout and turn
    real PACS away with "local limit exceeded". Such connections still time out and close.
    """

    @property
    def active_associations(self):
        return [a for a in super().active_associations if not a.is_acceptor or a.requestor.primitive is not None]


def build_ae(settings: NodeSettings) -> AE:
    _config.LOG_REQUEST_IDENTIFIERS = False  # pynetdicom logs C-FIND/MOVE identifiers (names) otherwise
    _config.LOG_RESPONSE_IDENTIFIERS = False
    ae = NodeAE(ae_title=settings.ae_title)
    ae.maximum_associations = settings.max_associations
    ae.maximum_pdu_size = settings.max_pdu
    ae.acse_timeout = settings.acse_timeout_s
    ae.dimse_timeout = settings.dimse_timeout_s
    ae.network_timeout = settings.network_timeout_s
    ae.require_calling_aet = list(settings.allowed_calling_aets)
    ae.require_called_aet = settings.require_called_aet
    ae.add_supported_context(Verification)
    for sop_class in STORAGE_CLASSES:
        ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
    return ae


class Node:
    """The running SCP: ``start()`` listens (non-blocking), ``stop()`` closes."""

    def __init__(self, settings: NodeSettings, spool: Spool, assembly: SeriesSink, record: Recorder,
                 metrics: NodeMetrics, pseudonymize: Pseudonymizer,
                 refuse: Callable[[], str | None] | None = None) -> None:
        self.settings, self.spool, self.assembly, self.metrics = settings, spool, assembly, metrics
        self.record = AuditGate(record)  # every event of the node; closed while the trail cannot be written
        self.refuse = refuse or (lambda: None)  # the service's "cannot continue": refuse new instances
        self.pseudonymize = pseudonymize
        self.ae = build_ae(settings)
        self.server: NodeServer | None = None
        self.tally = handlers.AssociationTally()

    def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        bound = (self.spool, self.assembly, self.tally, self.record, self.metrics, self.pseudonymize, self.refuse)
        evt_handlers = [
            (evt.EVT_C_ECHO, handlers.handle_echo),
            (evt.EVT_C_STORE, handlers.handle_store, list(bound)),
            (evt.EVT_ACCEPTED, handlers.handle_accepted, [self.record, self.metrics]),
            (evt.EVT_REJECTED, handlers.handle_rejected, [self.record, self.metrics, self.settings]),
            (evt.EVT_RELEASED, handlers.handle_ended, [self.tally, self.record, self.assembly, self.settings.hold_aborted]),
            (evt.EVT_ABORTED, handlers.handle_ended, [self.tally, self.record, self.assembly, self.settings.hold_aborted]),
        ]
        self.server = self.ae.make_server(
            (self.settings.host, self.settings.port), evt_handlers=evt_handlers, server_class=NodeServer,
            policy=self.settings, record=self.record, tls_context=tls_context(self.settings.tls),
        )
        thread = threading.Thread(target=self.server.serve_forever, name="medseg-scp", daemon=True)
        thread.start()
        self.ae._servers.append(self.server)
        return self.server.server_address[1]

    @property
    def listening(self) -> bool:
        return self.server is not None and self.server.socket is not None and self.server.socket.fileno() >= 0

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
