"""Webhook triggers: HMAC-SHA256 signatures, replay protection and the request body.

``POST /api/v1/hooks/{workflow}`` is reachable by anyone who can reach the server, so
a request starts a run only if it carries ``X-Plait-Signature: sha256=<hex>``, the
HMAC-SHA256 of the body under the trigger's secret — the scheme GitHub uses, so the
tools people already have can sign for Plait. The comparison is constant-time
(:func:`hmac.compare_digest`) so response timing reveals nothing about the expected
signature.

A body-only signature can be replayed by anyone who captured one request. Two defences,
both pure here and enforced by the server:

* ``X-Plait-Delivery`` names each delivery; the store keeps :func:`delivery_key` unique
  so a delivery retried by the sender (or replayed) starts at most one run.
* A trigger with ``require_timestamp: true`` makes the signature cover
  ``X-Plait-Timestamp + "." + body`` (as Stripe and Slack do) and refuses timestamps
  older than ``tolerance`` (default 5 minutes) or as far in the future, so a captured
  request is useless after a few minutes. It is opt-in, because senders that cannot
  add a header must keep working with the body-only default.

Several secrets may be given at once so a secret can be rotated without downtime:
the server accepts the old and the new one until every sender has switched.

Nothing here reads a clock: ``now`` (epoch seconds) is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from plait.errors import PlaitError

SIGNATURE_HEADER = "X-Plait-Signature"
TIMESTAMP_HEADER = "X-Plait-Timestamp"
DELIVERY_HEADER = "X-Plait-Delivery"
#: Default age (and clock skew into the future) a signed timestamp may have, in seconds.
DEFAULT_TOLERANCE = 300.0
#: Default largest body accepted, in bytes (1 MiB); the server may pass another limit.
MAX_BODY_BYTES = 1024 * 1024
#: Most form fields parsed from one urlencoded body.
MAX_FORM_FIELDS = 1000
MAX_DELIVERY_ID = 200

Secret = bytes | str
_SIGNATURE = re.compile(r"^(?P<alg>[A-Za-z0-9-]+)=(?P<hex>[0-9A-Fa-f]+)$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_DELIVERY = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII, no spaces or control characters


class WebhookRejected(PlaitError):
    """A webhook request is refused; ``status`` is the HTTP status the server returns.

    ``reason`` is safe to show to the sender: it says what was wrong with the request
    (missing header, mismatch, stale timestamp …) and never echoes a secret or the
    expected signature.
    """

    def __init__(self, reason: str, status: int = 401) -> None:
        self.reason = reason
        self.status = status
        super().__init__(reason)


def sign(secret: Secret, body: bytes, timestamp: str | None = None) -> str:
    """The ``X-Plait-Signature`` value for ``body``: ``sha256=<hex>``.

    With ``timestamp`` the signature covers ``timestamp + "." + body``, binding the
    body to the moment it was sent (for triggers with ``require_timestamp``).
    """
    key = _key(secret)
    digest = hmac.new(key, _signed_message(body, timestamp), hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: Secret | Sequence[Secret],
    body: bytes,
    header: str | None,
    *,
    timestamp_header: str | None = None,
    require_timestamp: bool = False,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Return if the request is authentic, else raise :class:`WebhookRejected`.

    ``secret`` is one secret or several (during a rotation; any one may match).
    Without ``require_timestamp`` the signature covers the body only and any
    ``timestamp_header`` is ignored. With it, the timestamp (integer epoch seconds) must
    be present, within ``tolerance`` seconds of ``now`` either way, and signed together
    with the body. The timestamp is checked before the signature so a stale replay is
    refused without any HMAC work.
    """
    keys = _keys(secret)
    timestamp = _check_timestamp(timestamp_header, now, tolerance) if require_timestamp else None
    given = _parse_signature(header)
    message = _signed_message(body, timestamp)
    matched = False
    for key in keys:  # compare against every key so timing does not reveal which matched
        expected = hmac.new(key, message, hashlib.sha256).digest()
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise WebhookRejected(
            "signature does not match the body (wrong secret, or the body was changed)", 401
        )


