"""Rolling windows, confidence intervals and burn-rate SLO evaluation (pure functions)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from medseg.config import MonitoringSettings, SLOSettings
from medseg.quality import slo

NOW = dt.datetime(2026, 11, 24, 12, 0)
FN_SLO = SLOSettings(name="fn", metric="fn_rate", objective=0.15, policy="fallback")
SENS_SLO = SLOSettings(name="sens", metric="lesion_sensitivity", objective=0.90)


def review(fn=0.0, dice=0.9, lesions=1, detected=1, age_h=1.0, large=0, large_hit=0):
    return SimpleNamespace(fn_rate=fn, dice=dice, reference_lesions=lesions, detected_lesions=detected,
                           reference_lesions_ge10=large, detected_lesions_ge10=large_hit, accepted=False,
                           created_at=NOW - dt.timedelta(hours=age_h))


def status(reviews, slo_=FN_SLO, **settings):
    s = MonitoringSettings(**settings)
    long, short = slo.windows(reviews, s, NOW)
    return slo.evaluate(slo_, long, short, s)


def test_mean_interval_is_students_t():
    values = [0.1, 0.3, 0.2, 0.6, 0.4]
    e = slo.mean_ci(values, 0.95)
    lo, hi = stats.t.interval(0.95, 4, loc=np.mean(values), scale=stats.sem(values))
    assert (e.low, e.high, e.n) == (pytest.approx(lo), pytest.approx(hi), 5)


def test_mean_interval_is_clipped_to_the_metric_range():
    # the case: n = 2 Dice reviews gave [-5.3, 6.4]; n = 2 FN rates a lower bound of -0.67
    dice = slo.mean_ci([0.2, 0.9], 0.95)
    lo, hi = stats.t.interval(0.95, 1, loc=0.55, scale=stats.sem([0.2, 0.9]))
    assert lo < 0 and hi > 1  # what the raw t interval says
    assert (dice.low, dice.high) == (0.0, 1.0) and dice.value == pytest.approx(0.55)
    fn = slo.mean_ci([0.0, 0.3], 0.95)
    assert fn.low == 0.0 and 0.3 < fn.high <= 1.0
    for reviews in ([review(fn=0.05, dice=0.2), review(fn=0.3, dice=0.9)], [review(dice=0.95)] * 3):
        summary = slo.window_summary(reviews, 0.95)
        for key in ("dice_mean", "fn_rate_mean", "lesion_sensitivity"):
            e = summary[key]
            assert e["low"] is None or 0.0 <= e["low"] <= e["value"] <= e["high"] <= 1.0, (key, e)


def test_proportion_interval_is_wilson():
    e = slo.proportion_ci(18, 20, 0.95)
    # Wilson score interval by its formula
    z, p, n = stats.norm.ppf(0.975), 0.9, 20
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert e.value == 0.9 and e.low == pytest.approx(centre - half) and e.high == pytest.approx(centre + half)


def test_three_bad_reviews_never_page():
    st = status([review(fn=1.0) for _ in range(3)])
    assert not st.breached and "at least 5" in st.why
    assert st.burn_long == pytest.approx(1.0 / 0.15)


def test_breach_at_min_reviews_when_every_tumor_is_missed():
    reviews = [review(fn=1.0, age_h=i) for i in range(5)]
    assert not status(reviews[:4]).breached
    st = status(reviews)
    assert st.breached and st.long.low == 1.0 and st.burn_short == pytest.approx(1 / 0.15)


def test_one_unlucky_study_does_not_page():
    reviews = [review(fn=1.0)] + [review(fn=0.05, age_h=i + 1) for i in range(9)]
    st = status(reviews)
    assert not st.breached and "interval" in st.why


def test_noisy_but_bad_needs_more_reviews():
    fns = [0.6, 0.0, 0.5, 0.05] * 10  # mean 0.29, standard deviation 0.28: bad, but noisy
    first = next(n for n in range(5, 41) if status([review(fn=f, age_h=i) for i, f in enumerate(fns[:n])]).breached)
    assert 10 <= first <= 20  # t(n-1) * 0.28 / sqrt(n) < 0.29 - 0.15 first holds near n = 15


def test_history_alone_does_not_page_the_short_window_must_burn():
    old_bad = [review(fn=0.9, age_h=100 + i) for i in range(20)]
    recent_good = [review(fn=0.0, age_h=i) for i in range(10)]
    st = status(recent_good + old_bad)
    assert st.long.low > 0.15  # the long window still looks bad ...
    assert not st.breached and "short window" in st.why  # ... but it is not happening now


def test_window_is_bounded_by_count_and_days():
    reviews = [review(fn=1.0, age_h=24 * 40 + i) for i in range(10)]  # all older than 30 days
    st = status(reviews)
    assert st.reviews == 0 and not st.breached
    many = [review(fn=0.0, age_h=i) for i in range(80)]
    assert status(many).reviews == 50


def test_sensitivity_slo_pools_lesions():
    reviews = [review(lesions=4, detected=2, age_h=i) for i in range(6)]  # 12/24 = 0.5
    st = status(reviews, SENS_SLO)
    assert st.long.value == 0.5 and st.breached
    assert st.burn_long == pytest.approx(0.5 / 0.1)


def test_reviews_without_tumor_do_not_count_for_fn_rate():
    reviews = [review(fn=None, lesions=0, detected=0, age_h=i) for i in range(8)]
    st = status(reviews)
    assert st.long.value is None and not st.breached


def test_settings_refuse_unknown_metric_and_bad_windows():
    with pytest.raises(ValueError, match="must be one of"):
        SLOSettings(name="x", metric="accuracy", objective=0.9)
    with pytest.raises(ValueError, match="min_reviews"):
        MonitoringSettings(min_reviews=60, window_reviews=50)
    with pytest.raises(ValueError, match="greater than or equal to 3"):
        MonitoringSettings(min_reviews=2)


def test_an_objective_the_version_misses_by_its_own_validation_is_named():
    """Issue 18: the default lesion-sensitivity SLO (0.90) paged on the shipped model's genuine
    reviews; its model card says 0.53."""
    slos = (SLOSettings(name="sens", metric="lesion_sensitivity", objective=0.90),
            SLOSettings(name="sens-large", metric="lesion_sensitivity_ge10", objective=0.80),
            SLOSettings(name="dice", metric="dice", objective=0.5), FN_SLO)
    metrics = {"holdout_phantoms": {"lesion_sensitivity_all": 0.5263, "lesion_sensitivity_ge_10mm": 0.8636,
                                    "mean_dice": 0.4965}}
    missed = slo.unattainable(slos, metrics)
    assert [(m["slo"], m["validated"], m["validated_on"]) for m in missed] == [
        ("sens", 0.5263, "holdout_phantoms.lesion_sensitivity_all"), ("dice", 0.4965, "holdout_phantoms.mean_dice")]
    real = {**metrics, "holdout_real_sts": {"mean_dice": 0.71}}  # a real-CT model: Dice from its real cases
    assert [m["slo"] for m in slo.unattainable(slos, real)] == ["sens"]
    assert slo.unattainable(slos, {}) == []
