"""Rolling review windows, confidence intervals and burn-rate SLO evaluation (pure functions).

Windows per model version: the **long window** is the last ``window_reviews`` reviews within
``window_days``; the **short window** is its newest ``short_window_reviews``.

Intervals (``confidence``, default 95 %; computed by ``medseg.core.stats``, as ``medseg evaluate`` does):

* means of per-review numbers (Dice, voxel FN rate): Student's t interval, ``mean +- t * s / sqrt(n)``,
  clipped to the metric's range [0, 1] (for n = 2 the raw t interval of Dice 0.2 and 0.9 is
  [-4.0, 5.1]; a Dice below 0 or above 1 means nothing). Clipping moves no SLO decision: a floor
  objective in (0, 1) is breached when the *upper* end is below it, a ceiling when the *lower* end is
  above it, and neither end crosses the objective by being clipped to 0 or 1;
* lesion sensitivity: lesions pooled over the window's reviews, Wilson score interval
  (``scipy.stats.binomtest(...).proportion_ci``). Lesions of one study are not independent, so this
  interval is somewhat optimistic; the minimum-review rule below guards against small windows.

Burn rate (as in SRE error budgets): the budget of a floor objective (sensitivity >= 0.90) is
``1 - objective``, of a ceiling (FN rate <= 0.15) the objective itself; the burn rate is the
observed shortfall over the budget (1.0 = spending exactly the budget, 2.0 = twice as fast).

An SLO is **breached** (and pages) only when all of these hold:

1. the long window holds at least ``min_reviews`` reviews (3 reviews never page anyone);
2. the long window's whole confidence interval lies on the wrong side of the objective
   (a statistically confident breach, not one unlucky study);
3. the short window's burn rate is >= 1 (the problem is happening now, not only in the past).

Bound on detection (the incident test relies on it): for a version whose every review misses the
objective by a margin ``m`` with per-review standard deviation ``s``, condition 2 holds once
``t(n-1) * s / sqrt(n) < m``; with ``s = 0`` (every tumor missed) that is review ``min_reviews``.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import asdict, dataclass

from medseg.config import SLO_METRICS, MonitoringSettings, SLOSettings
from medseg.core.stats import Estimate, mean_ci, proportion_ci


def estimate(reviews, metric: str, confidence: float) -> Estimate:
    if metric == "dice":
        return mean_ci([r.dice for r in reviews if r.dice is not None], confidence)
    if metric == "fn_rate":
        return mean_ci([r.fn_rate for r in reviews if r.fn_rate is not None], confidence)
    suffix = "_ge10" if metric == "lesion_sensitivity_ge10" else ""
    return proportion_ci(sum(getattr(r, "detected_lesions" + suffix) for r in reviews),
                         sum(getattr(r, "reference_lesions" + suffix) for r in reviews), confidence)


def window_summary(reviews, confidence: float) -> dict:
    dice = [r.dice for r in reviews if r.dice is not None]
    return {
        "reviews": len(reviews),
        "accepted_as_is": sum(1 for r in reviews if r.accepted),
        "dice_mean": estimate(reviews, "dice", confidence).as_dict(),
        "dice_median": round(statistics.median(dice), 4) if dice else None,
        "fn_rate_mean": estimate(reviews, "fn_rate", confidence).as_dict(),
        "lesion_sensitivity": estimate(reviews, "lesion_sensitivity", confidence).as_dict(),
        "lesion_sensitivity_ge10": estimate(reviews, "lesion_sensitivity_ge10", confidence).as_dict(),
    }


def burn_rate(value: float | None, metric: str, objective: float) -> float | None:
    if value is None:
        return None
    if SLO_METRICS[metric] == "min":
        return (1.0 - value) / (1.0 - objective)
    return value / objective


@dataclass
class SLOStatus:
    slo: str  # the SLO's name
    metric: str
    objective: float
    direction: str  # min: the value must stay >= objective; max: <= objective
    policy: str
    long: Estimate
    short: Estimate
    reviews: int
    burn_long: float | None
    burn_short: float | None
    breached: bool
    why: str

    def as_dict(self) -> dict:
        out = asdict(self)
        out["long"], out["short"] = self.long.as_dict(), self.short.as_dict()
        for key in ("burn_long", "burn_short"):
            out[key] = round(out[key], 3) if out[key] is not None else None
        return out


def windows(reviews_newest_first, settings: MonitoringSettings, now: dt.datetime | None = None):
    """(long, short) windows from one version's reviews, newest first."""
    horizon = (now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)) - dt.timedelta(days=settings.window_days)
    long = [r for r in reviews_newest_first if r.created_at >= horizon][: settings.window_reviews]
    return long, long[: settings.short_window_reviews]


