"""``medseg backup`` / ``medseg restore``: a consistent copy of a service's data directory.

What a backup holds (one folder, ``medseg-backup-<UTC time>``, written beside and renamed into
place, so a half-written backup never looks whole):

* ``medseg.db``: the SQLite database (jobs, registry, reviews, alerts, tokens, the audit trail),
  taken with SQLite's online backup API, so it is consistent while ``medseg serve`` runs (WAL
  mode). A PostgreSQL database is not copied: back it up with ``pg_dump`` (the manifest says so).
* the audit anchors file, copied **before** the database snapshot (every anchor it holds then
  names an event inside the snapshot, so ``audit verify`` of a restored copy passes);
* ``spool/``, ``results/``, ``reviews/`` and the site's model store, copied **after** the snapshot
  (every file a database row names is there; a file newer than the snapshot is a harmless orphan);
* the patient key (pseudonyms stay the same after a restore).
* ``manifest.json``: the SHA-256 of every file, checked by ``restore``.

**Not** in it: the chain key (``[audit] chain_key_file``). It seals the trail; keeping it with the
database it seals would let whoever holds the backup rewrite history undetected, so it is backed up
separately, once, like a TLS key. ``restore`` says when it is missing.

A restore goes back to the same paths (database rows hold absolute paths of results and masks);
it refuses a data directory that already holds a database unless ``force``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from medseg.config import Settings
from medseg.core.exceptions import MedsegError

FOLDERS = ("spool", "results", "reviews", "models")
MANIFEST = "manifest.json"


@dataclass
class BackupReport:
    path: Path
    files: int
    bytes: int
    database: str  # "sqlite" (in the backup) or "external (pg_dump it)"


def _sources(settings: Settings) -> dict[str, Path]:
    service = settings.service
    return {"spool": service.spool_dir, "results": service.results_dir, "reviews": service.reviews_dir,
            "models": Path(settings.models_root or service.data_dir / "models").resolve()}


def _sqlite_path(settings: Settings) -> Path | None:
    url = settings.service.db_url()
    return Path(url.split("///", 1)[1]) if url.startswith("sqlite:///") else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backup(settings: Settings, out: Path, now: dt.datetime | None = None) -> BackupReport:
    now = now or dt.datetime.now(dt.timezone.utc)
    target = Path(out) / f"medseg-backup-{now:%Y%m%dT%H%M%SZ}"
    partial = target.with_name(target.name + ".partial")
    if target.exists():
        raise MedsegError(f"{target} exists already", code="backup.exists")
    partial.mkdir(parents=True)
    audit_files = settings.audit_files()
    if audit_files["anchors"].exists():  # before the snapshot: every anchor names an event inside it
        shutil.copy2(audit_files["anchors"], partial / "audit-anchors.jsonl")
    database = _sqlite_path(settings)
    if database is not None:
        if not database.exists():
            shutil.rmtree(partial)
            raise MedsegError(f"no medseg database at {database}", code="config.no_data")
        with closing(sqlite3.connect(database)) as source, closing(sqlite3.connect(partial / "medseg.db")) as copy:
            source.backup(copy)  # SQLite's online backup: a consistent snapshot while serve writes
    if audit_files["patient_key"].exists():
        shutil.copy2(audit_files["patient_key"], partial / "audit.key")
    for name, folder in _sources(settings).items():
        if folder.is_dir():
            shutil.copytree(folder, partial / name, symlinks=True)
    files = {str(p.relative_to(partial)): _sha256(p) for p in sorted(partial.rglob("*")) if p.is_file()}
    manifest = {"created_at": now.isoformat(), "data_dir": str(settings.service.data_dir.resolve()),
                "database": "sqlite" if database else "external: back it up with pg_dump", "files": files}
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
    os.replace(partial, target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    return BackupReport(target, len(files), size, "sqlite" if database else "external (pg_dump it)")


def restore(settings: Settings, source: Path, *, force: bool = False) -> list[str]:
    """Put a backup back in place; returns notes for the operator (e.g. a missing chain key)."""
    source = Path(source)
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError):
        raise MedsegError(f"{source} is not a medseg backup (no readable {MANIFEST})", code="backup.invalid") from None
    for name, digest in manifest["files"].items():
        path = source / name
        if not path.is_file() or _sha256(path) != digest:
            raise MedsegError(f"backup file {name} is missing or changed since the backup", code="backup.corrupt")
    database = _sqlite_path(settings)
    if database is not None and database.exists() and not force:
        raise MedsegError(f"{database} exists: restore into an empty data directory, or give --force",
                          code="restore.not_empty")
    audit_files = settings.audit_files()
    places = {"medseg.db": database, "audit-anchors.jsonl": audit_files["anchors"], "audit.key": audit_files["patient_key"]}
    for name, place in places.items():
        if (source / name).is_file() and place is not None:
            place.parent.mkdir(parents=True, exist_ok=True)
            for stale in (place.with_name(place.name + "-wal"), place.with_name(place.name + "-shm")):
                stale.unlink(missing_ok=True)  # a WAL of the replaced database must not be replayed into it
            shutil.copy2(source / name, place)
    for name, folder in _sources(settings).items():
        if (source / name).is_dir():
            if folder.exists():
                shutil.rmtree(folder)
            shutil.copytree(source / name, folder, symlinks=True)
    notes = []
    if not audit_files["chain_key"].exists():
        notes.append(f"the chain key is not at {audit_files['chain_key']}: put its separate copy there before "
                     "`medseg serve` (a new key would be made, and `audit verify` would fail on sealed events)")
    if database is None:
        notes.append("the database is external: restore it with pg_restore / psql from its own dump")
    return notes
