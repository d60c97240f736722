"""The monitoring report: one summary (JSON for ``GET /monitoring/summary``, a table for
``medseg monitor report``) and a PNG of Dice, FN rate and lesion sensitivity over time per
model version, with the SLO objectives drawn as lines."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from audit.query import parse_time
from medseg.quality import slo
from medseg.quality.alerts import payload
from medseg.quality.monitor import QualityMonitor
from medseg.quality.states import ReviewStatus

PLOTTED = (("dice", "Dice"), ("fn_rate", "voxel FN rate"), ("lesion_sensitivity", "lesion sensitivity"))


def parse_since(text: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """The audit trail's time syntax (:func:`audit.query.parse_time`: ``7d``, ``yesterday``, ISO)."""
    return parse_time(text, now) if text else None


def model_ref(text: str | None) -> str | None:
    """NAME:VERSION (the audit trail's spelling) or NAME/VERSION -> name/version."""
    return text.replace(":", "/", 1) if text else None


def _point(r) -> dict:
    return {"review_id": r.id, "at": r.created_at.isoformat() + "Z", "study_uid": r.study_uid, "dice": r.dice,
            "fn_rate": r.fn_rate, "accepted": r.accepted,
            "lesion_sensitivity": r.detected_lesions / r.reference_lesions if r.reference_lesions else None}


def summary(monitor: QualityMonitor, model: str | None = None, since: dt.datetime | None = None) -> dict:
    settings = monitor.settings
    store = monitor.store
    models = sorted(set(store.models_reviewed()) | {f.model for f in store.features()})
    if model:
        models = [m for m in models if m == model]
    out = []
    for ref in models:
        long, statuses = monitor.slo_status(ref)
        period = list(reversed(store.reviews(model=ref, since=since)))
        horizon = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(days=settings.window_days)
        out.append({"model": ref, "window": slo.window_summary(long, settings.confidence),
                    "last_reviews": slo.window_summary(store.reviews(model=ref, limit=settings.window_reviews),
                                                       settings.confidence),
                    "last_days": slo.window_summary(store.reviews(model=ref, since=horizon), settings.confidence),
                    "period": slo.window_summary(period, settings.confidence),
                    "slos": [s.as_dict() for s in statuses],
                    "drift": [r.as_dict() for r in monitor.drift_status(ref)],
                    "reviews": [_point(r) for r in period]})
    alerts = [payload(a) for a in store.alerts() if not model or a.model in (model, model.split("/")[0], "")]
    return {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "since": since.isoformat() + "Z" if since else None,
        "settings": {"window_reviews": settings.window_reviews, "window_days": settings.window_days,
                     "short_window_reviews": settings.short_window_reviews, "min_reviews": settings.min_reviews,
                     "confidence": settings.confidence, "slos": [s.model_dump() for s in settings.slos]},
        "models": out,
        "alerts_firing": [a for a in alerts if a["state"] == "firing"],
        "alerts_recent": alerts[-20:],
        "unmatched_reviews": len(store.reviews(status=ReviewStatus.UNMATCHED)),
    }


def plot(report: dict, path: Path) -> Path:
    """Three panels over time, one line per model version, SLO objectives as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for ax, (key, title) in zip(axes, PLOTTED):
        for entry in report["models"]:
            points = [(dt.datetime.fromisoformat(p["at"][:-1]), p[key]) for p in entry["reviews"] if p[key] is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, linewidth=1, label=entry["model"])
        for s in report["settings"]["slos"]:
            if s["metric"] == key:
                ax.axhline(s["objective"], linestyle="--", color="red", linewidth=1,
                           label=f"SLO {s['name']} ({'>=' if key != 'fn_rate' else '<='} {s['objective']})")
        ax.set_ylabel(title)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    axes[0].set_title("medseg review quality per model version")
    locator = matplotlib.dates.AutoDateLocator()
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(matplotlib.dates.ConciseDateFormatter(locator))
    axes[-1].set_xlabel("review time (UTC)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
