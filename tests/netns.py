"""A three-namespace test network: a device and a server that cannot reach each other, and a
relay (coturn, the signaling server, packet captures) that both can reach.

    device ns                    relay ns                      server ns
    eth0 10.201.1.2/24 --- to-dev 10.201.1.1   to-srv 10.201.2.1 --- eth0 10.201.2.2/24
                                 coturn :3478 on both,
                                 server.py on 0.0.0.0

The device and server namespaces have only their connected /24 (no default route) and the
relay does not forward, so the only way between them is through coturn: exactly the
"works on localhost, fails deployed" situation, made on one machine. All addresses exist only
inside the namespaces; nothing is routed to or from the machine's own network.

Needs root (``ip netns add``); :func:`unavailable_reason` says why not, for a skip. Every
namespace, veth and process made here is removed on exit from the ``Testnet`` block, and
namespaces left by a killed run (their creator's pid is gone) are removed at the next start.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from splitcore.process.children import PY, ROOT

PREFIX = "srtc"
TURN_PORT = 3478
RELAY_PORTS = (49152, 49407)
_NS_RE = re.compile(rf"^{PREFIX}(\d+)-(dev|srv|rly)$")


@dataclass(frozen=True)
class Addresses:
    """The private addresses of the test network (inside its namespaces only)."""

    relay_dev: str = "10.201.1.1"
    device: str = "10.201.1.2"
    relay_srv: str = "10.201.2.1"
    server: str = "10.201.2.2"
    peer_range: str = "10.201.0.0-10.201.255.255"


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (for ``pytest.skip``), or None if they can."""
    if os.geteuid() != 0:
        return "network-namespace tests need root (ip netns add); CI runs as root"
    for tool in ("ip", "turnserver", "tcpdump"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install -y iproute2 coturn tcpdump)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Delete namespaces of this harness whose creating process no longer exists."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.strip() else ""
        m = _NS_RE.match(name)
        if m and not _pid_alive(int(m[1])):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Testnet:
    """The three namespaces and what runs in them; a context manager that always cleans up."""

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, workdir: Path, addresses: Addresses | None = None) -> None:
        self.workdir = workdir
        self.ip = addresses or Addresses()
        tag = f"{PREFIX}{os.getpid()}"
        self.device, self.server, self.relay = f"{tag}-dev", f"{tag}-srv", f"{tag}-rly"
        self.relay_if_dev, self.relay_if_srv = "to-dev", "to-srv"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._made: list[str] = []

    # -- building and tearing down -------------------------------------------------------
    def __enter__(self) -> Testnet:
        remove_stale()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        for ns in (self.device, self.server, self.relay):
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        ip = self.ip
        for relay_if, ns, relay_addr, addr in ((self.relay_if_dev, self.device, ip.relay_dev, ip.device),
                                               (self.relay_if_srv, self.server, ip.relay_srv, ip.server)):
            _ip("link", "add", relay_if, "netns", self.relay, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.relay, "addr", "add", f"{relay_addr}/24", "dev", relay_if)
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", self.relay, "link", "set", relay_if, "up")
            _ip("-n", ns, "link", "set", "eth0", "up")
        # The relay must not route between the two sides: only coturn may carry traffic.
        self.run(self.relay, ["sysctl", "-qw", "net.ipv4.ip_forward=0"])

    def close(self) -> None:
        """Stop every process started here (newest first), then delete the namespaces."""
        for proc in reversed(self._procs):
            _stop(proc)
        self._procs.clear()
        for ns in reversed(self._made):
            # Whatever is still inside was started by this harness (the namespace is ours).
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._made.clear()

    # -- running things inside --------------------------------------------------------------
    @staticmethod
    def cmd(ns: str, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *args]

    def run(self, ns: str, args: Sequence[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``args`` inside ``ns`` to completion (cwd: the repository)."""
        return subprocess.run(self.cmd(ns, args), cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, check=check, env=_env())

    def spawn(self, ns: str, args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``args`` inside ``ns``, output to ``log``; stopped by ``close`` if still running.

        ``ip netns exec`` execs the command, so the Popen's pid is the program itself."""
        with open(log, "wb") as out:
            proc = subprocess.Popen(self.cmd(ns, args), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=_env())
        self._procs.append(proc)
        return proc

    def launcher(self, ns: str, program: str, name: str) -> Path:
        """An executable script in the work folder that runs ``program`` with its arguments
        inside ``ns``, for a tool that insists on starting a program itself: Playwright
        launching Chromium, say, which it then drives over a pipe (inherited file descriptors
        cross ``ip netns exec`` unchanged, so no debugging port has to be routed out of the
        namespace). What it starts lives in ``ns`` and is killed with it by ``close``."""
        script = self.workdir / name
        script.write_text(f'#!/bin/sh\nexec ip netns exec {shlex.quote(ns)} {shlex.quote(program)} "$@"\n')
        script.chmod(0o755)
        return script

    def python(self, ns: str, args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        return self.spawn(ns, [PY, *args], log)

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10) -> int:
        _stop(proc, sig, grace)
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def udp_listening(self, ns: str, port: int) -> set[str]:
        """IPv4 addresses with a UDP socket bound to ``port`` in ``ns`` (from /proc/net/udp)."""
        text = self.run(ns, ["cat", "/proc/net/udp"]).stdout
        found = set()
        for line in text.splitlines()[1:]:
            local = line.split()[1]
            addr_hex, port_hex = local.split(":")
            if int(port_hex, 16) == port:
                found.add(".".join(str(b) for b in struct.pack("<I", int(addr_hex, 16))))
        return found

    def link_stats(self, ns: str, iface: str) -> dict[str, int]:
        """The kernel's counters of one interface: rx/tx bytes and packets (Ethernet frames)."""
        base = f"/sys/class/net/{iface}/statistics"
        keys = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")
        out = self.run(ns, ["cat", *(f"{base}/{k}" for k in keys)]).stdout.split()
        return dict(zip(keys, map(int, out), strict=True))

    def can_reach(self, ns: str, addr: str) -> bool:
        """Whether ``addr`` answers from ``ns``: a TCP connect to a closed port is refused by
        a reachable host, and fails with "network unreachable" (or times out) otherwise."""
        probe = ("import socket, sys\n"
                 "try:\n"
                 f"    socket.create_connection(('{addr}', 9), timeout=1)\n"
                 "except ConnectionRefusedError:\n"
                 "    sys.exit(0)\n"
                 "except OSError as e:\n"
                 "    print(e); sys.exit(1)\n")
        return self.run(ns, [PY, "-c", probe], check=False).returncode == 0

    # -- services in the relay namespace -------------------------------------------------------
    def start_coturn(self, secret: str, log_name: str = "turnserver.log") -> Coturn:
        return Coturn.start(self, secret, self.workdir / log_name)

    def start_signaling(self, port: int = 8080, extra: Sequence[str] = (), ca: Path | None = None,
                        log_name: str = "server.log") -> tuple[str, str]:
        """``server.py`` in the relay namespace on every address; returns the URLs the device
        side and the server side use to reach it. ``ca``: the server serves HTTPS (``extra``
        has its --cert/--key) with a certificate signed by this CA, which the probe trusts.
        Several may run at once on different ports, each with its own ``log_name``."""
        log = self.workdir / log_name
        proc = self.python(self.relay, ["server.py", "--host", "0.0.0.0", "--port", str(port), *extra], log)
        scheme = "https" if ca is not None else "http"
        device_url, server_url = f"{scheme}://{self.ip.relay_dev}:{port}", f"{scheme}://{self.ip.relay_srv}:{port}"
        context = f"ssl.create_default_context(cafile={str(ca)!r})" if ca is not None else "None"
        deadline = time.monotonic() + 30
        while True:
            probe = self.run(self.device, [PY, "-c", "import ssl, urllib.request as u; "
                                                     f"u.urlopen('{device_url}/healthz', timeout=2, context={context})"],
                             check=False)
            if probe.returncode == 0:
                return device_url, server_url
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server.py in {self.relay} did not answer:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)

    def capture(self, ns: str, iface: str, name: str) -> Capture:
        return Capture.start(self, ns, iface, self.workdir / name)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Coturn:
    """Debian's ``turnserver`` in the relay namespace, with a configuration made for the test:
    TURN REST credentials (``use-auth-secret``), listening and relaying on the relay's two
    addresses, peers allowed in the test's private range (coturn refuses private peers
    otherwise), no TLS, its database, pid file and log in the test's folder."""

    net: Testnet
    proc: subprocess.Popen[bytes]
    config: Path
    log: Path
    secret: str
    realm: str = "splitrtc.test"

    @classmethod
    def start(cls, net: Testnet, secret: str, log: Path) -> Coturn:
        ip, work = net.ip, net.workdir
        config = work / "turnserver.conf"
        config.write_text("\n".join([
            f"listening-port={TURN_PORT}",
            f"listening-ip={ip.relay_dev}", f"listening-ip={ip.relay_srv}",
            f"relay-ip={ip.relay_dev}", f"relay-ip={ip.relay_srv}",
            f"min-port={RELAY_PORTS[0]}", f"max-port={RELAY_PORTS[1]}",
            "use-auth-secret", f"static-auth-secret={secret}", "realm=splitrtc.test",
            "fingerprint", "no-tls", "no-dtls", "no-tcp-relay", "no-cli", "no-multicast-peers",
            f"allowed-peer-ip={ip.peer_range}",
            f"userdb={work / 'turndb'}", f"pidfile={work / 'turnserver.pid'}",
            f"log-file={log}", "simple-log", "verbose", "",
        ]))
        proc = net.spawn(net.relay, ["turnserver", "-c", str(config)], work / "turnserver.stdout")
        turn = cls(net, proc, config, log, secret)
        deadline = time.monotonic() + 20
        while net.udp_listening(net.relay, TURN_PORT) < {ip.relay_dev, ip.relay_srv}:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start:\n{turn.log_text()[-3000:]}")
            time.sleep(0.2)
        return turn

    def log_text(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.log, self.net.workdir / "turnserver.stdout") if p.exists()]
        return "\n".join(parts)

    def url(self, side: str) -> str:
        """``turn:`` url of the relay's address on ``side`` ("device" or "server")."""
        addr = self.net.ip.relay_dev if side == "device" else self.net.ip.relay_srv
        return f"turn:{addr}:{TURN_PORT}?transport=udp"