def evaluate(slo: SLOSettings, long, short, settings: MonitoringSettings) -> SLOStatus:
    direction = SLO_METRICS[slo.metric]
    est_long = estimate(long, slo.metric, settings.confidence)
    est_short = estimate(short, slo.metric, settings.confidence)
    burn_long = burn_rate(est_long.value, slo.metric, slo.objective)
    burn_short = burn_rate(est_short.value, slo.metric, slo.objective)
    wrong_side = (est_long.high is not None and est_long.high < slo.objective) if direction == "min" else \
        (est_long.low is not None and est_long.low > slo.objective)
    if len(long) < settings.min_reviews:
        why = f"{len(long)} review(s) in the window; at least {settings.min_reviews} are needed to page"
    elif est_long.value is None:
        why = "no review in the window has data for this metric"
    elif not wrong_side:
        why = "the confidence interval includes the objective (or meets it)"
    elif burn_short is None or burn_short < 1.0:
        why = "the short window is within budget (burn rate < 1)"
    else:
        bound = "upper" if direction == "min" else "lower"
        why = (f"{slo.metric} {est_long.value:.3f} over {len(long)} reviews, {bound} {settings.confidence:.0%} bound "
               f"{(est_long.high if direction == 'min' else est_long.low):.3f} misses the objective {slo.objective}; "
               f"short-window burn rate {burn_short:.1f}")
        return SLOStatus(slo.name, slo.metric, slo.objective, direction, slo.policy, est_long, est_short, len(long),
                         burn_long, burn_short, True, why)
    return SLOStatus(slo.name, slo.metric, slo.objective, direction, slo.policy, est_long, est_short, len(long),
                     burn_long, burn_short, False, why)


#: where a version's validated number of each floor metric is: real held-out cases first (a
#: real-CT model is judged on real CT), else the held-out phantoms (the phantom models)
VALIDATED = {"dice": (("holdout_real_sts", "mean_dice"), ("holdout_phantoms", "mean_dice")),
             "lesion_sensitivity": (("holdout_real_sts", "lesion_sensitivity"),
                                    ("holdout_phantoms", "lesion_sensitivity_all")),
             "lesion_sensitivity_ge10": (("holdout_real_sts", "lesion_sensitivity_ge_10mm"),
                                         ("holdout_phantoms", "lesion_sensitivity_ge_10mm"))}


def unattainable(slos, metrics: dict) -> list[dict]:
    """SLOs a model version misses by its own validation: a floor above what its held-out cases
    scored pages on the version's expected, genuine reviews (the phantom model's lesion sensitivity
    is 0.53 against a 0.90 objective). One entry per such SLO, with both numbers."""
    out = []
    for s in slos:
        if s.metric not in VALIDATED or SLO_METRICS[s.metric] != "min":
            continue
        found = [(section, key) for section, key in VALIDATED[s.metric]
                 if isinstance(metrics.get(section, {}).get(key), (int, float))]
        if not found:
            continue
        section, key = found[0]
        value = metrics[section][key]
        if isinstance(value, (int, float)) and value < s.objective:
            out.append({"slo": s.name, "metric": s.metric, "objective": s.objective, "validated": value,
                        "validated_on": f"{section}.{key}"})
    return out
