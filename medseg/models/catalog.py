"""The model catalog: where model versions live: the site's own store first, then the models shipped with medseg.

* The **site store** (``models_root``; default ``<data_dir>/models``) is writable: imported MONAI
  bundles go there, and so does a shipped version the moment something is recorded for it (a
  gate reference): it is copied there first (:meth:`ModelCatalog.writable`), so the installed or
  tracked files are never written.
* The **shipped models** are read-only: ``models/`` of a source checkout, or
  ``<prefix>/share/medseg/models`` of an installed wheel (pyproject ``data-files``).

A version present in both is the site's (its copy carries what the site recorded for it).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

__all__ = ["ModelCatalog", "shipped_root"]

MANIFEST = "manifest.json"
_CHECKOUT = Path(__file__).resolve().parents[2]


def shipped_root() -> Path | None:
    """The shipped models: the checkout's ``models/`` (a checkout has its pyproject.toml beside it),
    else the installed wheel's ``<prefix>/share/medseg/models``; None if neither is there."""
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "models").is_dir():
        return _CHECKOUT / "models"
    installed = Path(sys.prefix) / "share" / "medseg" / "models"
    return installed if installed.is_dir() else None


def _version_key(v: str) -> list:
    return [int(x) if x.isdigit() else x for x in v.replace("-", ".").split(".")]


class ModelCatalog:
    def __init__(self, site: Path, shipped: Path | None = None) -> None:
        self.site = Path(site)
        self.shipped = Path(shipped) if shipped is not None and Path(shipped) != self.site else None

    @property
    def roots(self) -> list[Path]:
        return [self.site] + ([self.shipped] if self.shipped is not None else [])

    def path(self, name: str, version: str) -> Path:
        """The folder of ``name/version``: the site's if it has it, else the shipped one; a version
        in neither resolves into the site store (loading it then says "manifest not found")."""
        for root in self.roots:
            if (root / name / version / MANIFEST).is_file():
                return root / name / version
        return self.site / name / version

    def versions(self, name: str) -> list[str]:
        """Versions of ``name`` in either store (folders with a manifest), oldest first."""
        found = {p.name for root in self.roots if (root / name).is_dir()
                 for p in (root / name).iterdir() if (p / MANIFEST).is_file()}
        return sorted(found, key=_version_key)

    def writable(self, name: str, version: str) -> Path:
        """The site's folder of ``name/version``, copied from the shipped models first if it is only
        there (whole or not at all: copied beside it, then renamed into place)."""
        target, source = self.site / name / version, self.path(name, version)
        if source != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{version}.copying")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(source, partial)
            partial.rename(target)
        return target
