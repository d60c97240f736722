"""``--override ID=VALUE`` of ``medseg models import-bundle``, read without torch or MONAI: the
command refuses a malformed one at once, before it loads anything heavy (8 s of imports before)."""

from __future__ import annotations

import re
from typing import Any

from medseg.core.exceptions import BundleError


def parse_override(text: str) -> tuple[str, Any]:
    """``id=value`` as ``monai.bundle run --id value`` reads it: a Python literal (``False``, ``1.5``,
    ``[96, 96, 96]``) where it is one, else the text (``cpu``, ``$torch.device('cpu')``)."""
    import ast

    cid, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_]+(#[A-Za-z0-9_]+)*", cid.strip()):
        raise BundleError(f"--override must be ID=VALUE with a config id such as dints_space#device, not {text!r}",
                          code="bundle.bad_override")
    try:
        parsed = value if value[:1] in "$@%" else ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return cid.strip(), parsed
