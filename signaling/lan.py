"""This machine's LAN addresses: what a phone on the same Wi-Fi types (or scans) to reach us.

Used for the server certificate's names (``signaling.certs``) and for the sender page's URL
printed at start (``signaling.qr``). Found without any traffic: the IPv4 address of every
interface that is up (Linux ``SIOCGIFADDR``), plus the source address the kernel would use
for a default route (a UDP ``connect`` sends nothing), loopback and link-local left out.
"""
from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

_SIOCGIFADDR = 0x8915


def lan_addresses() -> list[str]:
    """IPv4 LAN addresses, private ranges first (what a phone on Wi-Fi can reach), sorted."""
    found: set[str] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:  # no IPv4 address on this interface, or it is down
                continue
            found.add(socket.inet_ntoa(raw[20:24]))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere, nothing is sent
            found.add(s.getsockname()[0])
    except OSError:  # no default route: only the interfaces' addresses
        pass
    usable = [ipaddress.IPv4Address(a) for a in found]
    usable = [a for a in usable if not (a.is_loopback or a.is_link_local or a.is_unspecified)]
    return [str(a) for a in sorted(usable, key=lambda a: (not a.is_private, a))]