@dataclass
class Capture:
    """``tcpdump`` writing every packet of one interface to a pcap file."""

    net: Testnet
    proc: subprocess.Popen[bytes]
    path: Path
    log: Path
    stats: dict[str, int] = field(default_factory=dict)

    @classmethod
    def start(cls, net: Testnet, ns: str, iface: str, path: Path) -> Capture:
        log = path.with_suffix(".tcpdump.log")
        proc = net.spawn(ns, ["tcpdump", "-i", iface, "-n", "-s", "0", "-B", "16384", "-U", "-w", str(path)], log)
        cap = cls(net, proc, path, log)
        deadline = time.monotonic() + 10
        while "listening on" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tcpdump did not start: {log.read_text()}")
            time.sleep(0.05)
        return cap

    def stop(self, settle_s: float = 1.0, timeout_s: float = 20.0) -> dict[str, int]:
        """Stop and return tcpdump's counts (captured, received by filter, dropped by kernel).

        On a busy machine tcpdump lags behind the traffic, and SIGINT makes it drop what
        the kernel still holds for it; so first wait until the file stops growing for
        ``settle_s``, then SIGINT (which flushes the file)."""
        deadline = time.monotonic() + timeout_s
        size, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now_size = self.path.stat().st_size if self.path.exists() else 0
            if now_size != size:
                size, since = now_size, time.monotonic()
            elif time.monotonic() - since >= settle_s:
                break
            time.sleep(0.1)
        self.net.stop(self.proc, signal.SIGINT)
        text = self.log.read_text(errors="replace")
        for key, pattern in (("captured", r"(\d+) packets? captured"), ("received", r"(\d+) packets? received by filter"),
                             ("dropped", r"(\d+) packets? dropped by kernel")):
            m = re.search(pattern, text)
            self.stats[key] = int(m[1]) if m else -1
        return self.stats


