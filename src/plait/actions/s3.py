"""``uses: s3`` — put, get, list, head, copy and delete objects in any S3-compatible store.

boto3 is imported only when a step runs (importing it and building a client take a
good part of a second) and its calls, which block, run in a worker thread. Clients are
thread-safe, so the action instance keeps one per connection settings and closes them in
:meth:`S3Action.aclose`: building one costs more than most requests.

Without ``connection:`` boto3 finds credentials as every AWS tool does (environment,
shared files, instance or container role). With an ``s3`` connection they come from the
connection store, and ``endpoint_url`` points at MinIO, Ceph, R2 and the like. Checksums
are sent only where S3 requires them: botocore's newer default (a CRC on every upload)
is refused by several S3-compatible stores.

Local files stay inside the run's work directory (:func:`resolve_in_workdir`). A
download streams into a temporary file beside its target, hashed on the way, and is
renamed only when complete, so a timed-out or retried step never leaves half a file.
The step's deadline bounds botocore's socket timeouts, and a cancelled step stops a
download between chunks: a worker thread cannot be killed, only told to stop.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import mimetypes
import os
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.actions.connections import ConnectionConfig, ConnectionType
from plait.actions.files import relative, resolve_in_workdir, sha256_file
from plait.errors import PlaitError

#: the most of an object ``get`` returns as ``content`` (outputs are kept in the store)
MAX_CONTENT_BYTES = 1024 * 1024
#: files larger than this are uploaded in parts (a single PUT stops at 5 GB)
MULTIPART_THRESHOLD = 64 * 1024 * 1024
#: seconds to connect and to wait for an answer, unless the step's deadline is nearer
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
_CHUNK = 1024 * 1024
_MAX_CLIENTS = 16
#: error codes that trying again cannot fix
_FATAL_CODES = {
    "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "InvalidBucketName", "NoSuchBucket", "NoSuchKey", "InvalidArgument", "InvalidRequest",
    "EntityTooLarge", "ExpiredToken", "InvalidToken", "AuthorizationHeaderMalformed",
    "PermanentRedirect", "MethodNotAllowed", "404", "403", "400",
}  # fmt: skip


# -- the connection type -----------------------------------------------------------------
class S3Config(ConnectionConfig):
    endpoint_url: str | None = Field(
        None, description="The store's URL (MinIO, Ceph, R2, …); none for AWS S3."
    )
    region: str | None = Field(None, description="The region (AWS: where the bucket is).")
    access_key_id: str | None = Field(
        None, description="The access key; none for the default chain."
    )
    secret_access_key: SecretStr | None = Field(None, description="The secret key (a credential).")
    session_token: SecretStr | None = Field(
        None, description="A session token, for temporary credentials (a credential)."
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="path (host/bucket/key, what most self-hosted stores want) or virtual."
    )
    bucket: str | None = Field(
        None, description="The bucket steps use when they name none (and that test checks)."
    )

    @field_validator("endpoint_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"endpoint_url {value!r} must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _key_pair(self) -> S3Config:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give access_key_id and secret_access_key together")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        return self

    def where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region or 'default region'})"


class S3Connection(ConnectionType):
    name = "s3"
    description = "An S3-compatible object store (endpoint, region, access keys)."
    Config = S3Config

    async def test(self, config: S3Config) -> str:
        """Head the connection's bucket, or list the buckets when it names none."""
        return await asyncio.to_thread(_probe, config)


def _probe(config: S3Config) -> str:
    client = _make_client(config, 5.0, 10.0)
    try:
        if config.bucket:
            _head_bucket(client, config.bucket, f"s3 at {config.where()}")
            return f"bucket {config.bucket!r} found at {config.where()}"
        names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
        shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
        return f"{config.where()}: {len(names)} bucket(s)" + (f" ({shown})" if names else "")
    except ActionFailed as exc:
        raise PlaitError(str(exc)) from None
    except Exception as exc:
        what = f"head bucket {config.bucket!r}" if config.bucket else "list buckets"
        raise PlaitError(str(_failure(f"s3 {what} at {config.where()}", exc))) from None
    finally:
        client.close()


