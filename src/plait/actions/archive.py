"""``uses: archive`` — create, extract and list tar and zip archives in the work directory.

Extraction treats every archive as hostile. The whole archive is checked before anything
is written — names that are absolute or climb out with ``..``, links that lead outside
the destination, device files and FIFOs, encrypted zip entries, more entries or more
bytes than the limits allow — and any of them refuses the archive with the entry's name.
While writing, no path is ever followed through a symlink (directories are made one
component at a time, files opened with ``O_NOFOLLOW | O_EXCL``), symlinks are made only
after every file, each checked where it really resolves, and all of them checked again at
the end (a later link can change where an earlier one leads). Bytes written are counted
against ``max_size`` as they are written, whatever the headers claimed (zip bombs).

Formats: ``tar``, ``tar.gz`` (``tgz``), ``tar.bz2``, ``tar.xz`` and ``zip``, inferred
from the archive's name (or its content, when extracting) unless ``format`` says.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import secrets
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import Field, model_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.actions.files import relative, resolve_in_workdir, sha256_file

Format = Literal["tar", "tar.gz", "tgz", "tar.bz2", "tar.xz", "zip"]
_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".tar.gz", "tar.gz"), (".tgz", "tar.gz"), (".tar.bz2", "tar.bz2"), (".tbz2", "tar.bz2"),
    (".tar.xz", "tar.xz"), (".txz", "tar.xz"), (".tar", "tar"), (".zip", "zip"),
)  # fmt: skip
_TAR_WRITE_MODE = {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}
DEFAULT_MAX_SIZE = 1024**3
DEFAULT_MAX_ENTRIES = 10_000
MAX_LISTED = 10_000
_MAX_ZIP_LINK = 4096
_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveInput(ActionInput):
    op: Literal["create", "extract", "list"] = Field(description="What to do.")
    source: str = Field(description="create: the directory or file to pack; else the archive.")
    dest: str | None = Field(
        None, description="create: the archive to write; extract: the directory (default .)."
    )
    files: list[str] | None = Field(
        None, description="create: glob patterns (relative to source) of what to include."
    )
    format: Format | None = Field(None, description="Default: from the archive's name.")
    max_size: int = Field(DEFAULT_MAX_SIZE, ge=1, description="extract: most bytes written.")
    max_entries: int = Field(DEFAULT_MAX_ENTRIES, ge=1, description="extract/list: most entries.")
    overwrite: bool = Field(True, description="extract: replace files that already exist.")

    @model_validator(mode="after")
    def _fits_op(self) -> ArchiveInput:
        if self.op == "create" and self.dest is None:
            raise ValueError("op create needs dest (the archive to write)")
        if self.op != "create" and self.files is not None:
            raise ValueError(f"op {self.op} does not take files")
        if self.op == "list" and self.dest is not None:
            raise ValueError("op list does not take dest")
        return self


@dataclass
class _Entry:
    """One archive member, its name already checked and normalised."""

    name: str
    kind: Literal["file", "dir", "symlink", "hardlink"]
    size: int = 0
    mode: int = 0o644
    link: str = ""
    mtime: float | None = None
    member: Any = None


class ArchiveAction(Action):
    name = "archive"
    version = "1"
    description = "Create, extract (safely) or list tar and zip archives."
    Input = ArchiveInput

    async def execute(self, ctx: ActionContext, input: ArchiveInput) -> ActionResult:
        # Local file work: done inline, like the file action.
        try:
            if input.op == "create":
                outputs = _create(ctx, input)
            elif input.op == "extract":
                outputs = _extract(ctx, input)
            else:
                outputs = _list(ctx, input)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
            raise ActionFailed(f"archive {input.source}: {exc}", retryable=False) from None
        except FileNotFoundError as exc:
            raise ActionFailed(f"archive: {exc.filename} does not exist", retryable=False) from None
        except OSError as exc:
            raise ActionFailed(f"archive: {exc.filename or ''}: {exc.strerror or exc}") from exc
        return ActionResult(outputs=outputs)


# -- formats -----------------------------------------------------------------------------
def format_of(name: str, given: str | None) -> str | None:
    """The archive format from ``given`` or the file name; None when neither says."""
    if given:
        return "tar.gz" if given == "tgz" else given
    lower = name.lower()
    for suffix, fmt in _SUFFIXES:
        if lower.endswith(suffix):
            return fmt
    return None


def _sniff(path: Path, given: str | None) -> str:
    fmt = format_of(path.name, given)
    if fmt is not None:
        return fmt
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ActionFailed(f"{path.name} is neither a tar nor a zip archive", retryable=False)


# -- create ------------------------------------------------------------------------------
def _create(ctx: ActionContext, input: ArchiveInput) -> dict[str, Any]:
    assert input.dest is not None
    source = resolve_in_workdir(ctx.workdir, input.source, what="source")
    target = resolve_in_workdir(ctx.workdir, input.dest, what="dest")
    fmt = format_of(target.name, input.format)
    if fmt is None:
        raise ActionFailed(
            f"cannot tell the format from {input.dest!r}; name it .tar, .tar.gz, .zip … "
            "or set format",
            retryable=False,
        )
    if not source.exists():
        raise ActionFailed(f"source {input.source} does not exist", retryable=False)
    members = list(_members(source, input.files, exclude=target))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.plait-{secrets.token_hex(4)}.tmp")
    try:
        (_write_zip if fmt == "zip" else _write_tar)(tmp, members, fmt)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    digest, size = sha256_file(target)
    return {"path": relative(input.dest), "sha256": digest, "size": size, "entries": len(members)}


def _members(source: Path, patterns: list[str] | None, exclude: Path) -> Iterator[tuple[Path, str]]:
    """(path, name in the archive) of what to pack, sorted, the archive itself left out."""
    if not source.is_dir() or source.is_symlink():
        yield source, source.name
        return
    for root, dirs, files in os.walk(source):
        dirs.sort()
        here = Path(root)
        for name in [*dirs, *sorted(files)]:
            path = here / name
            rel = path.relative_to(source).as_posix()
            if path == exclude or not _wanted(rel, patterns):
                continue
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                yield path, rel  # sockets and FIFOs are not archived


def _wanted(rel: str, patterns: list[str] | None) -> bool:
    if patterns is None:
        return True
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(p, pattern.strip("/")) for pattern in patterns for p in prefixes)


def _write_tar(tmp: Path, members: list[tuple[Path, str]], fmt: str) -> None:
    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(tmp, _TAR_WRITE_MODE[fmt], format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for path, name in members:
            tar.add(path, arcname=name, recursive=False, filter=anonymous)


def _write_zip(tmp: Path, members: list[tuple[Path, str]], fmt: str) -> None:
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in members:
            if path.is_symlink():
                info = zipfile.ZipInfo(name)
                info.create_system = 3  # unix, so the mode bits below mean a symlink
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, os.readlink(path))
            else:
                archive.write(path, name)


# -- read --------------------------------------------------------------------------------
def _entries(path: Path, fmt: str, max_entries: int, max_size: int | None) -> list[_Entry]:
    """Every member of the archive, checked; ActionFailed naming the first bad one."""
    entries: list[_Entry] = []
    total = 0
    files: set[str] = set()
    reader = _zip_entries if fmt == "zip" else _tar_entries
    for entry in reader(path):
        if entry is None:
            continue
        if len(entries) >= max_entries:
            raise _refuse(f"more than {max_entries} entries (max_entries)")
        total += entry.size
        if max_size is not None and total > max_size:
            raise _refuse(f"more than {max_size} bytes once extracted (max_size)")
        if entry.kind == "symlink":
            _check_link(entry)
        elif entry.kind == "hardlink" and entry.link not in files:
            raise _refuse(f"entry {entry.name!r} links to {entry.link!r}, not an earlier file")
        if entry.kind == "file":
            files.add(entry.name)
        entries.append(entry)
    return entries


def _tar_entries(path: Path) -> Iterator[_Entry | None]:
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            name = safe_name(m.name)
            if name is None:
                continue  # "./": the root itself
            if m.isreg():
                yield _Entry(name, "file", m.size, m.mode, mtime=m.mtime, member=m)
            elif m.isdir():
                yield _Entry(name, "dir", 0, m.mode, member=m)
            elif m.issym():
                yield _Entry(name, "symlink", 0, link=m.linkname, member=m)
            elif m.islnk():
                target = safe_name(m.linkname)
                if target is None:
                    raise _refuse(f"entry {name!r} is a hard link to {m.linkname!r}")
                yield _Entry(name, "hardlink", 0, m.mode, link=target, member=m)
            else:
                raise _refuse(f"entry {name!r} is a device file or FIFO")


def _zip_entries(path: Path) -> Iterator[_Entry | None]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = safe_name(info.filename)
            if name is None:
                continue
            if info.flag_bits & 0x1:
                raise _refuse(f"entry {name!r} is encrypted")
            unix_mode = info.external_attr >> 16 if info.create_system == 3 else 0
            if info.is_dir():
                yield _Entry(name, "dir", 0, 0o755, member=info)
            elif stat.S_ISLNK(unix_mode):
                if info.file_size > _MAX_ZIP_LINK:
                    raise _refuse(
                        f"entry {name!r} is a symlink with a {info.file_size}-byte target"
                    )
                link = archive.read(info).decode("utf-8", errors="replace")
                yield _Entry(name, "symlink", 0, link=link, member=info)
            elif stat.S_IFMT(unix_mode) not in (0, stat.S_IFREG):  # 0: writers that set none
                raise _refuse(f"entry {name!r} is a device file or FIFO")
            else:
                mtime = _zip_time(info)
                mode = stat.S_IMODE(unix_mode) or 0o644
                yield _Entry(name, "file", info.file_size, mode, mtime=mtime, member=info)


def _zip_time(info: zipfile.ZipInfo) -> float | None:
    import datetime

    try:
        return datetime.datetime(*info.date_time).timestamp()
    except (ValueError, OverflowError):
        return None


def safe_name(name: str) -> str | None:
    """A member name as a normalised relative path; None for the archive's root
    (``./``); ActionFailed when it is absolute or climbs out with ``..``."""
    if "\x00" in name:
        raise _refuse(f"entry {name!r} has a NUL in its name")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise _refuse(f"entry {name!r} has an absolute name")
    parts = [p for p in re.split(r"[/\\]", name) if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(f"entry {name!r} climbs out with ..")
    return "/".join(parts) or None


def _check_link(entry: _Entry) -> None:
    if not entry.link or entry.link.startswith(("/", "\\")) or _DRIVE.match(entry.link):
        raise _refuse(f"entry {entry.name!r} is a symlink to the absolute path {entry.link!r}")
    where = os.path.normpath(os.path.join(os.path.dirname(entry.name), entry.link))
    if where == ".." or where.startswith("../"):
        raise _refuse(f"entry {entry.name!r} is a symlink leading out ({entry.link!r})")


def _refuse(reason: str) -> ActionFailed:
    return ActionFailed(f"refusing the archive: {reason}", retryable=False)


def _list(ctx: ActionContext, input: ArchiveInput) -> dict[str, Any]:
    path = resolve_in_workdir(ctx.workdir, input.source, what="source")
    entries = _entries(path, _sniff(path, input.format), input.max_entries, None)
    digest, size = sha256_file(path)
    return {
        "path": relative(input.source),
        "sha256": digest,
        "size": size,
        "entries": len(entries),
        "names": [e.name + ("/" if e.kind == "dir" else "") for e in entries[:MAX_LISTED]],
    }


# -- extract -----------------------------------------------------------------------------
def _extract(ctx: ActionContext, input: ArchiveInput) -> dict[str, Any]:
    path = resolve_in_workdir(ctx.workdir, input.source, what="source")
    fmt = _sniff(path, input.format)
    entries = _entries(path, fmt, input.max_entries, input.max_size)
    dest_rel = input.dest or "."
    dest = resolve_in_workdir(ctx.workdir, dest_rel, what="dest")
    _make_dirs(dest, Path(os.path.realpath(ctx.workdir)))
    writer = _Writer(dest, input.max_size, input.overwrite)
    opener = _zip_opener(path) if fmt == "zip" else _tar_opener(path)
    with opener as open_member:
        for entry in entries:
            if entry.kind != "symlink":
                writer.put(entry, open_member)
    writer.links([e for e in entries if e.kind == "symlink"])
    digest, _ = sha256_file(path)
    return {
        "path": relative(dest_rel),
        "sha256": digest,
        "entries": len(entries),
        "size": writer.written,
    }


@contextlib.contextmanager
def _tar_opener(path: Path) -> Iterator[Callable[[_Entry], IO[bytes]]]:
    with tarfile.open(path, "r:*") as tar:

        def open_member(entry: _Entry) -> IO[bytes]:
            stream = tar.extractfile(entry.member)
            if stream is None:
                raise _refuse(f"entry {entry.name!r} has no data")
            return stream

        yield open_member


@contextlib.contextmanager
def _zip_opener(path: Path) -> Iterator[Callable[[_Entry], IO[bytes]]]:
    with zipfile.ZipFile(path) as archive:
        yield lambda entry: archive.open(entry.member)


def _make_dirs(path: Path, root: Path) -> None:
    """Make ``path`` below ``root`` one component at a time, never through a symlink."""
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise _refuse(
                f"{current.relative_to(root)} is a symlink; nothing is written through one"
            )
        if not current.exists():
            current.mkdir()
        elif not current.is_dir():
            raise _refuse(f"{current.relative_to(root)} should be a directory but is a file")


class _Writer:
    """Writes checked entries below ``dest``, counting bytes against ``max_size``."""

    def __init__(self, dest: Path, max_size: int, overwrite: bool) -> None:
        self.dest = dest
        self.max_size = max_size
        self.overwrite = overwrite
        self.written = 0
        self._made_links: list[Path] = []

    def put(self, entry: _Entry, open_member: Callable[[_Entry], IO[bytes]]) -> None:
        target = self.dest / entry.name
        _make_dirs(target.parent, self.dest)
        if entry.kind == "dir":
            _make_dirs(target, self.dest)
            return
        self._clear(target, entry.name)
        if entry.kind == "hardlink":
            source = self.dest / entry.link
            with open(source, "rb", opener=_nofollow) as stream:
                self._write(target, stream, entry)
        else:
            with open_member(entry) as stream:
                self._write(target, stream, entry)

    def _clear(self, target: Path, name: str) -> None:
        if not (target.is_symlink() or target.exists()):
            return
        if target.is_dir() and not target.is_symlink():
            raise _refuse(f"entry {name!r} is a file but a directory of that name exists")
        if not self.overwrite:
            raise ActionFailed(f"{name} already exists (set overwrite: true)", retryable=False)
        target.unlink()

    def _write(self, target: Path, stream: IO[bytes], entry: _Entry) -> None:
        mode = 0o755 if entry.mode & 0o111 else 0o644
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            with os.fdopen(os.open(target, flags, mode), "wb") as out:
                while chunk := stream.read(_CHUNK):
                    self.written += len(chunk)
                    if self.written > self.max_size:
                        raise _refuse(f"more than {self.max_size} bytes once extracted (max_size)")
                    out.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)  # no half-written file left behind
            raise
        if entry.mtime is not None:
            with contextlib.suppress(OSError, OverflowError, ValueError):
                os.utime(target, (entry.mtime, entry.mtime))

    def links(self, entries: list[_Entry]) -> None:
        """Make the symlinks, last: each must resolve inside ``dest`` when made and
        after all are made (a later link can redirect an earlier one)."""
        try:
            for entry in entries:
                target = self.dest / entry.name
                _make_dirs(target.parent, self.dest)
                self._clear(target, entry.name)
                os.symlink(entry.link, target)
                self._made_links.append(target)
                self._check_resolves_inside(target, entry.name)
            for target in self._made_links:
                self._check_resolves_inside(target, target.relative_to(self.dest).as_posix())
        except BaseException:
            for target in self._made_links:
                with contextlib.suppress(OSError):
                    target.unlink()
            raise

    def _check_resolves_inside(self, link: Path, name: str) -> None:
        real = os.path.realpath(link)
        root = str(self.dest)
        if real != root and not real.startswith(root + os.sep):
            raise _refuse(f"entry {name!r} is a symlink that resolves outside ({real})")


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)
