"""Room tokens (signaling.token) with real PyJWT, and TURN REST credentials (signaling.turn)
against Debian's coturn itself, allocated through aioice (the TURN client aiortc uses)."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import warnings
from collections.abc import Iterator

import jwt
import pytest

from signaling import token, turn
from splitcore.process.children import PY, ROOT
from tests.netns import Coturn, Testnet, unavailable_reason

SECRET = "k" * 32
OTHER = "z" * 32
NOW = 1_800_000_000


def minted(room: str = "lab", roles: tuple[str, ...] = ("sender",), ttl: float = 3600, now: float = NOW) -> str:
    return token.mint(SECRET, room, roles, ttl, "cam1", now=now)


def refused(tok: object, room: str | None = "lab", role: str = "sender", now: float = NOW + 10,
            secret: str = SECRET) -> token.TokenError:
    with pytest.raises(token.TokenError) as info:
        token.verify(secret, tok, room, role, now=now)
    return info.value


def test_valid_token_gives_its_claims() -> None:
    claims = token.verify(SECRET, minted(roles=("sender", "receiver")), "lab", "receiver", now=NOW + 10)
    assert claims == token.Claims("lab", frozenset({"sender", "receiver"}), "cam1", NOW + 3600, NOW)


def test_each_refusal_has_its_reason() -> None:
    good = minted()
    assert refused(minted(), now=NOW + 3600 + token.LEEWAY_S).reason == "expired"
    assert refused(minted(now=NOW + 3600)).reason == "not_yet_valid"
    assert refused(good, secret=OTHER).reason == "bad_signature"
    assert refused(good, room="other").reason == "wrong_room"
    assert refused(good, role="receiver").reason == "role_not_allowed"   # the takeover: sender token as receiver
    assert refused(good, role="dashboard").reason == "role_not_allowed"
    assert refused(good, room=None, role="admin").reason == "wrong_room"  # server-wide needs room "*"
    e = refused(good, secret=OTHER)
    assert "secret" in str(e)


@pytest.mark.parametrize("bad", [
    "", "not-a-jwt", "a.b.c", 42, None, "x" * (token.MAX_TOKEN_CHARS + 1),
    # a correctly signed JWT that is not ours: no audience, no room
    jwt.encode({"exp": NOW + 60, "iat": NOW}, SECRET, algorithm="HS256"),
    # ours but lacking roles / with a role that does not exist / roles not a list
    jwt.encode({"aud": "splitrtc", "room": "lab", "exp": NOW + 60, "iat": NOW}, SECRET, algorithm="HS256"),
    jwt.encode({"aud": "splitrtc", "room": "lab", "roles": ["root"], "exp": NOW + 60, "iat": NOW}, SECRET, algorithm="HS256"),
    jwt.encode({"aud": "splitrtc", "room": "lab", "roles": "sender", "exp": NOW + 60, "iat": NOW}, SECRET, algorithm="HS256"),
    jwt.encode({"aud": "splitrtc", "room": "../x", "roles": ["sender"], "exp": NOW + 60, "iat": NOW}, SECRET,
               algorithm="HS256"),
    jwt.encode({"aud": "splitrtc", "room": "lab", "roles": ["sender"], "exp": "later", "iat": NOW}, SECRET,
               algorithm="HS256"),
])
def test_malformed_tokens(bad: object) -> None:
    assert refused(bad).reason == "malformed"


def test_unsigned_and_other_algorithm_tokens_are_refused() -> None:
    claims = {"aud": "splitrtc", "room": "lab", "roles": ["receiver"], "exp": NOW + 60, "iat": NOW}
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    assert refused((header + b"." + body + b".").decode(), role="receiver").reason == "malformed"
    with warnings.catch_warnings():  # PyJWT warns that 32 bytes are short for HS512: not the point here
        warnings.simplefilter("ignore")
        hs512 = jwt.encode(claims, SECRET, algorithm="HS512")
    assert refused(hs512, role="receiver").reason == "malformed"


def test_room_star_covers_every_room_and_server_wide_checks() -> None:
    admin = token.mint(SECRET, "*", ["admin", "dashboard"], 60, now=NOW)
    assert token.verify(SECRET, admin, None, "admin", now=NOW).room == "*"
    assert token.verify(SECRET, admin, "any-room", "dashboard", now=NOW).allows("dashboard")
    assert refused(admin, room="any-room", role="receiver", now=NOW).reason == "role_not_allowed"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"secret": "short"}, "at least 32"),
    ({"room": "a b"}, "room"),
    ({"roles": ["owner"]}, "roles"),
    ({"roles": []}, "roles"),
    ({"ttl": 0}, "ttl"),
    ({"ttl": 400 * 86400}, "ttl"),
    ({"name": "x\n"}, "name"),
])
def test_mint_refuses_what_it_should_never_sign(kwargs: dict, message: str) -> None:
    args = {"secret": SECRET, "room": "lab", "roles": ["sender"], "ttl": 60, "name": "n", **kwargs}
    with pytest.raises(ValueError, match=message):
        token.mint(args["secret"], args["room"], args["roles"], args["ttl"], args["name"])
    with pytest.raises(ValueError, match="at least 32"):
        token.verify("short", "x", "lab", "sender")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "signaling.token", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=30)


def test_cli_mints_a_token_the_module_verifies() -> None:
    done = _cli("--room", "lab", "--role", "sender", "--role", "receiver", "--ttl", "2h", "--name", "cam1",
                env={"SPLITRTC_SECRET": SECRET})
    assert done.returncode == 0, done.stderr
    (tok,) = done.stdout.split()
    claims = token.verify(SECRET, tok, "lab", "receiver")
    assert claims.roles == {"sender", "receiver"} and claims.name == "cam1"
    assert 7190 <= claims.exp - time.time() <= 7200
    fresh = _cli("--new-secret")
    assert fresh.returncode == 0 and len(fresh.stdout.strip()) >= 32


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--room", "lab", "--role", "sender"], {"SPLITRTC_SECRET": ""}, "no secret"),
    (["--room", "lab"], {"SPLITRTC_SECRET": SECRET}, "--role"),
    (["--room", "lab", "--role", "sender", "--secret", "short"], {}, "at least 32"),
    (["--room", "lab", "--role", "owner"], {"SPLITRTC_SECRET": SECRET}, "invalid choice"),
    (["--room", "lab", "--role", "sender", "--ttl", "soon"], {"SPLITRTC_SECRET": SECRET}, "duration"),
])
def test_cli_errors_are_one_line_and_exit_2(args: list[str], env: dict[str, str], message: str) -> None:
    done = _cli(*args, env=env)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


# -- TURN REST credentials against coturn ------------------------------------------------------------------
TURN_SECRET = "turn-secret-" + "t" * 20


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Testnet, Coturn]]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Testnet(tmp_path_factory.mktemp("turn")) as net:
        yield net, net.start_coturn(TURN_SECRET)


def allocate(net: Testnet, username: str, credential: str) -> dict:
    out = net.workdir / "alloc.json"
    done = net.run(net.device, [PY, "tests/netns_peer.py", "allocate", "--out", str(out),
                                "--turn", f"{net.ip.relay_dev}:3478", "--username", username,
                                "--credential", credential], check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def test_minted_turn_credentials_get_an_allocation(relay: tuple[Testnet, Coturn]) -> None:
    net, _ = relay
    cred = turn.mint(TURN_SECRET, "cam:1 front", ttl_s=600)
    assert cred.username.endswith(":cam_1_front") and int(cred.username.split(":")[0]) == cred.expires_at
    got = allocate(net, cred.username, cred.credential)
    assert got["ok"], got
    assert got["relayed"][0] in (net.ip.relay_dev, net.ip.relay_srv)


@pytest.mark.parametrize("case", ["expired", "wrong_secret", "tampered_name", "tampered_expiry"])
def test_bad_turn_credentials_are_refused_by_coturn(relay: tuple[Testnet, Coturn], case: str) -> None:
    net, coturn = relay
    if case == "expired":
        cred = turn.mint(TURN_SECRET, "cam1", ttl_s=60, now=time.time() - 3600)
        username, credential = cred.username, cred.credential
    elif case == "wrong_secret":
        cred = turn.mint("not-" + TURN_SECRET, "cam1", ttl_s=600)
        username, credential = cred.username, cred.credential
    else:
        cred = turn.mint(TURN_SECRET, "cam1", ttl_s=600)
        expiry, name = cred.username.split(":", 1)
        username = f"{expiry}:cam2" if case == "tampered_name" else f"{int(expiry) + 86400}:{name}"
        credential = cred.credential
    got = allocate(net, username, credential)
    assert not got["ok"], f"{case}: coturn granted {got}"
    assert "401" in got["error"], got