# -- reading captures ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Packet:
    """One captured IPv4 packet: addresses, protocol, UDP ports and payload (TCP: ports 0)."""

    wire_len: int
    src: str
    dst: str
    proto: int
    sport: int
    dport: int
    payload: bytes


def read_pcap(path: Path) -> Iterator[tuple[int, bytes]]:
    """(original length, captured bytes) of every record of a classic pcap file."""
    data = path.read_bytes()
    magic = data[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}.get(magic)
    if endian is None:
        raise ValueError(f"{path} is not a pcap file")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    if linktype != 1:
        raise ValueError(f"{path}: link type {linktype}, expected Ethernet (1)")
    pos = 24
    while pos + 16 <= len(data):
        _, _, incl, orig = struct.unpack_from(endian + "IIII", data, pos)
        pos += 16
        yield orig, data[pos:pos + incl]
        pos += incl


def packets(path: Path) -> Iterator[Packet]:
    """The IPv4 packets of an Ethernet capture (ARP and IPv6 left out)."""
    for orig, frame in read_pcap(path):
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, 16)[0]
        proto = frame[23]
        src, dst = (".".join(map(str, frame[o:o + 4])) for o in (26, 30))
        body = frame[14 + ihl:14 + total]
        if proto == 17 and len(body) >= 8:
            sport, dport = struct.unpack_from("!HH", body)
            yield Packet(orig, src, dst, proto, sport, dport, body[8:])
        else:
            yield Packet(orig, src, dst, proto, 0, 0, b"")


