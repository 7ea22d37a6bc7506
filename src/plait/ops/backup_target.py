"""Where backups are kept: a local directory or an S3-compatible bucket.

A backup is a folder — ``DEST/<id>/`` or ``s3://bucket/prefix/<id>/`` — of files with a
``manifest.json`` written last: a folder without one is a backup that did not finish
(or is still being written). Both targets offer the same few operations, so the backup
code never knows which one it writes to.

Local folders are created 0700 and files 0600: a backup holds sealed secrets, hashed
tokens and usually the keys that open them. In a bucket, protect the prefix with a
bucket policy and default encryption; the files are uploaded as they are.

S3 credentials: an ``s3`` connection (``--connection NAME``: the store's, or a
``PLAIT_CONNECTION_<NAME>`` variable), else boto3's own chain (environment, shared
files, instance role). The endpoint of an S3-compatible store comes from the
connection or ``PLAIT_S3_ENDPOINT_URL`` (boto3 also reads ``AWS_ENDPOINT_URL_S3``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from plait.ops.backup_errors import BackupError, BadBackup

if TYPE_CHECKING:
    from plait.actions.s3 import S3Config

ENDPOINT_ENV = "PLAIT_S3_ENDPOINT_URL"
MANIFEST = "manifest.json"


class TargetError(BackupError):
    """The backup location is unreachable or refuses an operation (exit 1)."""


class TargetMissing(TargetError, BadBackup):
    """The backup location does not exist (exit 2)."""


class Target(Protocol):
    """A place holding backup folders."""

    url: str

    def check(self, *, create: bool) -> None:
        """Fail with :class:`TargetError` if the location does not exist (``create``:
        make a missing local folder)."""

    def backups(self) -> list[str]:
        """The names of the backup folders, sorted."""

    def files(self, backup: str) -> dict[str, int]:
        """The files of one backup folder with their sizes (relative paths)."""

    def read_bytes(self, backup: str, path: str) -> bytes | None:
        """A small file's content, or None if it does not exist."""

    def download(self, backup: str, path: str, dest: Path) -> None:
        """Copy one file of a backup to the local path ``dest``."""

    def folder(self, backup: str) -> Path | None:
        """The backup's own local folder, when it is local (no copy needed)."""

    def staging(self, backup: str) -> AbstractContextManager[Path]:
        """A local folder to write a new backup's files into; :meth:`publish` stores them."""

    def publish(self, backup: str, staged: Path, files: list[str]) -> None:
        """Store the staged files (the manifest is written separately, last)."""

    def write_manifest(self, backup: str, data: bytes) -> None:
        """Write ``manifest.json``: the backup is complete from now on."""

    def remove(self, backup: str) -> None:
        """Delete a backup folder and everything in it."""

    def close(self) -> None:
        """Release connections."""


def open_target(dest: str, connection: Any | None = None) -> Target:
    """The target for ``dest``: ``s3://bucket[/prefix]`` or a local folder."""
    if dest.startswith("s3://"):
        return S3Target(dest, connection)
    if "://" in dest:
        raise TargetMissing(f"{dest}: not a folder or an s3:// URL")
    return LocalTarget(dest)


# -- a local folder ----------------------------------------------------------------------
def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


