"""Access tokens: issuing, decoding, and every forgery the decoder must refuse."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from plait.errors import PlaitError
from plait.security.tokens import DEFAULT_LEEWAY, Claims, TokenError, TokenIssuer

SECRET = b"s" * 32
NOW = 1_700_000_000


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(SECRET)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "sub": "alice",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 900,
        "jti": "j1",
        "iss": "plait",
        "typ": "access",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def _signed(payload: dict[str, Any], key: bytes = SECRET, alg: str = "HS256") -> str:
    """Sign any payload, even one PyJWT's encoder would refuse to build."""
    return jwt.PyJWS().encode(json.dumps(payload).encode(), key, algorithm=alg)


def _reason(issuer: TokenIssuer, token: str, now: float = NOW) -> str:
    with pytest.raises(TokenError) as caught:
        issuer.decode_access(token, now)
    return caught.value.reason


def test_issue_and_decode_round_trip(issuer: TokenIssuer) -> None:
    token, claims = issuer.issue_access("alice", now=NOW, roles=["editor"], session="fam1")
    assert claims == Claims(
        sub="alice",
        iat=NOW,
        nbf=NOW,
        exp=NOW + 900,
        jti=claims.jti,
        iss="plait",
        typ="access",
        roles=("editor",),
        session="fam1",
    )
    assert issuer.decode_access(token, NOW + 10) == claims
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"


def test_every_token_has_its_own_jti(issuer: TokenIssuer) -> None:
    jtis = {issuer.issue_access("alice", now=NOW)[1].jti for _ in range(20)}
    assert len(jtis) == 20


def test_fractional_now_is_truncated(issuer: TokenIssuer) -> None:
    _, claims = issuer.issue_access("alice", now=NOW + 0.9)
    assert claims.iat == NOW


