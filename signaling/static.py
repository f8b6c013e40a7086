"""HTTP routes for pages, static files, npm vendor assets and models.

Everything is served from a fixed set of folders and every path is resolved and checked to
stay inside its folder, so no URL can read other files of the machine. All responses are
made cross-origin isolated (COOP/COEP/CORP) because onnxruntime-web only uses WASM threads on
such pages, and nothing may come from a CDN: users run this on closed networks.
"""

from __future__ import annotations

import json
import logging
import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .access import Access

log = logging.getLogger("splitrtc.signaling.http")

MANIFEST = "manifest.json"
OPERATING_POINTS = "operating_points.json"  # the study's figures: the sender page's adaptive candidates and leakage
# The model files of one split a page may need: the sender's head (float or int8), the
# receiver's tail. The full model and training outputs are not served.
SPLIT_MODEL_KEYS = ("head", "head_int8", "tail")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

# URL name -> folder relative to the repo root, filled by `npm ci`.
VENDOR_DIRS: dict[str, str] = {
    "socket.io": "node_modules/socket.io-client/dist",
    "onnxruntime-web": "node_modules/onnxruntime-web/dist",
    "uplot": "node_modules/uplot/dist",
}
PAGES: dict[str, str] = {"/dashboard": "dashboard.html", "/sender": "sender.html",
                         "/receiver": "receiver.html"}
MIME_TYPES: dict[str, str] = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".onnx": "application/octet-stream",
    ".json": "application/json",
    ".map": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
ISOLATION_HEADERS: dict[str, str] = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}

FALLBACK_INDEX = """<!doctype html>
<meta charset="utf-8"><title>SplitRTC</title>
<h1>SplitRTC</h1>
<ul><li><a href="/sender">sender</a></li><li><a href="/receiver">receiver</a></li>
<li><a href="/dashboard">dashboard</a></li><li><a href="/healthz">healthz</a></li></ul>
"""


async def add_isolation_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: runs for every response, errors and Socket.IO included."""
    for name, value in ISOLATION_HEADERS.items():
        response.headers.setdefault(name, value)


def content_type(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in MIME_TYPES:
        return MIME_TYPES[suffix]
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def resolve_inside(root: Path, relative: str) -> Path:
    """root/relative, refusing anything that resolves (via .., symlinks...) outside root."""
    if "\x00" in relative or relative.startswith(("/", "\\")):
        raise web.HTTPForbidden(text="path is not allowed\n")
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        log.warning("refused path %r: outside %s", relative, base)
        raise web.HTTPForbidden(text="path is outside the served folder\n")
    return target


def file_response(root: Path, relative: str) -> web.FileResponse:
    path = resolve_inside(root, relative)
    if not path.is_file():
        raise web.HTTPNotFound(text=f"not found: {relative}\n")
    return web.FileResponse(path, headers={"Content-Type": content_type(path),
                                           "Cache-Control": "no-cache"})


class StaticRoutes:
    """The HTTP side of the server; folders are fixed at construction."""

    def __init__(self, static_dir: Path, repo_root: Path, access: Access | None = None) -> None:
        self.static_dir = static_dir
        self.repo_root = repo_root
        self.models_dir = repo_root / "models"
        self.access = access or Access(None)
        self._served: tuple[tuple[int, int], frozenset[str]] | None = None  # manifest (mtime, size) -> files

    def add_to(self, app: web.Application) -> None:
        app.on_response_prepare.append(add_isolation_headers)
        app.router.add_get("/", self.index)
        for url, filename in PAGES.items():
            app.router.add_get(url, self._page_handler(url, filename))
        app.router.add_get("/static/{path:.+}", self.static)
        app.router.add_get("/vendor/{name}/{path:.+}", self.vendor)
        app.router.add_get("/models/{path:.+}", self.models)

    async def index(self, request: web.Request) -> web.StreamResponse:
        if (self.static_dir / "index.html").is_file():
            return file_response(self.static_dir, "index.html")
        return web.Response(text=FALLBACK_INDEX, content_type="text/html")

    def _page_handler(
            self, url: str, filename: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def page(request: web.Request) -> web.StreamResponse:
            if not (self.static_dir / filename).is_file():
                raise web.HTTPNotFound(text=f"{filename} is not in {self.static_dir} yet\n")
            response = file_response(self.static_dir, filename)
            self.access.page_cookie(request, response, url)
            return response
        return page

    async def static(self, request: web.Request) -> web.StreamResponse:
        return file_response(self.static_dir, request.match_info["path"])

    async def models(self, request: web.Request) -> web.StreamResponse:
        """The manifest and the split model files it lists, to a page that may have them."""
        self.access.check_models(request)
        path = request.match_info["path"]
        if path not in self.served_models():
            raise web.HTTPNotFound(text=f"not found: {path} (only the manifest and the head and tail "
                                        "files it lists are served)\n")
        return file_response(self.models_dir, path)

    def served_models(self) -> frozenset[str]:
        """``manifest.json`` and the files its splits name, re-read when the manifest changes
        (a re-export while the server runs)."""
        manifest = self.models_dir / MANIFEST
        try:
            st = manifest.stat()
        except OSError:
            return frozenset()
        key = (st.st_mtime_ns, st.st_size)
        if self._served is None or self._served[0] != key:
            self._served = (key, frozenset({MANIFEST, OPERATING_POINTS, *_split_files(manifest, st.st_size)}))
        return self._served[1]


    async def vendor(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in VENDOR_DIRS:
            raise web.HTTPNotFound(
                text=f"unknown vendor package {name!r}; known: {', '.join(VENDOR_DIRS)}\n")
        folder = self.repo_root / VENDOR_DIRS[name]
        if not folder.is_dir():
            log.error("vendor folder %s is missing: run `npm ci` in %s", folder, self.repo_root)
            raise web.HTTPNotFound(
                text=f"{VENDOR_DIRS[name]} is missing: run the setup (`npm ci` in "
                     f"{self.repo_root}) to install the browser packages\n")
        return file_response(folder, request.match_info["path"])


def _split_files(manifest: Path, size: int) -> list[str]:
    """The model files a page may need, by the manifest; none if it is unreadable (it is
    then served alone, so the page can say what is wrong with it)."""
    if size > MAX_MANIFEST_BYTES:
        log.error("%s is %d bytes: not read for the list of model files", manifest, size)
        return []
    try:
        data: Any = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.error("cannot read %s for the list of model files: %s", manifest, exc)
        return []
    splits = data.get("splits") if isinstance(data, dict) else None
    files = []
    for split in splits if isinstance(splits, list) else []:
        for key in SPLIT_MODEL_KEYS:
            entry = split.get(key) if isinstance(split, dict) else None
            name = entry.get("file") if isinstance(entry, dict) else None
            if isinstance(name, str) and name and "/" not in name and "\\" not in name:
                files.append(name)
    return files

