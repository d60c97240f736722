"""The configurable rules of reading a study, as plain settings values (pydantic only: ``medseg.config``
imports them, and every command imports ``medseg.config``, so nothing heavier belongs here).

:func:`medseg.core.io.geometry.sort_and_check` applies :class:`GeometryTolerances`;
:func:`medseg.core.io.selection.select_series` applies :class:`SelectionRules`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GeometryTolerances(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: max absolute difference between direction cosines of two slices
    orientation: float = Field(default=1e-3, gt=0)
    #: max deviation of a slice gap from the median gap, relative to the median
    slice_spacing: float = Field(default=0.02, gt=0, lt=0.5)
    #: max angle (degrees) between the slice stacking direction and the slice normal
    tilt_degrees: float = Field(default=0.5, gt=0)
    #: max difference in PixelSpacing (mm) between slices
    pixel_spacing_mm: float = Field(default=1e-3, gt=0)


class SelectionRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    modalities: tuple[str, ...] = ("CT",)
    orientations: tuple[str, ...] = ("AXIAL",)
    prefer_original_primary: bool = True
    min_slices: int = Field(default=5, ge=2)
    series_uid: str | None = None
