"""Output labels of a model with their coded concepts (SNOMED CT category and type, display colour).

A label is what a SEG segment is made from (:mod:`medseg.core.seg`) and what a model manifest
declares (:mod:`medseg.models.manifest`); valid once constructed.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CodeSpec(_Frozen):
    value: str = Field(min_length=1, max_length=64)
    scheme: str = Field(min_length=1, max_length=16)
    meaning: str = Field(min_length=1, max_length=64)

    def to_code(self):
        from pydicom.sr.coding import Code

        return Code(self.value, self.scheme, self.meaning)


class LabelSpec(_Frozen):
    value: int = Field(ge=1, le=255)
    name: str = Field(min_length=1, max_length=64)
    category: CodeSpec
    type: CodeSpec
    color_rgb: tuple[int, int, int] = (255, 80, 0)

    @field_validator("color_rgb")
    @classmethod
    def _rgb(cls, v):
        if any(c < 0 or c > 255 for c in v):
            raise ValueError("each component must be 0..255")
        return v
