"""Audit (auditor): search by study, model, actor, action and time through the API's own route
(the read is audited there), verify the chain, and export what a search selects (JSON lines or
DICOM ATNA messages; the export is audited as ``audit.exported``, as the CLI's)."""

from __future__ import annotations

import datetime as dt
import tempfile
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from audit.export import export as export_events
from audit.query import AuditFilter
from audit.verify import read_anchors, verify
from medseg.app.api.deps import MODEL_REF_PATTERN, UID_PATTERN, ServiceDep
from medseg.app.api.errors import Problem
from medseg.app.api.routes import audit as api
from medseg.app.api.ui.render import page
from medseg.app.api.ui.session import Auditor
from medseg.app.crosscheck import crosscheck

router = APIRouter(prefix="/ui", include_in_schema=False)
PAGE = 50
ACTION = r"^([a-z_]+(\.[a-z_]+)*(\.\*)?)?$"


def _when(text: str, name: str) -> dt.datetime | None:
    """A ``datetime-local`` field (naive = UTC), or empty."""
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise Problem(400, "Invalid filter", f"{name}: not a date and time") from None


@router.get("/audit")
def audit(request: Request, service: ServiceDep, caller: Auditor,
          study: str = Query("", pattern=f"({UID_PATTERN})|^$", max_length=64),
          model: str = Query("", pattern=f"({MODEL_REF_PATTERN})|^$"), action: str = Query("", pattern=ACTION),
          actor: str = Query("", max_length=128), outcome: Literal["", "success", "failure"] = "",
          since: str = Query("", max_length=32), until: str = Query("", max_length=32),
          offset: int = Query(0, ge=0, le=2**31 - 1), check: bool = False):
    filters = {"study": study, "model": model, "action": action, "actor": actor, "outcome": outcome,
               "since": since, "until": until}
    found = api.audit_events(service, caller, study=study or None, series=None, model=model or None,
                             action=action or None, actor=actor or None, outcome=outcome or None, job_id=None,
                             since=_when(since, "since"), until=_when(until, "until"), limit=PAGE, offset=offset)
    return page(request, "audit.html", caller, filters=filters, events=found["events"], offset=offset,
                next_offset=found["next_offset"], page_size=PAGE, verified=_verify(service) if check else None)


def _verify(service) -> dict:
    """``medseg audit verify``: the hash chain, the anchors, and the cross-check with the tables."""
    settings = service.settings
    result = verify(service.audit_log, read_anchors(service.events.anchors_file), anchor_every=settings.audit.anchor_every)
    if result.ok:
        result = crosscheck(service.context, result)
    return result.as_dict()


@router.get("/audit/export")
def export(service: ServiceDep, caller: Auditor, fmt: Literal["jsonl", "atna"] = Query("jsonl", alias="format"),
           since: str = Query("", max_length=32), until: str = Query("", max_length=32)):
    try:
        f = AuditFilter(since=api.utc_iso(_when(since, "since")), until=api.utc_iso(_when(until, "until")), limit=10_000)
    except ValueError as exc:
        raise Problem(400, "Invalid filter", str(exc).splitlines()[0]) from None
    service.events("audit.exported", actor=caller.actor, format=fmt, filter=f.describe(), door="ui")
    out = tempfile.SpooledTemporaryFile(max_size=16 * 2**20, mode="w+", encoding="utf-8")  # noqa: SIM115 - closed after the send
    export_events(service.audit_log, f, out, fmt, application_ae=service.settings.node.ae_title)
    out.seek(0)
    name = f"medseg-audit-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.{'jsonl' if fmt == 'jsonl' else 'atna.xml'}"
    return StreamingResponse(out, media_type="application/x-ndjson" if fmt == "jsonl" else "application/xml",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'},
                             background=BackgroundTask(out.close))
