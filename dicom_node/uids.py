"""DICOM UID syntax, checked before a peer-supplied identifier is used as a path or a query key."""

from __future__ import annotations

import re

#: digits and dots, no empty component. Leading zeros in a component break PS3.5 9.1 but are
#: common in the wild and harmless here, so they are accepted; anything else is not.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_uid(text: str) -> bool:
    return 0 < len(text) <= 64 and bool(_UID.match(text))