def parse_body(body: bytes, content_type: str | None, *, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The request body as the ``trigger`` value a run sees in its scope.

    JSON (``application/json`` or any ``+json`` type) becomes its value — usually an
    object or an array; ``application/x-www-form-urlencoded`` becomes a dict of fields
    (a field given several times becomes a list); anything else is decoded as text in
    its declared charset (UTF-8 by default). An empty body is ``None``. Bad input is a
    :class:`WebhookRejected` with a 4xx status, never an unhandled error.
    """
    if len(body) > max_bytes:
        raise WebhookRejected(f"body is {len(body)} bytes; the limit is {max_bytes}", 413)
    if not body:
        return None
    media, params = _media_type(content_type)
    if media == "application/json" or media.endswith("+json"):
        return _parse_json(body)
    if media == "application/x-www-form-urlencoded":
        return _parse_form(body, params.get("charset", "utf-8"))
    if media.startswith("multipart/"):
        raise WebhookRejected(
            "multipart bodies are not supported; send JSON or urlencoded form fields", 415
        )
    return _decode(body, params.get("charset", "utf-8"))


def delivery_key(workflow: str, delivery_id: str | None) -> str | None:
    """The key that makes one ``X-Plait-Delivery`` start at most one run of a workflow.

    ``None`` when the sender gave no delivery id (such requests are not deduplicated).
    An id that is too long or not printable ASCII is refused rather than truncated, so
    two different ids can never collapse into one key.
    """
    if delivery_id is None:
        return None
    delivery_id = delivery_id.strip()
    if not delivery_id:
        raise WebhookRejected(f"{DELIVERY_HEADER} header is empty", 400)
    if len(delivery_id) > MAX_DELIVERY_ID or not _DELIVERY.match(delivery_id):
        raise WebhookRejected(
            f"{DELIVERY_HEADER} must be 1 to {MAX_DELIVERY_ID} visible ASCII characters", 400
        )
    return f"{workflow}/{delivery_id}"


# -- signatures -----------------------------------------------------------------------


def _key(secret: Secret) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if not isinstance(key, bytes) or not key:
        # An empty key makes every signature forgeable: a configuration error, not a 401.
        raise ValueError("webhook secret must be a non-empty string or bytes")
    return key


def _keys(secret: Secret | Sequence[Secret]) -> list[bytes]:
    if isinstance(secret, str | bytes):
        return [_key(secret)]
    keys = [_key(one) for one in secret]
    if not keys:
        raise ValueError("at least one webhook secret is required")
    return keys


def _signed_message(body: bytes, timestamp: str | None) -> bytes:
    return body if timestamp is None else timestamp.encode("ascii") + b"." + body


def _parse_signature(header: str | None) -> bytes:
    if header is None or not header.strip():
        raise WebhookRejected(f"missing {SIGNATURE_HEADER} header", 401)
    match = _SIGNATURE.match(header.strip())
    if not match:
        raise WebhookRejected(f"malformed {SIGNATURE_HEADER} header: expected sha256=<hex>", 400)
    if match["alg"].lower() != "sha256":
        raise WebhookRejected(
            f"unsupported signature algorithm {match['alg']!r}: use sha256=<hex>", 400
        )
    if len(match["hex"]) != 2 * hashlib.sha256().digest_size:
        raise WebhookRejected(
            f"malformed {SIGNATURE_HEADER} header: sha256 needs 64 hex digits", 400
        )
    return bytes.fromhex(match["hex"])


def _check_timestamp(header: str | None, now: float, tolerance: float) -> str:
    if header is None or not header.strip():
        raise WebhookRejected(f"missing {TIMESTAMP_HEADER} header (this hook requires it)", 401)
    timestamp = header.strip()
    if not _TIMESTAMP.match(timestamp):
        raise WebhookRejected(
            f"malformed {TIMESTAMP_HEADER} header: expected integer Unix seconds", 400
        )
    age = now - int(timestamp)
    if age > tolerance:
        raise WebhookRejected(
            f"{TIMESTAMP_HEADER} is {age:.0f}s old; the limit is {tolerance:.0f}s", 401
        )
    if -age > tolerance:
        raise WebhookRejected(
            f"{TIMESTAMP_HEADER} is {-age:.0f}s in the future; the limit is {tolerance:.0f}s",
            401,
        )
    return timestamp


# -- bodies ---------------------------------------------------------------------------


def _media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    if not content_type:
        return "text/plain", {}
    media, *rest = content_type.split(";")
    params = {}
    for part in rest:
        name, _, value = part.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), params


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge ints
        raise WebhookRejected(f"body is not valid JSON: {exc}", 400) from None


def _parse_form(body: bytes, charset: str) -> dict[str, str | list[str]]:
    text = _decode(body, charset)
    try:
        fields = parse_qs(
            text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FORM_FIELDS
        )
    except ValueError as exc:
        raise WebhookRejected(f"form body is not valid: {exc}", 400) from None
    return {name: values[0] if len(values) == 1 else values for name, values in fields.items()}


def _decode(body: bytes, charset: str) -> str:
    try:
        return body.decode(charset)
    except LookupError:
        raise WebhookRejected(f"unknown charset {charset!r}", 415) from None
    except UnicodeDecodeError:
        raise WebhookRejected(f"body is not valid {charset} text", 400) from None
