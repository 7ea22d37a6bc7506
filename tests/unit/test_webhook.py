"""Webhook signatures (body-only and timestamped), key rotation, bodies, delivery ids."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from plait.triggers.webhook import (
    WebhookRejected,
    delivery_key,
    parse_body,
    sign,
    verify,
)

SECRET = "It's a Secret to Everybody"
BODY = b"Hello, World!"
NOW = 1_700_000_000.0
# GitHub's published test vector for X-Hub-Signature-256, an independent check.
GITHUB_VECTOR = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def rejected(status: int, match: str, **kwargs: Any) -> Any:
    """Call verify with defaults overridden by ``kwargs`` and return the rejection."""
    args: dict[str, Any] = {"secret": SECRET, "body": BODY, "header": sign(SECRET, BODY)}
    args.update(kwargs)
    secret, body, header = args.pop("secret"), args.pop("body"), args.pop("header")
    args.setdefault("now", NOW)
    with pytest.raises(WebhookRejected, match=match) as info:
        verify(secret, body, header, **args)
    assert info.value.status == status
    return info.value


# -- sign ------------------------------------------------------------------------------------


def test_sign_matches_githubs_published_vector() -> None:
    assert sign(SECRET, BODY) == GITHUB_VECTOR
    assert sign(SECRET.encode(), BODY) == GITHUB_VECTOR


def test_sign_with_a_timestamp_covers_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, "1700000000") == f"sha256={expected}"
    assert sign(SECRET, BODY, "1700000000") != sign(SECRET, BODY)


@pytest.mark.parametrize("secret", ["", b""])
def test_an_empty_secret_is_a_configuration_error(secret: str | bytes) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        sign(secret, BODY)
    with pytest.raises(ValueError, match="non-empty"):
        verify(secret, BODY, GITHUB_VECTOR, now=NOW)


# -- verify: body-only (the default) --------------------------------------------------------


def test_a_correct_signature_is_accepted() -> None:
    verify(SECRET, BODY, GITHUB_VECTOR, now=NOW)
    verify(SECRET.encode(), BODY, GITHUB_VECTOR, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        GITHUB_VECTOR.upper().replace("SHA256=", "sha256="),  # upper-case hex
        "SHA256=" + GITHUB_VECTOR.split("=")[1],  # upper-case algorithm
        f"  {GITHUB_VECTOR}\t",  # surrounding whitespace
    ],
)
def test_equivalent_header_spellings_are_accepted(header: str) -> None:
    verify(SECRET, BODY, header, now=NOW)


def test_a_tampered_body_is_refused() -> None:
    error = rejected(401, "does not match", body=b"Hello, World?")
    assert GITHUB_VECTOR.split("=")[1] not in str(error)  # never reveal the expected value


def test_a_wrong_secret_is_refused() -> None:
    rejected(401, "does not match", secret="not the secret")


@pytest.mark.parametrize("header", [None, "", "   "])
def test_a_missing_signature_is_refused(header: str | None) -> None:
    rejected(401, "missing X-Plait-Signature", header=header)


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ("757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", "malformed"),
        ("sha256=", "malformed"),
        ("sha256=xyz", "malformed"),
        ("sha256=" + "ab" * 31, "64 hex digits"),
        ("sha256=" + "ab" * 33, "64 hex digits"),
        ("sha1=" + "ab" * 20, "unsupported signature algorithm 'sha1'"),
        (f"{GITHUB_VECTOR},{GITHUB_VECTOR}", "malformed"),
        ("sha256 = " + "ab" * 32, "malformed"),
    ],
)
def test_a_malformed_signature_header_is_a_bad_request(header: str, match: str) -> None:
    rejected(400, match, header=header)


def test_the_timestamp_header_is_ignored_unless_required() -> None:
    verify(SECRET, BODY, GITHUB_VECTOR, timestamp_header="garbage", now=NOW)


def test_comparison_is_constant_time_and_covers_every_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verify(["new secret", SECRET, "older secret"], BODY, GITHUB_VECTOR, now=NOW)
    assert len(calls) == 3  # no early exit that would time which key matched


# -- verify: rotation -------------------------------------------------------------------------


def test_rotated_secrets_accept_old_and_new_signatures() -> None:
    secrets = ["new secret", SECRET]
    verify(secrets, BODY, sign("new secret", BODY), now=NOW)
    verify(secrets, BODY, sign(SECRET, BODY), now=NOW)
    verify((b"new secret", SECRET), BODY, GITHUB_VECTOR, now=NOW)
    rejected(401, "does not match", secret=secrets, header=sign("retired secret", BODY))


def test_an_empty_secret_list_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        verify([], BODY, GITHUB_VECTOR, now=NOW)


# -- verify: require_timestamp ------------------------------------------------------------------


def stamped(timestamp: str, *, body: bytes = BODY, **kwargs: Any) -> None:
    verify(
        SECRET,
        body,
        sign(SECRET, body, timestamp),
        timestamp_header=timestamp,
        require_timestamp=True,
        now=NOW,
        **kwargs,
    )


def test_a_fresh_timestamped_signature_is_accepted() -> None:
    stamped(str(int(NOW)))
    stamped(str(int(NOW) - 300))  # exactly at the tolerance
    stamped(str(int(NOW) + 300))  # small clock skew ahead
    stamped(str(int(NOW) - 3000), tolerance=3600)


def test_a_stale_timestamp_is_refused() -> None:
    with pytest.raises(WebhookRejected, match=r"301s old; the limit is 300s") as info:
        stamped(str(int(NOW) - 301))
    assert info.value.status == 401


def test_a_future_timestamp_is_refused() -> None:
    with pytest.raises(WebhookRejected, match=r"301s in the future") as info:
        stamped(str(int(NOW) + 301))
    assert info.value.status == 401
    with pytest.raises(WebhookRejected, match="in the future"):
        stamped(str(int(NOW) + 61), tolerance=60)


def test_a_required_timestamp_must_be_present_and_numeric() -> None:
    rejected(401, "missing X-Plait-Timestamp", require_timestamp=True)
    rejected(401, "missing X-Plait-Timestamp", require_timestamp=True, timestamp_header=" ")
    for bad in ["yesterday", "1700000000.5", "-1700000000", "1" * 13]:
        rejected(400, "integer Unix seconds", require_timestamp=True, timestamp_header=bad)


def test_a_body_only_signature_does_not_pass_when_a_timestamp_is_required() -> None:
    rejected(
        401,
        "does not match",
        header=GITHUB_VECTOR,
        timestamp_header=str(int(NOW)),
        require_timestamp=True,
    )


def test_changing_the_timestamp_breaks_the_signature() -> None:
    header = sign(SECRET, BODY, str(int(NOW) - 1000))
    rejected(
        401,
        "does not match",
        header=header,
        timestamp_header=str(int(NOW)),  # a replay with a refreshed timestamp
        require_timestamp=True,
    )


# -- parse_body ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"ref": "main", "n": 1}', "application/json", {"ref": "main", "n": 1}),
        (b"[1, 2]", "application/json; charset=utf-8", [1, 2]),
        (b'{"a": true}', "application/vnd.github+json", {"a": True}),
        (b'{"a": null}', "Application/JSON", {"a": None}),
        (
            b"a=1&b=2&b=3&c=",
            "application/x-www-form-urlencoded",
            {"a": "1", "b": ["2", "3"], "c": ""},
        ),
        (b"name=J%C3%BCrgen+M", "application/x-www-form-urlencoded", {"name": "Jürgen M"}),
        (b"plain words", "text/plain", "plain words"),
        (b"no type given", None, "no type given"),
        ("Grüße".encode("latin-1"), "text/plain; charset=latin-1", "Grüße"),
        (b"", "application/json", None),
    ],
)
def test_bodies_become_the_trigger_value(
    body: bytes, content_type: str | None, expected: Any
) -> None:
    assert parse_body(body, content_type) == expected


@pytest.mark.parametrize(
    ("body", "content_type", "status", "match"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'{"x": NaN}', "application/json", 400, "not valid JSON"),
        (b"[" * 100_000, "application/json", 400, "not valid JSON"),
        (b"\xff\xfe\xfa", "application/json", 400, "not valid JSON"),
        (b"\xff\xfe\xfa", "text/plain", 400, "not valid utf-8 text"),
        (b"x", "text/plain; charset=klingon", 415, "unknown charset"),
        (b"--b\r\n", "multipart/form-data; boundary=b", 415, "multipart"),
        (b"&".join([b"a=1"] * 1001), "application/x-www-form-urlencoded", 400, "form body"),
    ],
)
def test_bad_bodies_are_clear_client_errors(
    body: bytes, content_type: str, status: int, match: str
) -> None:
    with pytest.raises(WebhookRejected, match=match) as info:
        parse_body(body, content_type)
    assert info.value.status == status


def test_a_body_over_the_limit_is_refused_before_parsing() -> None:
    with pytest.raises(WebhookRejected, match="11 bytes; the limit is 10") as info:
        parse_body(b'{"a": "12"}', "application/json", max_bytes=10)
    assert info.value.status == 413
    assert parse_body(b'{"a": "1"}', "application/json", max_bytes=10) == {"a": "1"}


# -- delivery ids ---------------------------------------------------------------------------------


def test_delivery_key_is_per_workflow_and_stable() -> None:
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert delivery_key("deploy", delivery) == f"deploy/{delivery}"
    assert delivery_key("deploy", f" {delivery} ") == delivery_key("deploy", delivery)
    assert delivery_key("deploy", delivery) != delivery_key("build", delivery)
    assert delivery_key("deploy", None) is None


@pytest.mark.parametrize("delivery", ["", "  ", "has space", "tab\there", "é", "x" * 201])
def test_bad_delivery_ids_are_refused(delivery: str) -> None:
    with pytest.raises(WebhookRejected, match="X-Plait-Delivery") as info:
        delivery_key("deploy", delivery)
    assert info.value.status == 400
