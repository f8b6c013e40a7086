"""The sender page's LAN URL, and a QR code of it in the terminal, so a phone joins in one step.

``server.py`` prints these at start (``print_sender_urls``); ``python -m signaling.qr URL``
prints the code for any URL. The code is drawn with half-block characters, two modules a
character, light modules as blocks (most terminals draw light text on a dark background, so
the code shows dark on light, as printed), with a quiet zone of 2 modules around it.
"""
from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from typing import TextIO
from urllib.parse import urlencode

import segno

from signaling.lan import lan_addresses

QUIET_ZONE = 2


def render(text: str) -> str:
    """The QR code of ``text`` as terminal text (error correction M: survives a glare spot)."""
    code = segno.make(text, error="m", micro=False)
    out = io.StringIO()
    code.terminal(out=out, compact=True, border=QUIET_ZONE)
    return out.getvalue()


def sender_urls(port: int, https: bool, room: str, token: str | None = None,
                host: str | None = None) -> list[str]:
    """The sender page's URL on each LAN address (or on ``host`` when the server listens on
    one address); ``token`` is put in the query so the phone needs nothing else."""
    scheme = "https" if https else "http"
    query = urlencode({"room": room, **({"token": token} if token else {})})
    hosts = [host] if host and host not in ("0.0.0.0", "::", "") else lan_addresses() or ["127.0.0.1"]
    default = 443 if https else 80
    return [f"{scheme}://{h if ':' not in h else f'[{h}]'}{'' if port == default else f':{port}'}/sender?{query}"
            for h in hosts]


def print_sender_urls(port: int, https: bool, room: str, token: str | None = None,
                      host: str | None = None, out: TextIO | None = None) -> list[str]:
    """Print every LAN URL of the sender page and a QR code of the first; returns the URLs."""
    stream = out or sys.stdout
    urls = sender_urls(port, https, room, token, host)
    print("sender page on the LAN:", file=stream)
    for url in urls:
        print(f"  {url}", file=stream)
    if not https:
        print("  (plain HTTP: phones allow the camera only over HTTPS; see python -m signaling.certs)", file=stream)
    print(render(urls[0]), file=stream)
    return urls


def main(argv: Sequence[str] | None = None) -> int:
    from splitcore.process import cli

    p = cli.parser("python -m signaling.qr", __doc__)
    p.add_argument("url", nargs="?", help="URL to encode (default: the sender page on this machine's LAN address)")
    p.add_argument("--port", type=int, default=8080, help="server port for the default URL (default: %(default)s)")
    p.add_argument("--https", action="store_true", help="the server serves HTTPS")
    p.add_argument("--room", default="demo", help="room for the default URL (default: %(default)s)")
    args = p.parse_args(argv)
    if args.url:
        print(args.url)
        print(render(args.url))
    else:
        print_sender_urls(args.port, args.https, args.room)
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
