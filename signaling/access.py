"""Access control: who may join which room as what, and who may read /healthz and /models/.

One object, built once from ``server.py --secret`` (or ``$SPLITRTC_SECRET``) and consulted by
the Socket.IO handlers and the HTTP routes, so the rules live in one place:

- ``join``: with a secret, a join must carry a token (``signaling.token``) valid for that
  room and role; the peer's name is the token's when the token has one. Without a secret
  every join is let in, as on a developer's machine.
- ``/healthz``: rooms and peers are listed only to an ``admin`` token for every room
  (``*``); anyone else gets liveness and totals that say nothing about a room.
- ``/models/``: with a secret, only to a token that lets its holder into some room as a
  sender or a receiver (the pages need the head or the tail; a dashboard does not).

An HTTP request carries its token as ``Authorization: Bearer T``, as ``?token=T``, or as the
``splitrtc_token`` cookie that the server sets when it serves ``/sender?token=T`` or
``/receiver?token=T``: the page's own fetches of ``/models/`` (models.js, onnxruntime-web)
then carry it without any code of theirs knowing about tokens.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from aiohttp import web

from . import token as tokens
from .errors import Refused

log = logging.getLogger("splitrtc.signaling.access")

COOKIE = "splitrtc_token"
MODEL_ROLES = ("sender", "receiver")
PAGE_ROLES = {"/sender": "sender", "/receiver": "receiver", "/dashboard": "dashboard"}


class TokenRefused(Refused):
    """A join refused for its token; ``reason`` is a ``signaling.token.REASONS`` code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"token refused ({reason}): {message}")
        self.reason = reason


@dataclass(frozen=True)
class Grant:
    """What a join is allowed: the name to show, and until when (Unix seconds; 0: no limit)."""

    name: str
    expires: int = 0


class Access:
    """The access rules of one server; ``Access(None)`` is an open server."""

    def __init__(self, secret: str | bytes | None = None) -> None:
        self._secret = tokens.check_secret(secret) if secret else None

    @property
    def enabled(self) -> bool:
        return self._secret is not None

    # -- Socket.IO ------------------------------------------------------------------------
    def join(self, room: str, role: str, name: str, token: str | None) -> Grant:
        """The grant for a join, or ``TokenRefused`` saying why not."""
        if self._secret is None:
            return Grant(name)
        if token is None:
            raise TokenRefused("missing", "this server needs a token in the join "
                                          "(--token, $SPLITRTC_TOKEN or ?token=)")
        try:
            claims = tokens.verify(self._secret, token, room, role)
        except tokens.TokenError as exc:
            raise TokenRefused(exc.reason, str(exc)) from None
        return Grant(claims.name or name, claims.exp)

    @staticmethod
    def still_valid(expires: int, now: float | None = None) -> bool:
        """Whether a grant is still good (with the tokens' clock-skew leeway)."""
        return not expires or (time.time() if now is None else now) < expires + tokens.LEEWAY_S

    # -- HTTP -----------------------------------------------------------------------------
    @staticmethod
    def request_token(request: web.Request) -> str | None:
        """The token an HTTP request carries (header, then query, then cookie), or None."""
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip() or None
        return request.query.get("token") or request.cookies.get(COOKIE) or None

    def is_admin(self, request: web.Request) -> bool:
        """Whether the request may see per-room details (/healthz): always on an open server."""
        if self._secret is None:
            return True
        tok = self.request_token(request)
        if tok is None:
            return False
        try:
            tokens.verify(self._secret, tok, None, "admin")
        except tokens.TokenError:
            return False
        return True

    def check_models(self, request: web.Request) -> None:
        """Raise 401 (no token) or 403 (a refused one) unless the request may have model files."""
        if self._secret is None:
            return
        tok = self.request_token(request)
        if tok is None:
            raise web.HTTPUnauthorized(text="model files need a room token: open the page with ?token=, "
                                            "or send Authorization: Bearer TOKEN\n",
                                       headers={"WWW-Authenticate": 'Bearer realm="splitrtc"'})
        try:
            tokens.verify_any_room(self._secret, tok, MODEL_ROLES)
        except tokens.TokenError as exc:
            raise web.HTTPForbidden(text=f"token refused ({exc.reason}): {exc}\n") from None

    def page_cookie(self, request: web.Request, response: web.StreamResponse, page: str) -> None:
        """Set the token cookie on a page served with a valid ``?token=`` for its role, so the
        page's own fetches of /models/ carry it. A bad token sets nothing: the page's join
        says why, in words, which a cookie could not."""
        role = PAGE_ROLES.get(page)
        tok = request.query.get("token")
        if self._secret is None or role is None or not tok:
            return
        try:
            claims = tokens.verify_any_room(self._secret, tok, (role,))
        except tokens.TokenError:
            return
        max_age = max(1, claims.exp + tokens.LEEWAY_S - int(time.time()))
        response.set_cookie(COOKIE, tok, max_age=max_age, path="/models/", httponly=True,
                            samesite="Strict", secure=request.secure)
