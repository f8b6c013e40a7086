"""SplitRTC signaling: Socket.IO room broker for WebRTC set-up and stats (docs/signaling.md).

Use `create_app()` for an aiohttp app, `await start_server()` to run one in-process on a
free port (then `await server.close()`, or
`async with await start_server() as server:`), or `run()` to block until Ctrl-C.
"""

from .app import create_app
from .limits import Limits
from .runner import RunningServer, run, serve_forever, start_server

__all__ = ["Limits", "RunningServer", "create_app", "run", "serve_forever", "start_server"]