@dataclass
class TurnTally:
    """What one TURN client's packets carried, in one direction (to or from the relay).

    ``dtls_*`` are the peers' own datagrams (DTLS records) inside ChannelData messages or
    Send/Data indications: the bytes a peer's transport stats count. ``ice_*`` are the
    peers' STUN connectivity checks relayed the same way; ``control_*`` are TURN's own
    requests and responses (Allocate, Refresh, CreatePermission, ChannelBind).
    ``udp_bytes`` is every UDP payload of the flow and ``wire_bytes`` the Ethernet frames."""

    packets: int = 0
    wire_bytes: int = 0
    udp_bytes: int = 0
    dtls_packets: int = 0
    dtls_bytes: int = 0
    ice_bytes: int = 0
    control_bytes: int = 0
    other_bytes: int = 0


def _inner(payload: bytes) -> bytes | None:
    """The peer datagram inside a TURN message (ChannelData, or a Send/Data indication's
    DATA attribute); None for TURN control messages."""
    if len(payload) >= 4 and 0x40 <= payload[0] <= 0x4F:  # ChannelData (RFC 8656 section 12.4)
        length = struct.unpack_from("!H", payload, 2)[0]
        return payload[4:4 + length]
    if len(payload) >= 20 and payload[0] >> 6 == 0:
        msg_type = struct.unpack_from("!H", payload)[0]
        if msg_type in (0x0016, 0x0017):  # Send / Data indication
            pos = 20
            while pos + 4 <= len(payload):
                attr, alen = struct.unpack_from("!HH", payload, pos)
                if attr == 0x0013:
                    return payload[pos + 4:pos + 4 + alen]
                pos += 4 + alen + (-alen % 4)
    return None


def tally_turn(path: Path, client: str, port: int = TURN_PORT) -> dict[str, TurnTally]:
    """TURN traffic between ``client`` and the relay's ``port`` in one capture, per direction
    (``"up"``: client to relay, ``"down"``: relay to client)."""
    out = {"up": TurnTally(), "down": TurnTally()}
    for p in packets(path):
        if p.proto != 17:
            continue
        if p.src == client and p.dport == port:
            t = out["up"]
        elif p.dst == client and p.sport == port:
            t = out["down"]
        else:
            continue
        t.packets += 1
        t.wire_bytes += p.wire_len
        t.udp_bytes += len(p.payload)
        inner = _inner(p.payload)
        if inner is None:
            t.control_bytes += len(p.payload)
        elif inner and 20 <= inner[0] <= 63:
            t.dtls_packets += 1
            t.dtls_bytes += len(inner)
        elif inner and inner[0] >> 6 == 0:
            t.ice_bytes += len(inner)
        else:
            t.other_bytes += len(inner)
    return out
