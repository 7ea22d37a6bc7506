"""``uses: file`` — read, write, template, checksum, copy and delete files of the run.

Every path is relative to the run's work directory and must stay inside it: an absolute
path, a ``..`` that climbs out, or a symlink that leads out is refused with a message
saying which. (A workflow that must touch the rest of the machine says so plainly with a
shell step.) :func:`resolve_in_workdir` is that check; ``git`` and ``archive`` use it too.

Writes are atomic — a temporary file in the same directory, then a rename — so a step
interrupted half-way never leaves half a file, and a retried step simply writes again.
``template`` renders a file with the same ``${{ }}`` engine as the workflow itself (the
sandboxed Jinja2 of :mod:`plait.expr`), with ``vars`` in scope.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import Field, field_validator, model_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.errors import ExpressionError

#: the most ``read`` returns and ``template`` renders: file contents become step outputs
MAX_READ_BYTES = 1024 * 1024
_CHUNK = 1024 * 1024

Op = Literal["read", "write", "append", "template", "checksum", "copy", "delete", "exists"]
#: which fields each operation needs (beyond ``op``) and which it accepts
_NEEDS: dict[str, tuple[set[str], set[str]]] = {
    "read": ({"path"}, {"encoding", "max_bytes"}),
    "write": ({"path", "content"}, {"encoding", "mode", "make_dirs"}),
    "append": ({"path", "content"}, {"encoding", "make_dirs"}),
    "template": ({"source"}, {"dest", "vars", "mode", "make_dirs"}),
    "checksum": ({"path"}, {"expect_sha256"}),
    "copy": ({"source", "dest"}, {"mode", "make_dirs"}),
    "delete": ({"path"}, {"recursive", "missing_ok"}),
    "exists": ({"path"}, set()),
}


def _in_path(root: str, candidate: str) -> bool:
    return candidate == root or os.path.commonpath([root, candidate]) == root


def resolve_in_workdir(
    workdir: Path, path: str, *, what: str = "path", follow: bool = True
) -> Path:
    """``path`` (relative to ``workdir``) as a real path inside it, or ActionFailed.

    ``follow=False`` leaves the last component unresolved (to delete or replace a
    symlink itself rather than what it points to); its parent must still be inside.
    """
    if not path or "\x00" in path:
        raise ActionFailed(f"{what} is empty or not a path", retryable=False)
    if os.path.isabs(path):
        raise ActionFailed(
            f"{what} {path!r} is absolute; give a path relative to the run's work directory",
            retryable=False,
        )
    root = os.path.realpath(workdir)
    lexical = os.path.normpath(os.path.join(root, path))
    if not _in_path(root, lexical):
        raise ActionFailed(
            f"{what} {path!r} leads out of the run's work directory", retryable=False
        )
    if follow or lexical == root:
        real = os.path.realpath(lexical)
    else:
        real = os.path.join(os.path.realpath(os.path.dirname(lexical)), os.path.basename(lexical))
    if not _in_path(root, real):
        raise ActionFailed(
            f"{what} {path!r} goes through a symlink to {real}, outside the run's work directory",
            retryable=False,
        )
    return Path(real)


def relative(path: str) -> str:
    """``path`` normalised, relative to the work directory, with ``/`` (for outputs)."""
    rel = os.path.normpath(path)
    return "." if rel in ("", ".") else Path(rel).as_posix()


def sha256_file(path: Path) -> tuple[str, int]:
    """The SHA-256 (hex) and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def atomic_write(target: Path, data: bytes, mode: int | None = None, *, make_dirs: bool) -> None:
    """Replace ``target`` with ``data`` through a temporary file in its directory.

    The permissions are ``mode``, else those of the file replaced, else the umask's.
    """
    _atomic(target, lambda file: file.write(data), mode, make_dirs=make_dirs)


