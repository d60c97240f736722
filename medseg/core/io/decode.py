"""Decode the selected series' pixel data to Hounsfield units.

pydicom does the decoding through its plugins: pylibjpeg-openjpeg (JPEG 2000
lossless and lossy), pyjpegls (JPEG-LS), GDCM (JPEG lossless / baseline /
extended), pylibjpeg-rle (RLE) and pydicom itself (uncompressed, deflated).
Modality LUT (RescaleSlope/Intercept) is applied by pydicom's own
``apply_modality_lut``. MONOCHROME1 is accepted: it inverts only the display,
not the modality values.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, get_decoder

from medseg.core.exceptions import DecodeError

SUPPORTED_DESCRIPTION = (
    "uncompressed (implicit/explicit VR), deflated, RLE, JPEG lossless (process 14), "
    "JPEG baseline/extended, JPEG-LS (lossless, near-lossless), JPEG 2000 (lossless, lossy)"
)


def check_transfer_syntax(uid: str) -> None:
    """Raise a DecodeError if no installed plugin can decode ``uid``."""
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        name = pydicom.uid.UID(uid).name
        raise DecodeError(
            f"TransferSyntaxUID {name}: not supported (supported: {SUPPORTED_DESCRIPTION})",
            code="decode.unsupported_transfer_syntax",
        ) from None
    if not decoder.is_available:
        raise DecodeError(
            f"TransferSyntaxUID {pydicom.uid.UID(uid).name}: no decoder plugin installed "
            f"(missing: {', '.join(decoder.missing_dependencies)})",
            code="decode.unsupported_transfer_syntax",
        )


def read_hu_slices(
    paths: Sequence[Path], headers: Sequence[Dataset], rows: int, columns: int, *, workers: int | None = None
) -> np.ndarray:
    """Decode each file (in the given order) into one float32 HU array (k, r, c)."""
    out = np.empty((len(paths), rows, columns), dtype=np.float32)

    def decode_one(k: int) -> None:
        out[k] = decode_slice(paths[k], k, rows, columns)

    for uid in {str(getattr(h.file_meta, "TransferSyntaxUID", "")) for h in headers if hasattr(h, "file_meta")}:
        if uid:
            check_transfer_syntax(uid)
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        list(pool.map(decode_one, range(len(paths))))
    return out


#: a volume of at most this many distinct whole values in [0, LABEL_MAX] is a label mask
LABEL_VALUES, LABEL_MAX = 16, 255


def check_plausible_hu(hu: np.ndarray) -> None:
    """Refuse a volume no CT of a patient can be, before any model sees it (issue 17: a blank volume
    came back as a normal "no lesion" SEG): every voxel the same value; nothing denser than air
    (99.5 % of voxels below -900 HU); nothing as light as soft tissue (99.5 % above 2000 HU: raw
    stored values without their rescale, or the wrong image); a handful of small non-negative whole
    numbers (issue 18: a NIfTI label mask given to ``segment`` was segmented as if it were CT; a CT
    in HU has hundreds of distinct values, most of them negative). Judged on a regular subsample."""
    sample = np.asarray(hu[:: max(1, hu.shape[0] // 64), ::4, ::4], dtype=np.float32)
    low, high = float(sample.min()), float(sample.max())
    if high - low < 1.0:
        raise DecodeError(f"every voxel is {low:g} HU: a blank (constant) image, nothing to segment",
                          code="decode.constant_volume")
    if low >= 0 and high <= LABEL_MAX and np.all(sample == np.round(sample)) and len(np.unique(sample)) <= LABEL_VALUES:
        raise DecodeError(f"only {len(np.unique(sample))} whole values between {low:g} and {high:g}: "
                          "a label mask, not a CT image in HU", code="decode.label_mask")
    p_low, p_high = np.percentile(sample, [0.5, 99.5])
    if p_high < -900:
        raise DecodeError("99.5 % of voxels are below -900 HU (air): no tissue in the image", code="decode.no_tissue")
    if p_low > 2000:
        raise DecodeError("99.5 % of voxels are above 2000 HU: not CT values (pixels without their rescale?)",
                          code="decode.non_physical_hu")


def decode_slice(path: Path, k: int, rows: int, columns: int) -> np.ndarray:
    """One slice in HU (its modality LUT applied), or a DecodeError naming what is wrong with it."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - parser errors of a damaged file
        raise DecodeError(f"slice {k}: file truncated or unreadable ({type(exc).__name__})", code="decode.unreadable") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise DecodeError(f"slice {k}: PixelData missing", code="decode.no_pixel_data")
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1:
        raise DecodeError(f"slice {k}: SamplesPerPixel must be 1 for CT", code="decode.not_grayscale")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - plugin errors: truncated/corrupt codestreams
        raise DecodeError(
            f"slice {k}: PixelData cannot be decoded ({ds.file_meta.TransferSyntaxUID.name}: {type(exc).__name__})",
            code="decode.corrupt_pixel_data",
        ) from None
    if pixels.shape != (rows, columns):
        raise DecodeError(f"slice {k}: pixel matrix {pixels.shape} is not {rows}x{columns}", code="decode.shape")
    slope = ds.get("RescaleSlope")
    if slope is not None and float(slope) == 0.0:
        # HU = slope x stored + intercept: a slope of 0 maps every pixel to the intercept, a blank
        # image that would be "segmented" into a normal-looking empty SEG
        raise DecodeError(f"slice {k}: RescaleSlope is 0, so every pixel would be {float(ds.get('RescaleIntercept', 0)):g} HU",
                          code="decode.rescale_slope")
    return apply_modality_lut(pixels, ds)