def _make_client(config: S3Config, connect_timeout: float, read_timeout: float) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=_reveal(config.secret_access_key),
        aws_session_token=_reveal(config.session_token),
        region_name=config.region,
    )
    options = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": 3},
        s3={"addressing_style": config.addressing_style},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra="plait",
    )
    return session.client("s3", endpoint_url=config.endpoint_url, config=options)


def _reveal(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


# -- the action --------------------------------------------------------------------------
Op = Literal["put", "get", "list", "head", "copy", "delete"]
#: the fields each operation needs and those it accepts besides (connection, bucket,
#: endpoint_url and region go with every operation)
_NEEDS: dict[str, tuple[set[str], set[str]]] = {
    "put": ({"key"}, {"file", "content", "content_type", "metadata"}),
    "get": ({"key"}, {"dest"}),
    "head": ({"key"}, set()),
    "delete": ({"key"}, set()),
    "copy": ({"key", "source_key"}, {"source_bucket"}),
    "list": (set(), {"prefix", "delimiter", "max_keys", "continuation_token"}),
}
_COMMON = {"op", "connection", "bucket", "endpoint_url", "region"}


class S3Input(ActionInput):
    op: Op = Field(description="What to do: put, get, list, head, copy or delete.")
    connection: str | None = Field(
        None, description="An s3 connection; without one, boto3's default credentials."
    )
    bucket: str | None = Field(None, description="The bucket (default: the connection's).")
    key: str | None = Field(None, description="The object's key.")
    file: str | None = Field(None, description="put: upload this file of the work directory.")
    content: str | None = Field(None, description="put: upload this text (UTF-8).")
    content_type: str | None = Field(
        None, description="put: the object's Content-Type (default: guessed from the name)."
    )
    metadata: dict[str, str] = Field(default_factory=dict, description="put: user metadata.")
    dest: str | None = Field(
        None,
        description="get: save to this path of the work directory (a directory keeps the "
        "key's file name); without it the text is returned as content.",
    )
    prefix: str | None = Field(None, description="list: only keys starting with this.")
    delimiter: str | None = Field(
        None, description='list: group keys by this (usually "/"); groups come as prefixes.'
    )
    max_keys: int = Field(1000, ge=1, le=100_000, description="list: the most keys returned.")
    continuation_token: str | None = Field(
        None, description="list: go on from where a truncated list stopped."
    )
    source_key: str | None = Field(None, description="copy: the key to copy from.")
    source_bucket: str | None = Field(None, description="copy: its bucket (default: bucket).")
    endpoint_url: str | None = Field(None, description="Overrides the connection's endpoint.")
    region: str | None = Field(None, description="Overrides the connection's region.")

    @model_validator(mode="after")
    def _fits_op(self) -> S3Input:
        needed, optional = _NEEDS[self.op]
        missing = sorted(n for n in needed if not getattr(self, n))
        if missing:
            raise ValueError(f"op {self.op} needs {' and '.join(missing)}")
        extra = sorted(self.model_fields_set - needed - optional - _COMMON)
        if extra:
            raise ValueError(f"op {self.op} does not take {', '.join(extra)}")
        if self.op == "put" and (self.file is None) == (self.content is None):
            raise ValueError("op put needs file or content (one of them)")
        return self


class S3Action(Action):
    name = "s3"
    version = "1"
    description = "Put, get, list, head, copy or delete objects in an S3-compatible store."
    Input = S3Input

    def __init__(self) -> None:
        self._clients: dict[tuple[Any, ...], Any] = {}

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    async def execute(self, ctx: ActionContext, input: S3Input) -> ActionResult:
        config = _settings(ctx, input)
        bucket = input.bucket or config.bucket
        if not bucket:
            raise ActionFailed(
                f"s3 {input.op}: no bucket: give bucket: (or a connection with a default bucket)",
                retryable=False,
            )
        where = f"s3 {input.op} s3://{bucket}/{input.key or input.prefix or ''}"
        handler: Callable[..., dict[str, Any]] = getattr(self, f"_{input.op}")
        stop = threading.Event()
        try:
            client = await self._client(config, ctx.deadline)
            outputs = await asyncio.to_thread(handler, client, ctx, input, bucket, stop)
        except asyncio.CancelledError:
            stop.set()  # the thread finishes its current chunk, then gives up
            raise
        except ActionFailed:
            raise
        except Exception as exc:
            raise _failure(where, exc, bucket) from exc
        return ActionResult(outputs=outputs)

    async def _client(self, config: S3Config, deadline: float | None) -> Any:
        connect, read = CONNECT_TIMEOUT, READ_TIMEOUT
        if deadline is not None:
            left = deadline - time.time()
            if left <= 0:
                raise ActionFailed("s3: the step's deadline has passed")
            # Whole seconds, so that steps with similar time left share a client.
            connect, read = min(connect, math.ceil(left)), min(read, math.ceil(left))
        # SecretStr compares and hashes by its value, so the key tells credentials apart.
        key = (*config.model_dump().values(), connect, read)
        client = self._clients.pop(key, None)
        if client is None:
            client = await asyncio.to_thread(_make_client, config, connect, read)
            if len(self._clients) >= _MAX_CLIENTS:
                # Not closed: a step in another thread may be using it; the GC will.
                self._clients.pop(next(iter(self._clients)))
        self._clients[key] = client  # most recently used last
        return client

    # -- operations (in a worker thread) ---------------------------------------------------
    def _put(
        self, client: Any, ctx: ActionContext, input: S3Input, bucket: str, stop: threading.Event
    ) -> dict[str, Any]:
        key = input.key
        extra: dict[str, Any] = {}
        if input.metadata:
            extra["Metadata"] = input.metadata
        if input.content is not None:
            data = input.content.encode("utf-8")
            extra["ContentType"] = (
                input.content_type or _guess_type(key) or "text/plain; charset=utf-8"
            )
            answer = client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
            digest, size, etag = hashlib.sha256(data).hexdigest(), len(data), answer["ETag"]
        else:
            assert input.file is not None
            path = resolve_in_workdir(ctx.workdir, input.file, what="file")
            if not path.is_file():
                raise ActionFailed(f"s3 put: file {input.file!r} does not exist", retryable=False)
            extra["ContentType"] = (
                input.content_type or _guess_type(path.name) or "application/octet-stream"
            )
            digest, size = sha256_file(path)
            answer, etag = _upload(client, path, size, bucket, key, extra)
        return {
            "bucket": bucket, "key": key, "etag": _etag(etag), "size": size, "sha256": digest,
            "version_id": answer.get("VersionId"),
        }  # fmt: skip

    def _get(
        self, client: Any, ctx: ActionContext, input: S3Input, bucket: str, stop: threading.Event
    ) -> dict[str, Any]:
        target = _dest(ctx.workdir, input.dest, input.key) if input.dest else None
        answer = client.get_object(Bucket=bucket, Key=input.key)
        body = answer["Body"]
        outputs = _describe(bucket, input.key, answer)
        try:
            if target is not None:
                outputs["sha256"], outputs["size"] = _save(body, target, stop)
                outputs["path"] = relative(os.path.relpath(target, os.path.realpath(ctx.workdir)))
                return outputs
            if answer["ContentLength"] > MAX_CONTENT_BYTES:
                raise ActionFailed(
                    f"s3 get s3://{bucket}/{input.key}: the object is {answer['ContentLength']} "
                    f"bytes, more than the {MAX_CONTENT_BYTES} a step output holds; give dest: "
                    "to save it to a file",
                    retryable=False,
                )
            data = body.read()
        finally:
            body.close()
        try:
            outputs["content"] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ActionFailed(
                f"s3 get s3://{bucket}/{input.key}: the object is not UTF-8 text; give dest: "
                "to save it to a file",
                retryable=False,
            ) from None
        outputs["sha256"] = hashlib.sha256(data).hexdigest()
        return outputs

    def _head(
        self, client: Any, ctx: ActionContext, input: S3Input, bucket: str, stop: threading.Event
    ) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        try:
            answer = client.head_object(Bucket=bucket, Key=input.key)
        except ClientError as exc:
            if _code(exc) not in ("404", "NoSuchKey", "NotFound"):
                raise
            # A missing bucket is also a bare 404 to HEAD: tell the two apart.
            _head_bucket(client, bucket, f"s3 head s3://{bucket}/{input.key}")
            return {"bucket": bucket, "key": input.key, "exists": False}
        return {**_describe(bucket, input.key, answer), "exists": True}

    def _delete(
        self, client: Any, ctx: ActionContext, input: S3Input, bucket: str, stop: threading.Event
    ) -> dict[str, Any]:
        answer = client.delete_object(Bucket=bucket, Key=input.key)
        return {"bucket": bucket, "key": input.key, "version_id": answer.get("VersionId")}

    def _copy(
        self, client: Any, ctx: ActionContext, input: S3Input, bucket: str, stop: threading.Event
    ) -> dict[str, Any]:
        source = {"Bucket": input.source_bucket or bucket, "Key": input.source_key}
        answer = client.copy_object(Bucket=bucket, Key=input.key, CopySource=source)
        return {
            "bucket": bucket, "key": input.key, "source_bucket": source["Bucket"],
            "source_key": input.source_key, "etag": _etag(answer["CopyObjectResult"]["ETag"]),
            "version_id": answer.get("VersionId"),
        }  # fmt: skip

    def _list(
        self, client: Any, ctx: ActionContext, input: S3Input, bucket: str, stop: threading.Event
    ) -> dict[str, Any]:
        keys: list[dict[str, Any]] = []
        prefixes: list[str] = []
        token = input.continuation_token
        while not stop.is_set():
            request: dict[str, Any] = {"Bucket": bucket, "Prefix": input.prefix or ""}
            # MaxKeys counts keys and grouped prefixes alike.
            request["MaxKeys"] = min(1000, input.max_keys - len(keys) - len(prefixes))
            if input.delimiter:
                request["Delimiter"] = input.delimiter
            if token:
                request["ContinuationToken"] = token
            page = client.list_objects_v2(**request)
            keys.extend(_entry(item) for item in page.get("Contents", []))
            prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if token is None or len(keys) + len(prefixes) >= input.max_keys:
                break
        return {
            "bucket": bucket, "prefix": input.prefix or "", "keys": keys, "prefixes": prefixes,
            "count": len(keys), "truncated": token is not None, "continuation_token": token,
        }  # fmt: skip


# -- helpers -----------------------------------------------------------------------------
def _settings(ctx: ActionContext, input: S3Input) -> S3Config:
    """The connection's settings (none: boto3's defaults), with the step's overrides."""
    data: dict[str, Any] = {}
    what = "s3"
    if input.connection:
        conn = ctx.connection(input.connection)
        if conn.type != "s3":
            raise ActionFailed(
                f"connection {conn.name!r} is of type {conn.type!r}; s3 needs an s3 connection",
                retryable=False,
            )
        data, what = dict(conn.config), f"s3: connection {conn.name!r}"
    data.update({k: getattr(input, k) for k in ("endpoint_url", "region") if getattr(input, k)})
    try:
        return S3Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ActionFailed(f"{what}: {problems}", retryable=False) from None


def _upload(
    client: Any, path: Path, size: int, bucket: str, key: Any, extra: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """One PUT for most files; parts for a large one (whose ETag is then asked for:
    the managed transfer does not return it)."""
    if size <= MULTIPART_THRESHOLD:
        with open(path, "rb") as file:
            answer: dict[str, Any] = client.put_object(Bucket=bucket, Key=key, Body=file, **extra)
        return answer, str(answer["ETag"])
    from boto3.s3.transfer import TransferConfig

    transfer = TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD
    )
    client.upload_file(str(path), bucket, key, ExtraArgs=extra, Config=transfer)
    answer = client.head_object(Bucket=bucket, Key=key)
    return answer, str(answer["ETag"])


def _dest(workdir: Path, dest: str, key: Any) -> Path:
    target = resolve_in_workdir(workdir, dest, what="dest")
    if dest.endswith("/") or target.is_dir():
        name = str(key).rstrip("/").rsplit("/", 1)[-1]
        if not name or name in (".", ".."):
            raise ActionFailed(
                f"s3 get: key {key!r} has no file name for dest {dest!r}", retryable=False
            )
        target = resolve_in_workdir(workdir, os.path.join(dest, name), what="dest")
    return target


def _save(body: Any, target: Path, stop: threading.Event) -> tuple[str, int]:
    """Stream ``body`` into ``target`` through a temporary file; its SHA-256 and size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.plait-{secrets.token_hex(4)}.tmp")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "xb") as out:
            for chunk in body.iter_chunks(_CHUNK):
                if stop.is_set():
                    raise ActionFailed("s3 get: cancelled")
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest.hexdigest(), size


def _describe(bucket: str, key: Any, answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "key": key,
        "etag": _etag(answer.get("ETag", "")),
        "size": answer.get("ContentLength"),
        "content_type": answer.get("ContentType"),
        "last_modified": _iso(answer.get("LastModified")),
        "metadata": answer.get("Metadata", {}),
        "version_id": answer.get("VersionId"),
    }


def _entry(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": item["Key"],
        "size": item.get("Size"),
        "last_modified": _iso(item.get("LastModified")),
        "etag": _etag(item.get("ETag", "")),
    }


def _etag(value: str) -> str:
    """Without the quotes S3 wraps it in."""
    return value.strip('"')


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _guess_type(name: Any) -> str | None:
    return mimetypes.guess_type(str(name))[0]


def _head_bucket(client: Any, bucket: str, where: str) -> None:
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
            raise ActionFailed(
                f"{where}: bucket {bucket!r} does not exist", retryable=False
            ) from None
        raise


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _failure(where: str, exc: Exception, bucket: str | None = None) -> ActionFailed:
    """A boto error as a failure that says what happened and whether to try again."""
    from botocore import exceptions as boto

    if isinstance(exc, boto.ClientError):
        code, status = _code(exc), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        text = exc.response.get("Error", {}).get("Message") or ""
        if code == "NoSuchBucket":
            text = f"bucket {bucket!r} does not exist"
        elif code in ("NoSuchKey", "404"):
            text = "no such key"
        retryable = code not in _FATAL_CODES and (
            status >= 500 or status in (408, 429) or not status
        )
        return ActionFailed(
            f"{where}: {text} ({code})" if text else f"{where}: {code}", retryable=retryable
        )
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return ActionFailed(
            f"{where}: no credentials: name an s3 connection (connection:) or give AWS "
            f"credentials to the worker (AWS_ACCESS_KEY_ID, …) ({exc})",
            retryable=False,
        )
    if isinstance(exc, boto.ParamValidationError):
        return ActionFailed(f"{where}: {' '.join(str(exc).split())}", retryable=False)
    if isinstance(exc, boto.NoRegionError | boto.InvalidEndpointConfigurationError):
        return ActionFailed(f"{where}: {exc}", retryable=False)
    if isinstance(exc, boto.BotoCoreError):  # cannot connect, timed out, closed early
        return ActionFailed(f"{where}: {exc}")
    if isinstance(exc, ValueError):  # botocore's word for a malformed setting
        return ActionFailed(f"{where}: {exc}", retryable=False)
    if isinstance(exc, OSError):
        return ActionFailed(f"{where}: {exc.strerror or exc}", retryable=False)
    return ActionFailed(f"{where}: {type(exc).__name__}: {exc}")