def atomic_copy(
    source: Path, target: Path, mode: int | None, *, make_dirs: bool
) -> tuple[str, int]:
    """Copy ``source`` over ``target`` atomically; the copy's SHA-256 and size."""
    digest = hashlib.sha256()
    size = 0

    def write(out: BinaryIO) -> None:
        nonlocal size
        with open(source, "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)

    _atomic(target, write, mode, make_dirs=make_dirs)
    return digest.hexdigest(), size


def _atomic(
    target: Path, write: Callable[[BinaryIO], object], mode: int | None, *, make_dirs: bool
) -> None:
    if make_dirs:
        target.parent.mkdir(parents=True, exist_ok=True)
    elif not target.parent.is_dir():
        raise ActionFailed(f"directory {target.parent} does not exist", retryable=False)
    if target.is_dir():
        raise ActionFailed(f"{target} is a directory", retryable=False)
    if mode is None and target.exists():
        mode = stat.S_IMODE(target.stat().st_mode)
    tmp = target.with_name(f".{target.name}.plait-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class FileInput(ActionInput):
    op: Op = Field(description="What to do.")
    path: str | None = Field(None, description="The file (read, write, append, checksum, …).")
    source: str | None = Field(None, description="The template or the file/directory to copy.")
    dest: str | None = Field(None, description="Where template and copy write.")
    content: str | None = Field(None, description="What write and append write.")
    encoding: Literal["utf-8", "base64"] = Field(
        "utf-8", description="How content is given (write, append) or returned (read)."
    )
    vars: dict[str, Any] = Field(default_factory=dict, description="Names a template sees.")
    mode: str | None = Field(None, description='Permissions of the written file, like "0644".')
    make_dirs: bool = Field(True, description="Create missing parent directories.")
    max_bytes: int = Field(MAX_READ_BYTES, ge=1, le=MAX_READ_BYTES)
    expect_sha256: str | None = Field(None, description="checksum fails when it differs.")
    recursive: bool = Field(False, description="delete: remove a directory and its content.")
    missing_ok: bool = Field(True, description="delete: succeed when there is nothing.")

    @field_validator("mode")
    @classmethod
    def _octal(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                number = int(value, 8)
            except ValueError:
                raise ValueError(f'mode {value!r} is not octal permissions like "0644"') from None
            if not 0 <= number <= 0o7777:
                raise ValueError(f"mode {value!r} is out of range")
        return value

    @model_validator(mode="after")
    def _fits_op(self) -> FileInput:
        needed, optional = _NEEDS[self.op]
        given = {name for name in self.model_fields_set if name != "op"}
        missing = sorted(n for n in needed if getattr(self, n) is None)
        if missing:
            raise ValueError(f"op {self.op} needs {' and '.join(missing)}")
        extra = sorted(given - needed - optional)
        if extra:
            raise ValueError(f"op {self.op} does not take {', '.join(extra)}")
        return self


class FileAction(Action):
    name = "file"
    version = "1"
    description = (
        "Read, write, append, template, checksum, copy, delete or test files in the run's "
        "work directory."
    )
    Input = FileInput

    async def execute(self, ctx: ActionContext, input: FileInput) -> ActionResult:
        handler = getattr(self, f"_{input.op}")
        try:
            outputs: dict[str, Any] = handler(ctx, input)
        except FileNotFoundError as exc:
            raise ActionFailed(
                f"file {input.op}: {exc.filename} does not exist", retryable=False
            ) from None
        except OSError as exc:
            where = exc.filename or input.path or input.dest
            raise ActionFailed(f"file {input.op}: {where}: {exc.strerror or exc}") from exc
        return ActionResult(outputs=outputs)

    # -- operations (sync: local file work is quick, and blocking calls keep it simple) ----
    def _read(self, ctx: ActionContext, input: FileInput) -> dict[str, Any]:
        assert input.path is not None
        target = resolve_in_workdir(ctx.workdir, input.path)
        data = _read_capped(target, input.max_bytes, input.path)
        if input.encoding == "base64":
            content = base64.b64encode(data).decode("ascii")
        else:
            try:
                content = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ActionFailed(
                    f"{input.path} is not UTF-8 text; read it with encoding: base64",
                    retryable=False,
                ) from None
        return {
            "path": relative(input.path),
            "content": content,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    def _write(self, ctx: ActionContext, input: FileInput) -> dict[str, Any]:
        assert input.path is not None
        assert input.content is not None
        target = resolve_in_workdir(ctx.workdir, input.path)
        data = _decode(input.content, input.encoding)
        atomic_write(target, data, _mode(input.mode), make_dirs=input.make_dirs)
        return _file_outputs(ctx, input.path, data)

    def _append(self, ctx: ActionContext, input: FileInput) -> dict[str, Any]:
        assert input.path is not None
        assert input.content is not None
        target = resolve_in_workdir(ctx.workdir, input.path)
        if input.make_dirs:
            target.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
        fd = os.open(target, flags, 0o666)
        with os.fdopen(fd, "ab") as file:
            file.write(_decode(input.content, input.encoding))
        digest, size = sha256_file(target)
        return {"path": relative(input.path), "size": size, "sha256": digest}

    def _template(self, ctx: ActionContext, input: FileInput) -> dict[str, Any]:
        assert input.source is not None
        source = resolve_in_workdir(ctx.workdir, input.source, what="source")
        try:
            text = _read_capped(source, MAX_READ_BYTES, input.source).decode("utf-8")
        except UnicodeDecodeError:
            raise ActionFailed(
                f"template {input.source} is not UTF-8 text", retryable=False
            ) from None
        rendered = render_template(text, _template_scope(ctx, input.vars), input.source)
        data = rendered.encode("utf-8")
        if input.dest is None:
            return {
                "content": rendered,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        target = resolve_in_workdir(ctx.workdir, input.dest, what="dest")
        atomic_write(target, data, _mode(input.mode), make_dirs=input.make_dirs)
        return _file_outputs(ctx, input.dest, data)

    def _checksum(self, ctx: ActionContext, input: FileInput) -> dict[str, Any]:
        assert input.path is not None
        target = resolve_in_workdir(ctx.workdir, input.path)
        if target.is_dir():
            raise ActionFailed(f"{input.path} is a directory", retryable=False)
        digest, size = sha256_file(target)
        outputs = {"path": relative(input.path), "sha256": digest, "size": size}
        expected = (input.expect_sha256 or "").strip().lower()
        if expected and expected != digest:
            raise ActionFailed(
                f"{input.path}: SHA-256 is {digest}, expected {expected}", outputs, retryable=False
            )
        return outputs

    def _copy(self, ctx: ActionContext, input: FileInput) -> dict[str, Any]:
        assert input.source is not None
        assert input.dest is not None
        source = resolve_in_workdir(ctx.workdir, input.source, what="source")
        target = resolve_in_workdir(ctx.workdir, input.dest, what="dest")
        if source.is_dir():
            if _in_path(str(source), str(target)):
                raise ActionFailed(f"cannot copy {input.source} into itself", retryable=False)
            shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
            count = sum(len(files) for _, _, files in os.walk(target))
            return {"path": relative(input.dest), "files": count}
        mode = _mode(input.mode)
        if mode is None:
            mode = stat.S_IMODE(source.stat().st_mode)
        digest, size = atomic_copy(source, target, mode, make_dirs=input.make_dirs)
        return {"path": relative(input.dest), "size": size, "sha256": digest}

    def _delete(self, ctx: ActionContext, input: FileInput) -> dict[str, Any]:
        assert input.path is not None
        target = resolve_in_workdir(ctx.workdir, input.path, follow=False)
        rel = relative(input.path)
        if target == Path(os.path.realpath(ctx.workdir)):
            raise ActionFailed("refusing to delete the run's work directory", retryable=False)
        if not target.is_symlink() and not target.exists():
            if input.missing_ok:
                return {"path": rel, "deleted": False}
            raise ActionFailed(f"{input.path} does not exist", retryable=False)
        if target.is_dir() and not target.is_symlink():
            if not input.recursive:
                raise ActionFailed(
                    f"{input.path} is a directory; set recursive: true to delete it",
                    retryable=False,
                )
            shutil.rmtree(target)
        else:
            target.unlink()
        return {"path": rel, "deleted": True}

    def _exists(self, ctx: ActionContext, input: FileInput) -> dict[str, Any]:
        assert input.path is not None
        target = resolve_in_workdir(ctx.workdir, input.path)
        rel = relative(input.path)
        if not target.exists():
            return {"path": rel, "exists": False, "type": None, "size": None}
        kind = "directory" if target.is_dir() else "file" if target.is_file() else "other"
        size = target.stat().st_size if kind == "file" else None
        return {"path": rel, "exists": True, "type": kind, "size": size}


def render_template(text: str, scope: Mapping[str, Any], name: str) -> str:
    """``text`` with its ``${{ }}`` parts rendered; a template that is one expression
    producing data is written as JSON, like a ``${{ }}`` inside a shell command."""
    from plait.expr import render_string

    try:
        value = render_string(text, scope)
    except ExpressionError as exc:
        raise ActionFailed(f"template {name}: {exc}", retryable=False) from None
    if isinstance(value, str):
        return value
    import json

    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def _template_scope(ctx: ActionContext, variables: Mapping[str, Any]) -> dict[str, Any]:
    run = {"id": ctx.run_id, "workflow": ctx.workflow, "step": ctx.step, "attempt": ctx.attempt}
    return {"env": dict(ctx.env), "run": run, **variables, "vars": dict(variables)}


def _read_capped(path: Path, limit: int, name: str) -> bytes:
    if path.is_dir():
        raise ActionFailed(f"{name} is a directory", retryable=False)
    with open(path, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ActionFailed(
            f"{name} is larger than {limit} bytes, the most a step can read "
            "(use checksum, or process it in a shell step)",
            retryable=False,
        )
    return data


def _decode(content: str, encoding: str) -> bytes:
    if encoding == "utf-8":
        return content.encode("utf-8")
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise ActionFailed("content is not valid base64", retryable=False) from None


def _mode(text: str | None) -> int | None:
    return int(text, 8) if text is not None else None


def _file_outputs(ctx: ActionContext, path: str, data: bytes) -> dict[str, Any]:
    return {
        "path": relative(path),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
