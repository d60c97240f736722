"""Choose the one series to segment, by explicit rules, and say why not the others.

Rules, in order (each configurable in :class:`SelectionRules`):

1. an explicit ``series_uid`` wins if given (and must exist);
2. hard filters: image objects only, single-frame images (multi-frame
   Enhanced CT is not decoded yet), modality in ``modalities``, slice
   orientation in ``orientations`` (by the slice normal, ±30°), at least
   ``min_slices`` instances;
3. among the eligible: ORIGINAL/PRIMARY image type first (if
   ``prefer_original_primary``), then the most slices, then the lowest
   series number (a stable tie-break).
"""

from __future__ import annotations

from dataclasses import dataclass

from medseg.core.exceptions import NoImageSeriesError, SeriesSelectionError
from medseg.core.io.rules import SelectionRules
from medseg.core.io.scan import Series


@dataclass(frozen=True)
class SeriesDecision:
    series_uid: str
    series_number: int | None
    modality: str
    instances: int
    orientation: str
    chosen: bool
    reason: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def select_series(series: list[Series], rules: SelectionRules) -> tuple[Series, list[SeriesDecision]]:
    """Return the chosen series and one decision (with its reason) per series."""
    if not series:
        raise NoImageSeriesError("no DICOM series in the input")
    reasons: dict[str, str] = {}
    if rules.series_uid is not None:
        if rules.series_uid not in {s.series_uid for s in series}:
            raise SeriesSelectionError(f"requested series {rules.series_uid} is not in the input")
        for s in series:
            if s.series_uid != rules.series_uid:
                reasons[s.series_uid] = "another series was requested explicitly"
    for s in series:
        if s.series_uid not in reasons:
            reason = ineligible_reason(s, rules)
            if reason:
                reasons[s.series_uid] = reason

    eligible = [s for s in series if s.series_uid not in reasons]
    if not eligible:
        decisions = [_decision(s, False, reasons[s.series_uid]) for s in series]
        if not any(s.is_image for s in series):
            raise NoImageSeriesError("the input holds only non-image objects (SEG, SR, RT, ...), no image series")
        detail = "; ".join(f"series {d.series_number or '?'}: {d.reason}" for d in decisions)
        raise SeriesSelectionError(f"no series passes the selection rules ({detail})")

    def rank(s: Series):
        primary = s.is_original_primary if rules.prefer_original_primary else True
        return (primary, len(s.headers), -(s.series_number or 0))

    eligible.sort(key=rank, reverse=True)
    chosen = eligible[0]
    for s in eligible[1:]:
        if rules.prefer_original_primary and chosen.is_original_primary and not s.is_original_primary:
            reasons[s.series_uid] = "not ORIGINAL/PRIMARY while an ORIGINAL/PRIMARY series exists"
        elif len(s.headers) < len(chosen.headers):
            reasons[s.series_uid] = f"fewer slices ({len(s.headers)}) than the chosen series ({len(chosen.headers)})"
        else:
            reasons[s.series_uid] = "same rank as the chosen series; lower series number wins"
    decisions = [
        _decision(s, s is chosen, "selected" if s is chosen else reasons[s.series_uid]) for s in series
    ]
    return chosen, decisions


def ineligible_reason(s: Series, rules: SelectionRules) -> str:
    if not s.is_image:
        return "not an image object (e.g. SEG, SR, RT structure set)"
    if s.modality.upper() not in rules.modalities:
        return f"modality {s.modality or 'missing'} not in {list(rules.modalities)}"
    if s.is_multiframe:
        return "multi-frame (enhanced) image objects are not supported yet"
    if s.orientation not in rules.orientations:
        return f"orientation {s.orientation} not in {list(rules.orientations)}"
    if len(s.headers) < rules.min_slices:
        what = "single slice" if len(s.headers) == 1 else f"{len(s.headers)} slices"
        return f"{what}; at least {rules.min_slices} are needed for 3-D segmentation"
    return ""


def _decision(s: Series, chosen: bool, reason: str) -> SeriesDecision:
    return SeriesDecision(s.series_uid, s.series_number, s.modality, len(s.headers), s.orientation, chosen, reason)