def test_optional_claims_are_left_out_when_empty(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue_access("alice", now=NOW)
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert set(payload) == {"sub", "iat", "nbf", "exp", "jti", "iss", "typ"}


def test_custom_issuer_and_ttl() -> None:
    issuer = TokenIssuer(SECRET, issuer="plait-eu", access_ttl=60)
    token, claims = issuer.issue_access("bob", now=NOW)
    assert claims.exp == NOW + 60
    assert issuer.decode_access(token, NOW).iss == "plait-eu"


def test_short_secret_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenIssuer(b"short")


@pytest.mark.parametrize(("ttl", "leeway"), [(0, 10), (-5, 10), (900, -1)])
def test_bad_ttl_or_leeway_refused(ttl: int, leeway: int) -> None:
    with pytest.raises(ValueError):
        TokenIssuer(SECRET, access_ttl=ttl, leeway=leeway)


def test_empty_subject_refused(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError):
        issuer.issue_access("", now=NOW)


def test_token_error_is_a_plait_error() -> None:
    assert issubclass(TokenError, PlaitError)


# --- expiry and validity window ------------------------------------------------------


def test_expiry_with_explicit_leeway(issuer: TokenIssuer) -> None:
    token, claims = issuer.issue_access("alice", now=NOW)
    assert issuer.leeway == DEFAULT_LEEWAY == 30
    assert issuer.decode_access(token, claims.exp + DEFAULT_LEEWAY - 1).sub == "alice"
    assert _reason(issuer, token, claims.exp + DEFAULT_LEEWAY) == "expired"
    assert _reason(issuer, token, claims.exp + 3600) == "expired"


def test_no_leeway_means_expired_at_exp() -> None:
    issuer = TokenIssuer(SECRET, leeway=0)
    token, claims = issuer.issue_access("alice", now=NOW)
    assert issuer.decode_access(token, claims.exp - 1).sub == "alice"
    assert _reason(issuer, token, claims.exp) == "expired"


def test_not_yet_valid(issuer: TokenIssuer) -> None:
    token = _signed(_payload(nbf=NOW + 600, iat=NOW))
    assert _reason(issuer, token, NOW) == "not_yet_valid"
    assert issuer.decode_access(token, NOW + 600 - DEFAULT_LEEWAY).sub == "alice"


def test_issued_in_the_future_refused(issuer: TokenIssuer) -> None:
    token = _signed(_payload(iat=NOW + 600, nbf=NOW))
    assert _reason(issuer, token, NOW) == "not_yet_valid"


def test_small_clock_skew_tolerated(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue_access("alice", now=NOW + 20)  # another API's clock is ahead
    assert issuer.decode_access(token, NOW).sub == "alice"


# --- forgeries and tampering ---------------------------------------------------------


def test_alg_none_refused(issuer: TokenIssuer) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(json.dumps(_payload()).encode())
    assert _reason(issuer, f"{header}.{body}.") == "algorithm"


@pytest.mark.parametrize("alg", ["None", "NONE", "nOnE"])
def test_alg_none_spelling_variants_refused(issuer: TokenIssuer, alg: str) -> None:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64(json.dumps(_payload()).encode())
    assert _reason(issuer, f"{header}.{body}.") == "algorithm"


def test_missing_alg_refused(issuer: TokenIssuer) -> None:
    header = _b64(json.dumps({"typ": "JWT"}).encode())
    body = _b64(json.dumps(_payload()).encode())
    assert _reason(issuer, f"{header}.{body}.sig") == "algorithm"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_with_the_right_key_refused(issuer: TokenIssuer, alg: str) -> None:
    assert _reason(issuer, _signed(_payload(), alg=alg)) == "algorithm"


def test_rs256_token_refused(issuer: TokenIssuer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _reason(issuer, jwt.encode(_payload(), key, algorithm="RS256")) == "algorithm"


def test_rs256_header_over_hmac_signature_refused(issuer: TokenIssuer) -> None:
    """Algorithm confusion: the header says RS256 but the MAC is HS256 over our key."""
    good = _signed(_payload())
    _, body, _ = good.split(".")
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    import hashlib
    import hmac

    mac = hmac.new(SECRET, f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert _reason(issuer, f"{header}.{body}.{_b64(mac)}") == "algorithm"


def test_wrong_key_refused(issuer: TokenIssuer) -> None:
    assert _reason(issuer, _signed(_payload(), key=b"x" * 32)) == "signature"


def test_other_issuer_instance_with_other_secret_refused(issuer: TokenIssuer) -> None:
    token, _ = TokenIssuer(b"o" * 32).issue_access("alice", now=NOW)
    assert _reason(issuer, token) == "signature"


def test_edited_payload_refused(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue_access("alice", now=NOW)
    header, _, signature = token.split(".")
    forged = _b64(json.dumps(_payload(sub="admin")).encode())
    assert _reason(issuer, f"{header}.{forged}.{signature}") == "signature"


def test_stripped_signature_refused(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue_access("alice", now=NOW)
    header, body, _ = token.split(".")
    assert _reason(issuer, f"{header}.{body}.") == "signature"


def test_wrong_issuer_refused(issuer: TokenIssuer) -> None:
    assert _reason(issuer, _signed(_payload(iss="someone-else"))) == "issuer"


def test_wrong_type_refused(issuer: TokenIssuer) -> None:
    assert _reason(issuer, _signed(_payload(typ="refresh"))) == "type"


@pytest.mark.parametrize("claim", ["sub", "iat", "nbf", "exp", "jti", "iss", "typ"])
def test_missing_claim_refused(issuer: TokenIssuer, claim: str) -> None:
    payload = _payload()
    del payload[claim]
    with pytest.raises(TokenError) as caught:
        issuer.decode_access(_signed(payload), NOW)
    assert caught.value.reason == "missing_claim"
    assert claim in str(caught.value)


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": "never"},
        {"exp": float(NOW + 900)},
        {"iat": True},
        {"sub": 42},
        {"sub": ""},
        {"jti": ["x"]},
        {"roles": "admin"},
        {"roles": [1, 2]},
        {"sid": 7},
        {"iss": 5},
    ],
)
def test_mistyped_claim_refused(issuer: TokenIssuer, overrides: dict[str, Any]) -> None:
    assert _reason(issuer, _signed(_payload(**overrides))) == "bad_claim"


@pytest.mark.parametrize(
    "token",
    ["", "not-a-jwt", "a.b", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", "x" * 9000],
)
def test_malformed_tokens_refused(issuer: TokenIssuer, token: str) -> None:
    assert _reason(issuer, token) in {"malformed", "signature"}


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'"a string"'])
def test_signed_payload_that_is_not_an_object_refused(issuer: TokenIssuer, body: bytes) -> None:
    token = jwt.PyJWS().encode(body, SECRET, algorithm="HS256")
    assert _reason(issuer, token) == "malformed"


def test_non_string_token_refused(issuer: TokenIssuer) -> None:
    assert _reason(issuer, None) == "malformed"  # type: ignore[arg-type]


def test_error_message_is_readable(issuer: TokenIssuer) -> None:
    with pytest.raises(TokenError, match="expired"):
        issuer.decode_access(issuer.issue_access("a", now=NOW)[0], NOW + 10_000)
