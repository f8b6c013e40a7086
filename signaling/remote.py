"""Where a client connects from, for the logs.

python-engineio's aiohttp driver puts ``REMOTE_ADDR: 127.0.0.1`` in every environ, whoever the
client is (seen in the namespace tests: peers at 10.201.2.2 logged as 127.0.0.1); the aiohttp
request it also stores there knows the real peer address.
"""
from __future__ import annotations

from typing import Any


def remote_address(environ: dict[str, Any]) -> str:
    request = environ.get("aiohttp.request")
    remote = getattr(request, "remote", None)
    return str(remote) if remote else str(environ.get("REMOTE_ADDR", "?"))
