"""Builds the aiohttp application: Socket.IO signaling, HTTP files and /healthz together.

One factory used by `server.py`, by the tests and by any program that wants a signaling
server in-process, so they all run exactly the same wiring.
"""

from __future__ import annotations

from pathlib import Path

import socketio
from aiohttp import web

from .access import Access
from .counters import Counters
from .guarded import GuardedServer
from .handlers import SignalingEvents
from .iceplan import IcePlan
from .limits import Limits
from .rooms import Registry
from .static import StaticRoutes

REPO_ROOT = Path(__file__).resolve().parent.parent
# Socket.IO's own message cap. Above our 64 KiB protocol limit, so that a somewhat oversized
# payload gets a clear `error` event; far bigger ones are cut off by the transport (the
# client is disconnected) before they cost memory.
MAX_TRANSPORT_BYTES = 256 * 1024

SIO_KEY = web.AppKey("sio", socketio.AsyncServer)
REGISTRY_KEY = web.AppKey("registry", Registry)
COUNTERS_KEY = web.AppKey("counters", Counters)
ACCESS_KEY = web.AppKey("access", Access)


def create_app(static_dir: Path | str | None = None,
               repo_root: Path | str | None = None,
               limits: Limits | None = None,
               access: Access | None = None,
               ice: IcePlan | None = None) -> web.Application:
    """The whole server as an aiohttp app.

    `repo_root` holds `node_modules/` and `models/`; `static_dir` defaults to its `static/`.
    Both are parameters so tests and deployments can point elsewhere. `limits`: room size
    and per-client rate (defaults: `Limits()`). `access`: token rules (default: an open
    server); `ice`: the ICE servers handed to peers in their join ack (default: none, and no
    ICE fields in the ack).
    """
    access = access or Access(None)
    root = Path(repo_root) if repo_root is not None else REPO_ROOT
    static = Path(static_dir) if static_dir is not None else root / "static"
    limits = limits or Limits()
    app = web.Application()
    registry = Registry(limits.max_room_peers)
    counters = Counters()
    sio: socketio.AsyncServer = GuardedServer(limits, counters, async_mode="aiohttp",
                                              max_http_buffer_size=MAX_TRANSPORT_BYTES)
    sio.attach(app)  # serves /socket.io/
    SignalingEvents(sio, registry, counters, access, ice).register()
    StaticRoutes(static, root, access).add_to(app)
    app.router.add_get("/healthz", healthz)
    app[SIO_KEY] = sio
    app[REGISTRY_KEY] = registry
    app[COUNTERS_KEY] = counters
    app[ACCESS_KEY] = access
    return app


async def healthz(request: web.Request) -> web.Response:
    """Liveness, room/peer counts and what the server did (`counters`), for people and for
    scripts that wait for the server or measure it. Rooms are listed by name only to an
    admin token (or on an open server): their names and sizes are nobody else's business."""
    registry = request.app[REGISTRY_KEY]
    admin = request.app[ACCESS_KEY].is_admin(request)
    return web.json_response({"ok": True, **(registry.counts() if admin else registry.totals()),
                              "counters": request.app[COUNTERS_KEY].as_dict()})
