"""The manifest of a backup, the chains backups form, and which ones retention keeps.

Every backup folder ends with ``manifest.json``: what kind of backup it is, the backup
it builds on (``parent``, for an incremental one), when and by which Plait it was made,
the schema revision and database of the store, the rows each table held, and every
file with its size and SHA-256. Restore and verify trust nothing the manifest does not
vouch for.

A chain is a full backup followed by incrementals, each naming the one before it.
Retention (``prune``) never breaks a chain it keeps: a backup that a kept backup builds
on is kept too, whatever its age, and the newest chain is always kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plait.ops.backup_errors import BadBackup

FORMAT = 1
MANIFEST_NAME = "manifest.json"
KINDS = ("full", "incremental")
METHODS = ("sqlite-backup", "pg_dump", "logical")
DAY = 86400.0
#: a folder without a manifest younger than this may still be being written
INCOMPLETE_GRACE = DAY
_ID = re.compile(r"^(\d{8}T\d{6}Z)-(full|incremental)(-\d+)?$")


class ManifestError(BadBackup):
    """A manifest is missing, unreadable or does not describe a usable backup."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    id: str
    kind: str
    parent: str | None
    created_at: float
    plait_version: str
    schema_revision: str | None
    dialect: str
    method: str
    source: str
    files: tuple[FileEntry, ...] = ()
    #: rows of each table in the store when the backup was taken (the whole store)
    tables: dict[str, int] = field(default_factory=dict)
    #: incremental: rows written and rows deleted, per table
    changes: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the highest id each id counter had handed out
    counters: dict[str, int] = field(default_factory=dict)
    keys: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    audit_head: tuple[int, str] | None = None
    notes: tuple[str, ...] = ()
    format: int = FORMAT

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> FileEntry | None:
        return next((f for f in self.files if f.path == path), None)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["files"] = [asdict(f) for f in self.files]
        data["created"] = iso(self.created_at)
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> Manifest:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ManifestError(f"{where}: manifest.json is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: manifest.json is not a JSON object")
        try:
            return cls._parse(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: manifest.json is malformed ({exc!r})") from None

    @classmethod
    def _parse(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, this Plait reads {FORMAT}")
        if data["kind"] not in KINDS or data["method"] not in METHODS:
            raise ValueError(f"kind {data['kind']!r} with method {data['method']!r}")
        if (data["kind"] == "incremental") != bool(data.get("parent")):
            raise ValueError("an incremental backup names its parent; a full one does not")
        head = data.get("audit_head")
        return cls(
            id=str(data["id"]),
            kind=data["kind"],
            parent=data.get("parent"),
            created_at=float(data["created_at"]),
            plait_version=str(data["plait_version"]),
            schema_revision=data.get("schema_revision"),
            dialect=str(data["dialect"]),
            method=data["method"],
            source=str(data.get("source", "")),
            files=tuple(
                FileEntry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in data["files"]
            ),
            tables={str(k): int(v) for k, v in data.get("tables", {}).items()},
            changes={
                str(k): {str(a): int(b) for a, b in v.items()}
                for k, v in data.get("changes", {}).items()
            },
            counters={str(k): int(v) for k, v in data.get("counters", {}).items()},
            keys=tuple(str(k) for k in data.get("keys", ())),
            config=tuple(str(k) for k in data.get("config", ())),
            audit_head=None if not head else (int(head[0]), str(head[1])),
            notes=tuple(str(n) for n in data.get("notes", ())),
        )


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def new_id(kind: str, now: float, taken: set[str]) -> str:
    """``20250129T020000Z-full``: sorts by time; a suffix if two start in one second."""
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}-{kind}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def id_time(name: str) -> float | None:
    """The time in a backup folder's name (None: not a name Plait gives)."""
    found = _ID.match(name)
    if not found:
        return None
    when = dt.datetime.strptime(found.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    return when.timestamp()


# -- chains ------------------------------------------------------------------------------
def latest(manifests: Mapping[str, Manifest | None]) -> Manifest | None:
    done = [m for m in manifests.values() if m is not None]
    return max(done, key=lambda m: (m.created_at, m.id)) if done else None


def chain(manifests: Mapping[str, Manifest | None], backup: str) -> list[Manifest]:
    """The full backup and the incrementals leading to ``backup``, oldest first."""
    out: list[Manifest] = []
    current: str | None = backup
    while current is not None:
        if current not in manifests:
            if not out:
                raise ManifestError(f"no backup named {current!r}")
            raise ManifestError(
                f"backup {out[-1].id} builds on {current}, which is missing: the chain is "
                "broken (restore an older backup, or take a full one)"
            )
        found = manifests[current]
        if found is None:
            raise ManifestError(f"backup {current} has no manifest.json: it did not finish")
        if any(m.id == found.id for m in out):
            raise ManifestError(f"backup {current} builds on itself")
        out.append(found)
        current = found.parent
    out.reverse()
    return out


def children(manifests: Mapping[str, Manifest | None]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for m in manifests.values():
        if m is not None and m.parent is not None:
            found.setdefault(m.parent, []).append(m.id)
    return found


# -- retention ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PrunePlan:
    remove: tuple[str, ...]
    keep: tuple[str, ...]
    #: why each kept backup past its retention is kept
    held: dict[str, str]


def plan_prune(
    manifests: Mapping[str, Manifest | None],
    now: float,
    keep_full_days: float,
    keep_incremental_days: float,
    broken: frozenset[str] = frozenset(),
) -> PrunePlan:
    """What retention removes: fulls older than ``keep_full_days``, incrementals older
    than ``keep_incremental_days`` — except a backup some kept backup builds on, and
    the newest backup's chain. Folders without a manifest are removed a day after
    their name's time (before that they may still be being written); a folder whose
    manifest is unreadable is left for a person to look at."""
    done = {k: m for k, m in manifests.items() if m is not None}
    keep: set[str] = set()
    held: dict[str, str] = {}
    for m in done.values():
        days = keep_full_days if m.kind == "full" else keep_incremental_days
        if now - m.created_at <= days * DAY:
            keep.add(m.id)
    newest = latest(done)
    if newest is not None and newest.id not in keep:
        keep.add(newest.id)
        held[newest.id] = "the newest backup"
    for kept in sorted(keep):
        parent = done[kept].parent
        while parent is not None and parent in done:
            if parent not in keep:
                keep.add(parent)
                held[parent] = f"{kept} builds on it"
            parent = done[parent].parent
    remove = [k for k in done if k not in keep]
    for name, found in manifests.items():
        stamp = id_time(name)
        stale = stamp is not None and now - stamp > INCOMPLETE_GRACE
        if found is None and stale and name not in broken:
            remove.append(name)
    return PrunePlan(tuple(sorted(remove)), tuple(sorted(keep)), held)


@dataclass(frozen=True, slots=True)
class Catalog:
    """The backup folders of a target: each with its manifest, or None when it has no
    (readable) manifest; ``broken`` says why a manifest could not be read."""

    manifests: dict[str, Manifest | None]
    broken: dict[str, str]


def load_catalog(target: Any) -> Catalog:
    """Every backup folder of a target (a :class:`~plait.ops.backup_target.Target`)."""
    found: dict[str, Manifest | None] = {}
    broken: dict[str, str] = {}
    for name in target.backups():
        raw = target.read_bytes(name, MANIFEST_NAME)
        try:
            found[name] = None if raw is None else Manifest.from_json(raw, f"{target.url}/{name}")
        except ManifestError as exc:
            found[name] = None
            broken[name] = str(exc)
    return Catalog(found, broken)
