"""Builds the aiohttp application: Socket.IO signaling, HTTP files and /healthz together.

One factory used by `server.py`, by the tests and by any program that wants a signaling
server in-process, so they all run exactly the same wiring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import socketio
from aiohttp import web

from .access import Access
from .counters import Counters
from .directory import Directory, LocalDirectory
from .guarded import GuardedServer
from .handlers import SignalingEvents
from .iceplan import IcePlan
from .limits import Limits
from .pool import is_pool, pool_name
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
DIRECTORY_KEY = web.AppKey("directory", Directory)


def create_app(static_dir: Path | str | None = None,
               repo_root: Path | str | None = None,
               limits: Limits | None = None,
               access: Access | None = None,
               ice: IcePlan | None = None,
               redis_url: str | None = None) -> web.Application:
    """The whole server as an aiohttp app.

    `repo_root` holds `node_modules/` and `models/`; `static_dir` defaults to its `static/`.
    Both are parameters so tests and deployments can point elsewhere. `limits`: room size
    and per-client rate (defaults: `Limits()`). `access`: token rules (default: an open
    server); `ice`: the ICE servers handed to peers in their join ack (default: none, and no
    ICE fields in the ack). `redis_url`: share rooms and pools with every other node started
    with the same Redis (``redisdir``); the app's start-up raises ``RedisUnavailable`` if
    Redis does not answer. Without it the server is one node, as it always was.
    """
    access = access or Access(None)
    root = Path(repo_root) if repo_root is not None else REPO_ROOT
    static = Path(static_dir) if static_dir is not None else root / "static"
    limits = limits or Limits()
    app = web.Application()
    counters = Counters()
    directory: Directory
    extra: dict[str, object] = {}
    if redis_url is None:
        registry = Registry(limits.max_room_peers)
        directory = LocalDirectory(registry)
    else:
        from .redisdir import RedisDirectory, RedisManager  # the redis package only where it is used
        shared = RedisDirectory(redis_url, limits.max_room_peers)
        directory, registry = shared, shared.registry
        extra["client_manager"] = RedisManager(redis_url, shared)
    sio: socketio.AsyncServer = GuardedServer(limits, counters, async_mode="aiohttp",
                                              max_http_buffer_size=MAX_TRANSPORT_BYTES,
                                              cors_allowed_origins=same_origin, **extra)
    sio.attach(app)  # serves /socket.io/
    SignalingEvents(sio, directory, counters, access, ice).register()

    async def start_directory(app: web.Application) -> None:
        await directory.start()
        if redis_url is not None and not sio.manager_initialized:
            # Subscribe now, not at the first connection (python-socketio's default), so that
            # messages for this node's first clients cannot arrive before the subscription.
            sio.manager_initialized = True
            sio.manager.initialize()

    async def close_directory(app: web.Application) -> None:
        await directory.close()
    app.on_startup.append(start_directory)
    app.on_cleanup.append(close_directory)
    StaticRoutes(static, root, access).add_to(app)
    app.router.add_get("/healthz", healthz)
    app[SIO_KEY] = sio
    app[REGISTRY_KEY] = registry  # this node's own peers
    app[DIRECTORY_KEY] = directory
    app[COUNTERS_KEY] = counters
    app[ACCESS_KEY] = access
    return app


async def healthz(request: web.Request) -> web.Response:
    """Liveness, room/peer counts and what the server did (`counters`), for people and for
    scripts that wait for the server or measure it. Rooms are listed by name only to an
    admin token (or on an open server): their names and sizes are nobody else's business."""
    directory = request.app[DIRECTORY_KEY]
    admin = request.app[ACCESS_KEY].is_admin(request)
    body: dict[str, object] = {"ok": True, **(await directory.counts() if admin else await directory.totals())}
    if admin:
        pools = [room for room in body.get("by_room", {}) if is_pool(room)]  # type: ignore[attr-defined]
        if pools:
            body["pools"] = {pool_name(room): await directory.pool_view(room) for room in pools}
    body["counters"] = request.app[COUNTERS_KEY].as_dict()
    return web.json_response(body)


def same_origin(origin: str | None, environ: dict[str, Any]) -> bool:
    """Socket.IO accepts a browser's connection only from the pages this server serves.

    python-engineio's own same-origin check builds the expected origin from
    ``wsgi.url_scheme``, which its aiohttp driver always sets to ``http`` (or to
    X-Forwarded-Proto): behind ``--cert/--key`` every page's ``Origin: https://host:port`` was
    refused and the websocket failed with 400 (found by the Chromium relay test). The scheme is
    taken from the request itself here; a proxy's X-Forwarded-Proto/-Host are honoured as before.
    Clients that send no Origin (the Python peers) are not checked by engineio at all."""
    request = environ.get("aiohttp.request")
    host = environ.get("HTTP_HOST")
    if origin is None or host is None:
        return origin is None
    scheme = "https" if request is not None and request.secure else "http"
    allowed = {f"{scheme}://{host}"}
    forwarded_proto = environ.get("HTTP_X_FORWARDED_PROTO")
    forwarded_host = environ.get("HTTP_X_FORWARDED_HOST")
    if forwarded_proto or forwarded_host:
        proto = (forwarded_proto or scheme).split(",")[0].strip()
        fhost = (forwarded_host or host).split(",")[0].strip()
        allowed.add(f"{proto}://{fhost}")
    return origin in allowed
