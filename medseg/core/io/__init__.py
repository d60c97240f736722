"""Reading a study: DICOM folder or NIfTI file in, one validated Volume out.

The names below are loaded when first used (PEP 562), not when the package is imported: the
settings import :mod:`medseg.core.io.rules` through here, and a command that only reads the
configuration (``review submit``, ``models list``) must not pay for pydicom, nibabel and the decoders.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the submodule that defines it
_WHERE = {
    "GeometryTolerances": "rules",
    "SelectionRules": "rules",
    "SeriesDecision": "selection",
    "LoadedStudy": "study",
    "load_study": "study",
    "read_nifti": "nifti",
    "write_nifti": "nifti",
}

__all__ = ["GeometryTolerances", "LoadedStudy", "SelectionRules", "SeriesDecision", "load_study", "read_nifti",
           "write_nifti"]

if TYPE_CHECKING:
    from medseg.core.io.nifti import read_nifti, write_nifti
    from medseg.core.io.rules import GeometryTolerances, SelectionRules
    from medseg.core.io.selection import SeriesDecision
    from medseg.core.io.study import LoadedStudy, load_study


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
