"""Label-free numbers of one segmented study (input and output): what drift monitoring compares.

No PHI: numbers, scanner make and model, contrast phase. Computed by the runner for every
study (``result.json`` ``features``) and compared by :mod:`medseg.quality.drift`.
"""

from __future__ import annotations

import numpy as np

HU_BINS = np.arange(-500.0, 1525.0, 25.0)
DRIFT_KEYS = ("Manufacturer", "ManufacturerModelName", "KVP", "SliceThickness", "ConvolutionKernel")


def _value(header, keyword: str):
    value = getattr(header, keyword, None) if header is not None else None
    return None if value in (None, "") else value


def study_features(volume, lesions) -> dict:
    """Input and output numbers of one study. ``volume``: HU on the source grid (headers in
    ``volume.source`` for DICOM); ``lesions``: the result's lesions (volume_ml, mean_probability,
    mean_entropy)."""
    sample = volume.array[::2, ::2, ::2]
    body = sample[sample > HU_BINS[0]]
    hist, _ = np.histogram(body, bins=HU_BINS)
    header = volume.source[0] if volume.source else None
    missing = [k for k in DRIFT_KEYS if _value(header, k) is None] if header is not None else list(DRIFT_KEYS)
    make = " / ".join(str(_value(header, k) or "?") for k in ("Manufacturer", "ManufacturerModelName"))
    phase = _value(header, "ContrastBolusAgentPhase") or ("agent given" if _value(header, "ContrastBolusAgent")
                                                          else "not recorded")
    total = sum(les.volume_ml for les in lesions)

    def weighted(attr: str) -> float | None:
        return (sum(getattr(les, attr) * les.volume_ml for les in lesions) / total) if total else None

    spacing = volume.spacing
    return {
        "hu_hist": (hist / max(1, hist.sum())).round(5).tolist(),
        "slice_thickness": float(_value(header, "SliceThickness")) if _value(header, "SliceThickness") else None,
        "spacing_z": round(spacing[0], 3),
        "spacing_xy": round(float(np.mean(spacing[1:])), 3),
        "kvp": float(_value(header, "KVP")) if _value(header, "KVP") else None,
        "scanner": make if header is not None else "(NIfTI input)",
        "contrast": str(phase),
        "missing_metadata": bool(missing),
        "missing": missing,
        "lesions": len(lesions),
        "volume_ml": round(total, 3),
        "empty": not lesions,
        "confidence": round(weighted("mean_probability"), 4) if total else None,
        "entropy": round(weighted("mean_entropy"), 4) if total else None,
    }
