"""``python -m signaling.turn``: the ICE list it prints carries TURN REST credentials that
coturn would accept (HMAC-SHA1 of the username with the shared secret) for the TTL asked."""
from __future__ import annotations

import json
import time

import pytest

from signaling import turn


def test_prints_an_ice_list_with_valid_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "s" * 40
    before = time.time()
    assert turn.main(["--url", "turn:relay.example:3478", "--name", "rx", "--ttl", "2h", "--secret", secret]) == 0
    (server,) = json.loads(capsys.readouterr().out)
    assert server["urls"] in ("turn:relay.example:3478", ["turn:relay.example:3478"])
    expiry, name = server["username"].split(":", 1)
    assert name == "rx" and before + 7200 - 5 <= int(expiry) <= time.time() + 7200 + 5
    assert server["credential"] == turn.credential_for(secret, server["username"])
    assert server["credential"] != turn.credential_for("t" * 40, server["username"])


def test_without_a_secret_it_says_so(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPLITRTC_TURN_SECRET", raising=False)
    assert turn.main(["--url", "turn:relay.example:3478"]) == 2
    assert "SPLITRTC_TURN_SECRET" in capsys.readouterr().err


def test_an_inline_list_keeps_its_credentials_out_of_the_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    from splitcore.rtc import ice
    assert turn.main(["--url", "turn:relay.example:3478", "--secret", "s" * 40]) == 0
    printed = capsys.readouterr().out.strip()
    credential = json.loads(printed)[0]["credential"]
    described = ice.load(printed).describe()
    assert "turn:relay.example:3478" in described and credential not in described and "username" not in described
