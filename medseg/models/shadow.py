"""Shadow mode: a candidate version runs on live studies after the active one; its results are
stored (results/<job>/shadow-<version>/) and compared, never sent. ``medseg models compare``
reports the agreement, to decide a promotion on evidence."""

from __future__ import annotations

import statistics

from sqlalchemy import select
from sqlalchemy.engine import Engine

from audit.recorder import Recorder
from medseg.db import session
from medseg.models.orm import ShadowResult


class ShadowStore:
    def __init__(self, engine: Engine, audit: Recorder) -> None:
        self.engine, self.audit = engine, audit

    def add(self, row: ShadowResult) -> None:
        with session(self.engine) as s, s.begin():
            s.add(row)
            s.flush()
            self.audit("model.shadow_run", connection=s.connection(), outcome="failure" if row.error else "success",
                       job_id=row.job_id, study_uid=row.study_uid, model=row.candidate, active=row.active,
                       dice=row.dice, reason=row.error or None)

    def compare(self, candidate: str) -> dict:
        with session(self.engine) as s:
            rows = list(s.scalars(select(ShadowResult).where(ShadowResult.candidate == candidate)))
        ok = [r for r in rows if not r.error]
        if not ok:
            return {"candidate": candidate, "studies": 0, "failures": len(rows)}
        dice = [r.dice for r in ok if r.dice is not None]
        return {
            "candidate": candidate, "active": sorted({r.active for r in ok}), "studies": len(ok), "failures": len(rows) - len(ok),
            "dice_mean": round(statistics.fmean(dice), 4), "dice_median": round(statistics.median(dice), 4),
            "dice_min": round(min(dice), 4),
            "lesion_count_equal": sum(r.lesions_active == r.lesions_candidate for r in ok),
            "lesion_count_diff_mean": round(statistics.fmean(r.lesions_candidate - r.lesions_active for r in ok), 3),
            "volume_diff_ml_mean": round(statistics.fmean(r.volume_candidate_ml - r.volume_active_ml for r in ok), 3),
            "volume_abs_diff_ml_max": round(max(abs(r.volume_candidate_ml - r.volume_active_ml) for r in ok), 3),
            "latency_ratio_median": round(statistics.median(r.seconds_candidate / max(r.seconds_active, 1e-6) for r in ok), 3),
        }
