"""The operator's log: handler, level and format from ``[logging]``, and what library code may print.

* **One handler on the root logger**: standard error, or ``[logging] file`` through a
  ``WatchedFileHandler`` (logrotate may move the file: it is reopened). ``text`` is one readable line
  per record; ``json`` one object per line (python-json-logger) for a log collector.
* **Levels**: ``medseg serve`` logs at ``[logging] level`` (INFO: every audited event, see
  :func:`event_line`). The other commands log warnings and errors only, on stderr: their results
  are their output.
* **No patient data**: audited events are logged through a whitelist of fields (action, outcome,
  actor, job, model, status, reason, counts and timings; never UIDs, names, accession numbers or
  the patient pseudonym). Only medseg's own loggers follow ``[logging] level``; every library
  stays at WARNING (highdicom's INFO names SOP Instance UIDs; pynetdicom's INFO is a line per
  request and its DEBUG dumps PDUs and datasets); uvicorn's access log is off (paths carry study UIDs).
* **Library warnings** (MONAI FutureWarnings, setuptools, highdicom) never reach the user's console:
  each becomes a DEBUG record naming its category and the file and line that raised it, never its
  text (highdicom's PatientName warning quotes the name).
"""

from __future__ import annotations

import logging
import logging.handlers
import warnings

from pythonjsonlogger.json import JsonFormatter

__all__ = ["EVENT_FIELDS", "configure", "event_line", "log_event", "route_warnings"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
HANDLER_NAME = "medseg"
#: audited fields that may reach the log, in this order (identifiers of studies and patients never do)
EVENT_FIELDS = ("job_id", "model", "destination", "reason_code", "status", "peer", "count", "duplicates", "device",
                "degraded", "fallback", "duration_s", "to", "state", "attempt", "reason")
#: our loggers follow [logging] level; every other library's stays at WARNING (highdicom's INFO
#: names SOP Instance UIDs, pynetdicom's DEBUG dumps datasets)
OURS = ("medseg", "dicom_node", "audit")
#: actions an operator must see even at WARNING: the model changed under the service, or an alert
NOTABLE = ("model.rolled_back", "model.fallback_used", "model.failed", "alert.")


EVENTS = logging.getLogger("medseg.audit")
#: model changes and alerts: the only events the other commands show on their console
NOTABLE_EVENTS = logging.getLogger("medseg.audit.notable")


def configure(settings, *, serve: bool = False) -> logging.Handler:
    """Install medseg's one root handler (``settings`` is the ``[logging]`` section), replacing the
    one a previous call installed; handlers of others (a test's log capture) are left alone."""
    if settings.file is not None:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.WatchedFileHandler(settings.file, encoding="utf-8")
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(JSON_FORMAT) if settings.format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.name = HANDLER_NAME
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    level = logging.getLevelName(settings.level)
    root.setLevel(logging.WARNING)
    for name in OURS:
        logging.getLogger(name).setLevel(level if serve else max(logging.WARNING, level))
    # a command's own failure is its one-line error; of the events only model changes and alerts show
    EVENTS.setLevel(level if serve else logging.ERROR)
    NOTABLE_EVENTS.setLevel(level if serve else max(logging.WARNING, level))
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    route_warnings()
    return handler


def route_warnings() -> None:
    """Library warnings become DEBUG records of ``medseg.warnings`` (category and place, not text)."""
    logger = logging.getLogger("medseg.warnings")

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        logger.debug("%s raised at %s:%s (text withheld: it can quote header values)", category.__name__,
                     filename, lineno)

    warnings.showwarning = show


def log_event(stored) -> None:
    """One stored audit event, as one line of ``medseg.audit`` (``.notable`` for model changes and alerts)."""
    level, line = event_line(stored)
    (NOTABLE_EVENTS if stored.event.action.startswith(NOTABLE) else EVENTS).log(level, line)


def event_line(stored) -> tuple[int, str]:
    """(level, message) of one stored audit event: ``<action> <outcome> actor=<actor> seq=<n> k=v ...``
    (WARNING for failures, alerts and model changes, else INFO)."""
    event, details = stored.event, stored.event.details or {}
    parts = [event.action, event.outcome, f"actor={event.actor}", f"seq={stored.seq}"]
    for key in EVENT_FIELDS:
        value = getattr(event, key, None) if key in ("job_id", "model", "destination", "reason_code") \
            else details.get(key)
        if value not in (None, ""):
            text = str(value).replace("\n", " ")
            parts.append(f"{key}={text[:200]}")
    notable = event.outcome != "success" or event.action.startswith(NOTABLE)
    return (logging.WARNING if notable else logging.INFO), " ".join(parts)
