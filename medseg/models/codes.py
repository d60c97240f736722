"""Coded concepts for a model's label names (a MONAI bundle has names only, a SEG needs codes).

``label_codes(name)`` returns the SEG segment's (category, type) as SNOMED CT codes:

* a name that says tumor, lesion, cancer, neoplasm or metastasis: category "Morphologically
  Abnormal Structure", type "Neoplasm" (SCT 49755003 / 108369006);
* a name that names an anatomical structure in DICOM's SNOMED CT dictionary
  (``pydicom.sr.codedict``; laterality words, numbers and separators are dropped, so
  "Right Kidney" and ``kidney_right`` are both SCT 64033007 Kidney): category "Anatomical
  Structure" (SCT 91723000), type that structure;
* anything else: category and type the generic "Anatomical Structure" (SCT 91723000), and
  ``matched`` False, so the importer warns and the name is reviewed before promotion.
  Laterality stays in the segment's label text; it is not coded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medseg.core.labels import CodeSpec

NEOPLASM = (CodeSpec(value="49755003", scheme="SCT", meaning="Morphologically Abnormal Structure"),
            CodeSpec(value="108369006", scheme="SCT", meaning="Neoplasm"))
ANATOMY = CodeSpec(value="91723000", scheme="SCT", meaning="Anatomical Structure")
_NEOPLASTIC = re.compile(r"tumou?r|lesion|cancer|neoplas|metast", re.I)
#: words that carry no concept of their own in label names
_DROP = {"left", "right", "l", "r", "lt", "rt", "the", "of", "and"}
#: abbreviations common in label names -> the dictionary keyword
_ALIASES = {"ivc": "InferiorVenaCava", "svc": "SuperiorVenaCava", "vertebrae": "Vertebra", "kidneys": "Kidney",
            "lungs": "Lung", "ribs": "Rib"}


@dataclass(frozen=True)
class LabelCodes:
    category: CodeSpec
    type: CodeSpec
    matched: bool


def label_codes(name: str) -> LabelCodes:
    if _NEOPLASTIC.search(name):
        return LabelCodes(*NEOPLASM, matched=True)
    found = _lookup(name)
    if found is None:
        return LabelCodes(ANATOMY, ANATOMY, matched=False)
    return LabelCodes(ANATOMY, found, matched=True)


def _lookup(name: str) -> CodeSpec | None:
    from pydicom.sr.codedict import codes

    words = [w for w in re.split(r"[^a-z]+", name.lower()) if w and w not in _DROP]
    if not words:
        return None
    keys = [_ALIASES.get("".join(words))] if "".join(words) in _ALIASES else []
    keys.append("".join(_ALIASES.get(w, w.capitalize()) for w in words))
    for key in keys:
        try:
            code = getattr(codes.SCT, key)
        except AttributeError:
            continue
        return CodeSpec(value=str(code.value), scheme=str(code.scheme_designator), meaning=str(code.meaning)[:64])
    return None
