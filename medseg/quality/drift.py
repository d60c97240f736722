"""Label-free monitors: input and output drift against a baseline window (ground truth may never come).

Per segmented study the worker records :func:`study_features` (no PHI: numbers, scanner make/model).
The **baseline** is the first ``drift_baseline`` studies, the **current window** the latest
``drift_window`` studies after the baseline; a monitor is evaluated once the current window holds
at least ``MIN_CURRENT`` studies. Input monitors pool every version of a model (the scans do not
depend on the model); output monitors compare one version with its own baseline.

| monitor | statistic | drifts when |
|---|---|---|
| input.hu_histogram (HU inside the body, > -500 HU, 25 HU bins) | Jensen-Shannon distance of the mean histograms (base 2, 0..1) | > 0.10 |
| input.slice_thickness, input.spacing_z, input.spacing_xy, input.kvp | two-sample Kolmogorov-Smirnov D | p < 0.01 and D >= 0.30 |
| input.scanner (manufacturer / model), input.contrast (phase or agent) | population stability index | >= 0.25 |
| input.missing_metadata (any of the DRIFT_KEYS absent) | Fisher's exact test on the rates | p < 0.01 and the rate moved >= 0.10 |
| output.lesions_per_study, output.tumor_volume_ml, output.confidence, output.entropy | KS as above | p < 0.01 and D >= 0.30 |
| output.empty_rate (no lesion found) | Fisher's exact test | p < 0.01 and the rate moved >= 0.10 |

The thresholds are the conventional ones of each statistic (PSI 0.25 = "significant shift"; a KS
effect size of 0.3 keeps large windows from alerting on trivial shifts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# scipy.stats and scipy.spatial are imported where a drift test runs: they take over a second to
# import, and every CLI command that opens the monitor (e.g. `review submit`) would pay for it

MIN_CURRENT = 10
KS_P, KS_D, PSI, JS, RATE_P, RATE_DELTA = 0.01, 0.30, 0.25, 0.10, 0.01, 0.10

#: monitor name -> (statistic kind, feature key)
MONITORS = {
    "input.hu_histogram": ("histogram", "hu_hist"),
    "input.slice_thickness": ("numeric", "slice_thickness"),
    "input.spacing_z": ("numeric", "spacing_z"),
    "input.spacing_xy": ("numeric", "spacing_xy"),
    "input.kvp": ("numeric", "kvp"),
    "input.scanner": ("categorical", "scanner"),
    "input.contrast": ("categorical", "contrast"),
    "input.missing_metadata": ("rate", "missing_metadata"),
    "output.lesions_per_study": ("numeric", "lesions"),
    "output.tumor_volume_ml": ("numeric", "volume_ml"),
    "output.empty_rate": ("rate", "empty"),
    "output.confidence": ("numeric", "confidence"),
    "output.entropy": ("numeric", "entropy"),
}


@dataclass
class DriftResult:
    monitor: str
    statistic: str
    value: float | None
    threshold: float
    p_value: float | None
    drifted: bool
    baseline_n: int
    current_n: int
    note: str = ""

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _psi(base: list[str], cur: list[str]) -> float:
    cats = sorted(set(base) | set(cur))
    b = np.array([base.count(c) for c in cats], float) / len(base)
    c = np.array([cur.count(c) for c in cats], float) / len(cur)
    b, c = np.clip(b, 1e-4, None), np.clip(c, 1e-4, None)
    return float(np.sum((c - b) * np.log(c / b)))


def compare(monitor: str, baseline: list[dict], current: list[dict]) -> DriftResult:
    kind, key = MONITORS[monitor]
    base = [f.get(key) for f in baseline if f.get(key) is not None]
    cur = [f.get(key) for f in current if f.get(key) is not None]
    r = DriftResult(monitor, {"histogram": "jensen-shannon", "numeric": "ks-d", "categorical": "psi",
                              "rate": "rate-delta"}[kind], None,
                    {"histogram": JS, "numeric": KS_D, "categorical": PSI, "rate": RATE_DELTA}[kind], None, False,
                    len(base), len(cur))
    if len(cur) < MIN_CURRENT or len(base) < MIN_CURRENT:
        r.note = f"not enough studies with this value (baseline {len(base)}, current {len(cur)}; {MIN_CURRENT} needed)"
        return r
    if kind == "histogram":
        from scipy.spatial.distance import jensenshannon

        r.value = float(jensenshannon(np.mean(base, 0), np.mean(cur, 0), base=2))
        r.drifted = r.value > JS
    elif kind == "numeric":
        from scipy import stats

        test = stats.ks_2samp(base, cur)
        r.value, r.p_value = float(test.statistic), float(test.pvalue)
        r.drifted = r.p_value < KS_P and r.value >= KS_D
    elif kind == "categorical":
        r.value = _psi([str(v) for v in base], [str(v) for v in cur])
        r.drifted = r.value >= PSI
    else:
        kb, kc = sum(map(bool, base)), sum(map(bool, cur))
        r.value = kc / len(cur) - kb / len(base)
        from scipy import stats

        r.p_value = float(stats.fisher_exact([[kb, len(base) - kb], [kc, len(cur) - kc]]).pvalue)
        r.drifted = r.p_value < RATE_P and abs(r.value) >= RATE_DELTA
    return r


def split(rows: list[dict], baseline_n: int, window_n: int) -> tuple[list[dict], list[dict]]:
    """(baseline, current) from feature rows oldest first."""
    return rows[:baseline_n], rows[baseline_n:][-window_n:]


def evaluate(input_rows: list[dict], output_rows: list[dict], baseline_n: int, window_n: int) -> list[DriftResult]:
    results = []
    for monitor in MONITORS:
        rows = input_rows if monitor.startswith("input.") else output_rows
        results.append(compare(monitor, *split(rows, baseline_n, window_n)))
    return results
