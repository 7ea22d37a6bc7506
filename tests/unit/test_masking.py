"""Masking secret values in text and in nested values."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

from plait.security.masking import MASK, Masker


def test_a_secret_echoed_inside_longer_text() -> None:
    masker = Masker(["s3cr3t-token"])
    assert (
        masker.mask("curl -H 'Authorization: s3cr3t-token' x") == "curl -H 'Authorization: ***' x"
    )
    assert masker.mask("s3cr3t-tokens3cr3t-token!") == "******!"


def test_longest_secret_wins_where_secrets_overlap() -> None:
    masker = Masker(["abc", "abcdef"])
    assert masker.mask("xabcdefx abc") == "x***x ***"
    assert "def" not in masker.mask("abcdef")


def test_short_values_are_not_masked() -> None:
    masker = Masker(["on", "1", ""])
    assert not masker
    assert masker.mask("turn on 1 light") == "turn on 1 light"


def test_multi_line_secrets_are_masked_whole_and_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nMIIEowIBAAKCAQEA\nzL9fQ==\n-----END KEY-----"
    masker = Masker([key])
    assert masker.mask(f"key: {key}") == "key: ***"
    assert masker.mask("line from a tool: MIIEowIBAAKCAQEA") == "line from a tool: ***"
    assert masker.mask("zL9fQ==") == MASK
    crlf = key.replace("\n", "\r\n")
    assert "MIIEowIBAAKCAQEA" not in Masker([crlf]).mask("x MIIEowIBAAKCAQEA\r")


def test_common_encodings_are_masked() -> None:
    secret = 'p@ss w/"q"+é'
    masker = Masker([secret])
    forms = {
        "url": quote(secret, safe=""),
        "json": json.dumps(secret)[1:-1],
        "base64": base64.b64encode(secret.encode()).decode(),
    }
    for name, form in forms.items():
        assert masker.mask(f"<{form}>") == "<***>", name
    assert masker.mask(json.dumps({"password": secret})) == '{"password": "***"}'


def test_mask_value_walks_dicts_lists_and_numbers() -> None:
    masker = Masker(["hunter2", "123456"])
    value = {
        "out": "pw=hunter2",
        "nested": [{"pin": 123456}, ("hunter2", 7)],
        "hunter2": True,
        "n": 1234567,
        "ok": None,
    }
    assert masker.mask_value(value) == {
        "out": "pw=***",
        "nested": [{"pin": MASK}, (MASK, 7)],
        MASK: True,
        "n": 1234567,
        "ok": None,
    }


def test_contains_secret() -> None:
    masker = Masker(["hunter2"])
    assert masker.contains_secret({"a": ["x", "my hunter2"]})
    assert not masker.contains_secret({"a": ["x", 1, None, True]})
    assert not Masker().contains_secret("hunter2")
    assert Masker([4711]).contains_secret([4711])


def test_add_after_use_takes_effect() -> None:
    masker = Masker()
    assert masker.mask("a token here") == "a token here"
    masker.add("token")
    assert masker.mask("a token here") == "a *** here"
    assert len(masker) == 1


def test_no_secrets_is_a_cheap_no_op() -> None:
    masker = Masker()
    line = "an ordinary log line " * 5
    value = {"a": [1, 2, {"b": "c"}]}
    assert masker.mask(line) is line
    assert masker.mask_value(value) is value
    # No pattern is built for nothing to hide (speed is for benchmarks, not timed tests).
    assert masker._compiled() is None


def test_regex_characters_in_secrets_are_literal() -> None:
    masker = Masker(["a.b*c", "(x|y)"])
    assert masker.mask("aXbbc a.b*c (x|y) x") == "aXbbc *** *** x"
