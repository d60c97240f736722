"""Interval estimates of quality metrics, shared by the review monitoring (``medseg.quality.slo``)
and by held-out evaluation (``medseg evaluate``), so that a model card and the monitoring state a
mean Dice or a sensitivity with the same interval.

* means of per-case numbers (Dice, voxel FN rate): Student's t interval, ``mean +- t * s / sqrt(n)``,
  clipped to the metric's range [0, 1] (for n = 2 the raw t interval of Dice 0.2 and 0.9 is
  [-4.0, 5.1]; a Dice below 0 or above 1 means nothing);
* proportions (lesion sensitivity): Wilson score interval (``scipy.stats.binomtest(...).proportion_ci``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

#: the confidence of the intervals ``medseg evaluate`` reports (the monitoring's is a setting)
REPORT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float | None
    high: float | None
    n: int  # reviews (means) or lesions (sensitivity) behind the value

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def interval(self) -> list[float] | None:
        """``[low, high]`` rounded as reports show it; None where one value gives no interval."""
        return None if self.low is None or self.high is None else [round(self.low, 4), round(self.high, 4)]


def mean_ci(values: list[float], confidence: float, bounds: tuple[float, float] = (0.0, 1.0)) -> Estimate:
    """Mean and Student's t interval, clipped to ``bounds`` (the metric's range)."""
    if not values:
        return Estimate(None, None, None, 0)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Estimate(mean, None, None, 1)
    from scipy import stats  # here, not at import: a second of start-up for every CLI command

    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    lo, hi = bounds
    return Estimate(mean, max(lo, mean - half), min(hi, mean + half), len(values))


def proportion_ci(successes: int, trials: int, confidence: float) -> Estimate:
    if trials == 0:
        return Estimate(None, None, None, 0)
    from scipy import stats

    ci = stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return Estimate(successes / trials, float(ci.low), float(ci.high), trials)