class LocalTarget:
    def __init__(self, dest: str) -> None:
        self.url = dest
        self.root = Path(dest).expanduser()

    def check(self, *, create: bool) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise TargetError(f"{self.url}: is a file, not a folder")
        if not self.root.exists():
            if not create:
                raise TargetMissing(f"{self.url}: no such folder")
            try:
                _private_dir(self.root)
            except OSError as exc:
                raise TargetError(f"{self.url}: cannot create it: {exc.strerror}") from None

    def backups(self) -> list[str]:
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def files(self, backup: str) -> dict[str, int]:
        folder = self.root / backup
        if not folder.is_dir():
            return {}
        return {
            p.relative_to(folder).as_posix(): p.stat().st_size
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    def read_bytes(self, backup: str, path: str) -> bytes | None:
        try:
            return (self.root / backup / path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TargetError(f"{self.root / backup / path}: {exc.strerror}") from None

    def download(self, backup: str, path: str, dest: Path) -> None:
        try:
            shutil.copyfile(self.root / backup / path, dest)
        except OSError as exc:
            raise TargetError(f"{self.root / backup / path}: {exc.strerror}") from None

    def folder(self, backup: str) -> Path | None:
        return self.root / backup

    @contextmanager
    def staging(self, backup: str) -> Iterator[Path]:
        # Written in place: the manifest, written last, marks the folder complete.
        folder = self.root / backup
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            raise TargetError(f"{folder}: another backup is being written there") from None
        except OSError as exc:
            raise TargetError(f"{folder}: cannot create it: {exc.strerror}") from None
        os.chmod(folder, 0o700)
        yield folder

    def publish(self, backup: str, staged: Path, files: list[str]) -> None:
        for name in files:
            os.chmod(staged / name, 0o600)

    def write_manifest(self, backup: str, data: bytes) -> None:
        final = self.root / backup / MANIFEST
        tmp = final.with_name(f".{MANIFEST}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, final)

    def remove(self, backup: str) -> None:
        shutil.rmtree(self.root / backup, ignore_errors=False)

    def close(self) -> None:
        pass


# -- an S3-compatible bucket -------------------------------------------------------------
def s3_settings(connection: Any | None) -> S3Config:
    """The client settings: an s3 connection's, or the environment's."""
    from pydantic import ValidationError

    from plait.actions.s3 import S3Config

    if connection is not None:
        if connection.type != "s3":
            raise TargetMissing(
                f"connection {connection.name!r} is of type {connection.type!r}, not s3"
            )
        try:
            return S3Config.model_validate(dict(connection.config))
        except ValidationError as exc:
            problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            raise TargetMissing(f"connection {connection.name!r}: {problems}") from None
    endpoint = os.environ.get(ENDPOINT_ENV) or None
    try:
        return S3Config(
            endpoint_url=endpoint,
            addressing_style="path" if endpoint else "auto",
        )
    except ValidationError as exc:
        raise TargetMissing(f"{ENDPOINT_ENV}: {exc.errors()[0]['msg']}") from None


class S3Target:
    def __init__(self, dest: str, connection: Any | None = None) -> None:
        self.url = dest.rstrip("/")
        bucket, _, prefix = dest.removeprefix("s3://").partition("/")
        if not bucket:
            raise TargetMissing(f"{dest}: no bucket (write s3://BUCKET/PREFIX)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.config = s3_settings(connection)
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from plait.actions.s3 import _make_client

            self._client = _make_client(self.config, 10.0, 120.0)
        return self._client

    def _key(self, backup: str, path: str = "") -> str:
        parts = [p for p in (self.prefix, backup, path) if p]
        return "/".join(parts)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise self._error(what, exc) from exc

    def _error(self, what: str, exc: Exception) -> TargetError:
        from plait.actions.s3 import _code, _failure

        text = str(_failure(f"{what} ({self.url})", exc, self.bucket))
        code = _code(exc) if hasattr(exc, "response") else ""
        if code in ("NoSuchBucket", "404") and "head bucket" in what:
            return TargetMissing(f"{self.url}: bucket {self.bucket!r} does not exist")
        return TargetMissing(text) if code == "NoSuchBucket" else TargetError(text)

    def check(self, *, create: bool) -> None:
        self._call("s3 head bucket", self.client.head_bucket, Bucket=self.bucket)

    def _list(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if delimiter:
                request["Delimiter"] = delimiter
            if token:
                request["ContinuationToken"] = token
            page = self._call("s3 list", self.client.list_objects_v2, **request)
            yield page
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if token is None:
                return

    def backups(self) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        names: set[str] = set()
        for page in self._list(base, "/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(base) :].strip("/")
                if name and not name.startswith("."):
                    names.add(name)
        return sorted(names)

    def files(self, backup: str) -> dict[str, int]:
        base = self._key(backup) + "/"
        out: dict[str, int] = {}
        for page in self._list(base):
            for item in page.get("Contents", []):
                out[item["Key"][len(base) :]] = int(item.get("Size", 0))
        return dict(sorted(out.items()))

    def read_bytes(self, backup: str, path: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(backup, path))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._error(f"s3 get {path}", exc) from exc
        except Exception as exc:
            raise self._error(f"s3 get {path}", exc) from exc
        body = answer["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def download(self, backup: str, path: str, dest: Path) -> None:
        key = self._key(backup, path)
        self._call(f"s3 download {key}", self.client.download_file, self.bucket, key, str(dest))

    def folder(self, backup: str) -> Path | None:
        return None

    @contextmanager
    def staging(self, backup: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="plait-backup-") as tmp:
            os.chmod(tmp, 0o700)
            yield Path(tmp)

    def publish(self, backup: str, staged: Path, files: list[str]) -> None:
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(multipart_threshold=64 * 2**20, multipart_chunksize=64 * 2**20)
        for name in files:
            key = self._key(backup, name)
            self._call(
                f"s3 upload {key}",
                self.client.upload_file,
                str(staged / name),
                self.bucket,
                key,
                Config=transfer,
            )

    def write_manifest(self, backup: str, data: bytes) -> None:
        key = self._key(backup, MANIFEST)
        self._call(
            f"s3 put {key}",
            self.client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType="application/json",
        )

    def remove(self, backup: str) -> None:
        keys = [self._key(backup, name) for name in self.files(backup)]
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[start : start + 1000]]
            self._call(
                "s3 delete",
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": chunk, "Quiet": True},
            )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def fetch(target: Target, backup: str, names: list[str], work: Path) -> Path:
    """A local folder holding ``names`` of a backup: its own folder when local, else a
    download into ``work``."""
    own = target.folder(backup)
    if own is not None:
        return own
    folder = work / backup
    for name in names:
        dest = folder / name
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.download(backup, name, dest)
    return folder
