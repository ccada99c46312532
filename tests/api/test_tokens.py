"""JWT minting and verification (api/tokens.py) and Bearer authentication (api/authentication.py).

Each refusal test first shows that the same token without the defect is accepted (a control),
so the 401 is due to the defect under test. Forged tokens are assembled by hand
(``_forge``): PyJWT itself refuses to produce most of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from api import tokens
from api.models import TokenFamily
from api.services.sessions import session_start

ME = "/api/v1/me"


# --- helpers ----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _forge(header: dict[str, Any], payload: dict[str, Any], sign: Any = None) -> str:
    """A compact JWS with exactly this header and payload; ``sign(bytes) -> bytes`` or none."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = sign(signing_input.encode("ascii")) if sign else b""
    return f"{signing_input}.{_b64(signature)}"


def _our_signature(message: bytes) -> bytes:
    return tokens.keyring().private.sign(message)


def _header(**extra: Any) -> dict[str, Any]:
    return {"alg": "EdDSA", "typ": "JWT", "kid": settings.JWT_KEY_ID, **extra}


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    """Nothing here is about password hashing: spare each persona the Argon2 cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def session(client_user):
    """A live sign-in of ``client_user``: (user, family, now)."""
    now = timezone.now()
    pair = session_start(user=client_user, amr=["pwd"], now=now)
    return client_user, TokenFamily.objects.get(pk=pair.family_id), now


def _claims(session, **changes: Any) -> dict[str, Any]:
    user, family, now = session
    iat = int(now.timestamp())
    claims = {
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "sub": str(user.pk),
        "iat": iat,
        "nbf": iat,
        "exp": iat + 300,
        "jti": str(uuid.uuid4()),
        "typ": "access",
        "role": user.role,
        "auth_time": iat,
        "amr": ["pwd"],
        "fam": str(family.pk),
    }
    claims.update(changes)
    return claims


def _signed(session, header: dict[str, Any] | None = None, **changes: Any) -> str:
    return _forge(header or _header(), _claims(session, **changes), _our_signature)


def _get_me(token: str, **extra: Any):
    return APIClient().get(ME, HTTP_AUTHORIZATION=f"Bearer {token}", **extra)


def _assert_401(response) -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 401
    assert body["code"] in {"invalid_token", "not_authenticated"}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_control_a_well_formed_token_is_accepted(session):
    assert _get_me(_signed(session)).status_code == 200


def test_mint_then_decode_round_trips_the_claims(client_user):
    now = timezone.now()
    family_id = uuid.uuid4()
    token = tokens.mint(
        typ=tokens.ACCESS,
        sub=str(client_user.pk),
        role="client",
        now=now,
        ttl_seconds=300,
        auth_time=now - timedelta(seconds=5),
        amr=["pwd", "otp", "mfa"],
        family_id=family_id,
    )
    claims = tokens.decode(token, expected_typ=tokens.ACCESS, now=now)
    assert claims.sub == str(client_user.pk)
    assert claims.typ == "access"
    assert claims.role == "client"
    assert claims.exp - claims.iat == 300
    assert claims.auth_time == int(now.timestamp()) - 5
    assert claims.amr == ("pwd", "otp", "mfa")
    assert claims.mfa is True
    assert claims.fam == str(family_id)
    assert jwt.get_unverified_header(token) == {
        "alg": "EdDSA",
        "typ": "JWT",
        "kid": settings.JWT_KEY_ID,
    }


# --- JWT-01 / JWT-02: algorithm -----------------------------------------------------------------


def test_jwt_01_alg_none_is_refused(session):
    for alg in ("none", "None", "NONE"):
        token = _forge(_header(alg=alg), _claims(session))
        _assert_401(_get_me(token))
        with pytest.raises(tokens.TokenError):
            tokens.decode(token, expected_typ=tokens.ACCESS, now=session[2])


def test_jwt_01_alg_none_with_our_signature_kept_is_refused(session):
    valid = _signed(session)
    head, payload, signature = valid.split(".")
    token = f"{_b64(json.dumps(_header(alg='none')).encode())}.{payload}.{signature}"
    _assert_401(_get_me(token))


def test_jwt_02_hs256_signed_with_public_key_is_refused(session):
    public = tokens.keyring().public[settings.JWT_KEY_ID]
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for key in (pem, raw):
        for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
            token = _forge(
                _header(alg=alg),
                _claims(session),
                lambda m, key=key, digest=digest: hmac.new(key, m, digest).digest(),
            )
            _assert_401(_get_me(token))


def test_jwt_02_another_asymmetric_algorithm_is_refused(session):
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(_claims(session), key, algorithm="ES256", headers={"kid": "dev-1"})
    _assert_401(_get_me(token))


def test_jwt_02_decode_passes_only_the_pinned_algorithm(session, monkeypatch):
    seen: list[Any] = []
    real = jwt.decode

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("algorithms"))
        return real(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", spy)
    tokens.decode(_signed(session), expected_typ=tokens.ACCESS, now=session[2])
    assert seen == [["EdDSA"]]


# --- JWT-03: malformed tokens -------------------------------------------------------------------


def test_jwt_03_tampered_payload_is_refused(session):
    head, _, signature = _signed(session).split(".")
    payload = _b64(json.dumps(_claims(session, role="admin", amr=["pwd", "otp", "mfa"])).encode())
    _assert_401(_get_me(f"{head}.{payload}.{signature}"))


def test_jwt_03_tampered_signature_is_refused(session):
    token = _signed(session)
    head, payload, signature = token.split(".")
    flipped = bytearray(base64.urlsafe_b64decode(signature + "=="))
    flipped[0] ^= 0x01
    _assert_401(_get_me(f"{head}.{payload}.{_b64(bytes(flipped))}"))
    _assert_401(_get_me(f"{head}.{payload}."))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-10], id="truncated-signature"),
        pytest.param(lambda t: ".".join(t.split(".")[:2]), id="two-segments"),
        pytest.param(lambda t: t.split(".")[0], id="header-only"),
        pytest.param(lambda t: t + ".e30", id="four-segments"),
        pytest.param(lambda t: t + ".e30.e30", id="five-segments-jwe-shape"),
        pytest.param(lambda t: t.replace(".", "..", 1), id="empty-segment"),
        pytest.param(lambda t: t[:20] + "*" + t[21:], id="non-base64url-star"),
        pytest.param(lambda t: t[:20] + "+/" + t[22:], id="base64-not-url"),
        pytest.param(lambda t: t + "==", id="padding"),
        pytest.param(lambda t: t[:30] + "é" + t[31:], id="non-ascii"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "...", id="dots-only"),
    ],
)
def test_jwt_03_malformed_token_is_401_not_500(session, mangle):
    _assert_401(_get_me(mangle(_signed(session))))


def test_jwt_03_ten_kilobyte_header_is_refused(session):
    token = _signed(session, header=_header(pad="A" * 10_240))
    assert len(token) > 10_000
    _assert_401(_get_me(token))
    with pytest.raises(tokens.TokenError):
        tokens.decode(token, expected_typ=tokens.ACCESS, now=session[2])


@pytest.mark.parametrize(
    "header_value",
    ["Bearer", "Bearer a b", "Bearer \x00", "Bearer " + "x" * 20_000],
    ids=["no-token", "three-parts", "nul", "huge"],
)
def test_jwt_03_malformed_authorization_header_is_401(db, header_value):
    response = APIClient().get(ME, HTTP_AUTHORIZATION=header_value)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("[]", id="header-is-a-list"),
        pytest.param('"x"', id="header-is-a-string"),
        pytest.param("{", id="header-not-json"),
        pytest.param('{"alg":"EdDSA","kid":"dev-1"}{"x":1}', id="trailing-garbage"),
    ],
)
def test_jwt_03_header_that_is_not_a_json_object_is_refused(session, header):
    _, payload, signature = _signed(session).split(".")
    _assert_401(_get_me(f"{_b64(header.encode())}.{payload}.{signature}"))


def test_jwt_03_payload_that_is_not_a_json_object_is_refused(session):
    for payload in (b"[]", b"null", b"1", b"not json"):
        signing_input = f"{_b64(json.dumps(_header()).encode())}.{_b64(payload)}"
        token = f"{signing_input}.{_b64(_our_signature(signing_input.encode()))}"
        _assert_401(_get_me(token))


# --- JWT-04: times ------------------------------------------------------------------------------


def test_jwt_04_expired_token_is_refused(session):
    now = int(session[2].timestamp())
    assert _get_me(_signed(session, iat=now - 290, nbf=now - 290, exp=now + 10)).status_code == 200
    _assert_401(_get_me(_signed(session, iat=now - 400, nbf=now - 400, exp=now - 1)))
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.decode(
            _signed(session, iat=now - 400, nbf=now - 400, exp=now - 1),
            expected_typ=tokens.ACCESS,
            now=session[2],
        )


def test_jwt_04_exp_is_checked_against_the_injected_now(session):
    token = _signed(session)
    now = session[2]
    assert tokens.decode(token, expected_typ=tokens.ACCESS, now=now + timedelta(seconds=299))
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.decode(token, expected_typ=tokens.ACCESS, now=now + timedelta(seconds=300))


def test_jwt_04_nbf_in_the_future_beyond_leeway_is_refused(session):
    now = int(session[2].timestamp())
    assert _get_me(_signed(session, nbf=now + 20)).status_code == 200  # within 30 s leeway
    _assert_401(_get_me(_signed(session, nbf=now + 120)))


def test_jwt_04_iat_in_the_future_beyond_leeway_is_refused(session):
    now = int(session[2].timestamp())
    assert _get_me(_signed(session, iat=now + 20, exp=now + 320)).status_code == 200
    _assert_401(_get_me(_signed(session, iat=now + 120, nbf=now, exp=now + 420)))


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "auth_time"])
@pytest.mark.parametrize("value", ["1999999999", 1.5e9, True, None, [1]])
def test_jwt_04_time_claims_must_be_integers(session, claim, value):
    _assert_401(_get_me(_signed(session, **{claim: value})))


# --- JWT-05: audience and issuer ------------------------------------------------------------------


@pytest.mark.parametrize(
    "aud",
    [
        "urn:telehealth:other",
        "urn:telehealth:client",  # a prefix of ours
        "urn:telehealth:clients ",
        "URN:TELEHEALTH:CLIENTS",
        [settings.JWT_AUDIENCE, "urn:someone:else"],
        [settings.JWT_AUDIENCE],  # policy: aud must be the single string of ours
        [],
        "",
    ],
)
def test_jwt_05_wrong_audience_is_refused(session, aud):
    _assert_401(_get_me(_signed(session, aud=aud)))


@pytest.mark.parametrize(
    "iss",
    [
        "urn:someone:else",
        "urn:",  # a prefix of ours (CVE-2024-53861 shape)
        "urn:telehealth",
        "telehealth:api",  # a substring of ours
        "urn:telehealth:api:evil",
        settings.JWT_ISSUER.upper(),
        [settings.JWT_ISSUER],
        "",
    ],
)
def test_jwt_05_wrong_issuer_is_refused(session, iss):
    _assert_401(_get_me(_signed(session, iss=iss)))


# --- JWT-06: required claims --------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "jti", "typ", "aud", "iss", "fam"])
def test_jwt_06_missing_required_claim_is_refused(session, claim):
    claims = _claims(session)
    del claims[claim]
    _assert_401(_get_me(_forge(_header(), claims, _our_signature)))


@pytest.mark.parametrize("sub", [123, None, ["x"], {"id": 1}, "", "not-a-uuid"])
def test_jwt_06_sub_not_a_user_id_string_is_refused(session, sub):
    _assert_401(_get_me(_signed(session, sub=sub)))


def test_jwt_06_sub_of_another_user_is_refused(session, outsider):
    """The family belongs to the signed-in user: a token naming someone else is refused."""
    _assert_401(_get_me(_signed(session, sub=str(outsider.pk))))


@pytest.mark.parametrize(
    "changes",
    [{"amr": "pwd"}, {"amr": [1]}, {"role": None}, {"jti": 5}, {"fam": 7}, {"fam": "nope"}],
    ids=["amr-string", "amr-ints", "role-null", "jti-int", "fam-int", "fam-not-uuid"],
)
def test_jwt_06_claims_of_the_wrong_type_are_refused(session, changes):
    _assert_401(_get_me(_signed(session, **changes)))


# --- JWT-07: token types --------------------------------------------------------------------------


def test_jwt_07_refresh_token_used_as_bearer_is_refused(client_user):
    pair = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    assert _get_me(pair.access).status_code == 200
    _assert_401(_get_me(pair.refresh))


def test_jwt_07_mfa_pending_token_used_as_bearer_is_refused(therapist):
    from api.services.sessions import mfa_challenge_issue

    _assert_401(_get_me(mfa_challenge_issue(user=therapist, now=timezone.now())))


@pytest.mark.parametrize("typ", ["refresh", "mfa_pending", "id", "", None, "ACCESS"])
def test_jwt_07_typ_other_than_access_is_refused(session, typ):
    _assert_401(_get_me(_signed(session, typ=typ)))


# --- JWT-08: header tricks ------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if anything tries to open a connection (e.g. to fetch a jku/x5u)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _attacker() -> tuple[Ed25519PrivateKey, dict[str, str]]:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw), "kid": "attacker"}


@pytest.mark.parametrize(
    "extra",
    [
        {"kid": "attacker", "jku": "https://attacker.example/jwks.json"},
        {"jku": "https://attacker.example/jwks.json"},
        {"kid": "attacker", "x5u": "https://attacker.example/cert.pem"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"kid": "attacker", "jwk": "ATTACKER_JWK"},
        {"jwk": "ATTACKER_JWK"},
    ],
    ids=["jku+kid", "jku", "x5u+kid", "x5u", "jwk+kid", "jwk"],
)
def test_jwt_08_keys_named_by_the_token_are_never_used(session, no_network, extra):
    attacker_key, attacker_jwk = _attacker()
    header = _header(**{k: attacker_jwk if v == "ATTACKER_JWK" else v for k, v in extra.items()})
    _assert_401(_get_me(_forge(header, _claims(session), attacker_key.sign)))


def test_jwt_08_jku_on_a_token_we_signed_is_ignored(session, no_network):
    token = _signed(session, header=_header(jku="https://attacker.example/jwks.json"))
    assert _get_me(token).status_code == 200


@pytest.mark.parametrize(
    "kid",
    ["../../../../dev/null", "/etc/passwd", "dev-1/../dev-1", "unknown", "", 1, None, ["dev-1"]],
)
def test_jwt_08_unknown_or_path_like_kid_is_refused(session, kid):
    _assert_401(_get_me(_signed(session, header=_header(kid=kid))))


def test_jwt_08_missing_kid_is_refused(session):
    header = _header()
    del header["kid"]
    _assert_401(_get_me(_signed(session, header=header)))


@pytest.mark.parametrize("crit", [["exp"], ["b64"], ["x-unknown"], [], "exp"])
def test_jwt_08_crit_header_is_refused(session, crit):
    _assert_401(_get_me(_signed(session, header=_header(crit=crit, **{"x-unknown": True}))))


# --- JWT-14: signing-key rotation -----------------------------------------------------------------


def _pem_pair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def _current_public_pem() -> str:
    return (
        tokens.keyring()
        .public[settings.JWT_KEY_ID]
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_jwt_14_tokens_of_the_previous_key_verify_during_the_overlap(client_user):
    old_kid, old_public = settings.JWT_KEY_ID, _current_public_pem()
    old = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    new_private, _ = _pem_pair()
    with override_settings(
        JWT_PRIVATE_KEY=new_private,
        JWT_KEY_ID="2030-01",
        JWT_PREVIOUS_PUBLIC_KEYS={old_kid: old_public},
    ):
        assert _get_me(old.access).status_code == 200
        new = session_start(user=client_user, amr=["pwd"], now=timezone.now())
        assert jwt.get_unverified_header(new.access)["kid"] == "2030-01"
        assert _get_me(new.access).status_code == 200
        # The old refresh token is exchanged for tokens under the new key.
        response = APIClient().post(
            "/api/v1/auth/token/refresh", {"refresh": old.refresh}, format="json"
        )
        assert response.status_code == 200
        assert jwt.get_unverified_header(response.json()["access"])["kid"] == "2030-01"


def test_jwt_14_tokens_of_a_removed_key_are_refused(client_user):
    old = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    new_private, _ = _pem_pair()
    with override_settings(
        JWT_PRIVATE_KEY=new_private, JWT_KEY_ID="2030-01", JWT_PREVIOUS_PUBLIC_KEYS={}
    ):
        _assert_401(_get_me(old.access))
        response = APIClient().post(
            "/api/v1/auth/token/refresh", {"refresh": old.refresh}, format="json"
        )
        assert response.status_code == 401


def test_jwt_14_a_previous_kid_cannot_shadow_the_current_key(client_user):
    """A previous key listed under the current kid is ignored: the current key wins."""
    _, stranger_public = _pem_pair()
    with override_settings(JWT_PREVIOUS_PUBLIC_KEYS={settings.JWT_KEY_ID: stranger_public}):
        pair = session_start(user=client_user, amr=["pwd"], now=timezone.now())
        assert _get_me(pair.access).status_code == 200


# --- JWT-12 (authentication side) and family checks ---------------------------------------


def test_access_token_of_a_revoked_family_is_refused_at_once(session):
    token = _signed(session)
    assert _get_me(token).status_code == 200
    TokenFamily.objects.filter(pk=session[1].pk).update(revoked_at=timezone.now())
    _assert_401(_get_me(token))


def test_jwt_12_access_token_of_an_inactive_user_is_refused_at_once(session):
    token = _signed(session)
    type(session[0]).objects.filter(pk=session[0].pk).update(is_active=False)
    _assert_401(_get_me(token))


def test_jwt_12_access_token_of_a_deleted_user_is_refused(session):
    token = _signed(session)
    session[0].delete()
    _assert_401(_get_me(token))


# --- JWT-15: tokens never in URLs, logs or error bodies -------------------------------------


def test_jwt_15_a_token_in_the_query_string_is_not_accepted(client_user):
    pair = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    for name in ("access_token", "token", "jwt", "bearer"):
        response = APIClient().get(f"{ME}?{name}={pair.access}")
        assert response.status_code == 401
        assert pair.access not in response.content.decode()


def test_jwt_15_refused_tokens_are_not_logged_or_echoed(session, caplog):
    now = int(session[2].timestamp())
    expired = _signed(session, iat=now - 400, nbf=now - 400, exp=now - 1)
    tampered = expired[:-4] + "AAAA"
    request_logger = logging.getLogger("django.request")  # does not propagate to the root
    request_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, "django.request"):
            responses = [_get_me(expired), _get_me(tampered)]
    finally:
        request_logger.removeHandler(caplog.handler)
    for response in responses:
        assert response.status_code == 401
        text = response.content.decode() + str(dict(response.headers))
        for token in (expired, tampered):
            assert token not in text
            assert token.split(".")[2] not in text
    assert caplog.records  # the refusals were logged ...
    for token in (expired, tampered):
        assert token not in caplog.text  # ... without the token
        assert token.split(".")[1] not in caplog.text
