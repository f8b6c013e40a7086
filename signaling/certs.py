"""A local CA and a server certificate, so phones on the LAN get the pages over HTTPS.

Browsers give camera access (and WASM threads) only to secure contexts: a phone that opens
``http://192.168.1.20:8080/sender`` gets no camera. ``python -m signaling.certs --out
build/certs`` (``make cert``) writes:

- ``ca.pem`` / ``ca.key``: a CA made for this machine alone (kept and reused on later runs,
  so a phone that trusts it once keeps trusting the new server certificates);
- ``server.pem`` / ``server.key``: a certificate for ``localhost``, ``127.0.0.1``, ``::1``,
  this machine's name and LAN addresses (and any ``--host``), signed by that CA, for
  ``server.py --cert build/certs/server.pem --key build/certs/server.key``.

Keys are written readable by their owner only. ``ca.key`` never leaves this machine: whoever
has it can impersonate any site to a phone that trusts the CA.
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signaling.lan import lan_addresses

CA_DAYS = 3650
SERVER_DAYS = 397      # Apple platforms refuse TLS server certificates valid longer than 398 days
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

TRUST_HELP = """\
To let a phone open the pages without a warning, trust the CA on it once:
  copy {ca} to the phone (mail, AirDrop, or serve it and open its URL), then
  - Android: Settings > Security > Encryption & credentials > Install a certificate >
    CA certificate, pick the file.
  - iPhone/iPad: open the file, then Settings > General > VPN & Device Management >
    install the profile, then Settings > General > About > Certificate Trust Settings >
    turn on full trust for "{cn}".
  - A desktop browser: import {ca} as an authority (Chrome: Settings > Privacy and security
    > Security > Manage certificates; Firefox: Settings > Certificates > Authorities).
Python peers: --ca {ca} (or SSL_CERT_FILE={ca}).
Then start: python server.py --host 0.0.0.0 --cert {cert} --key {key}"""


def server_names(extra: Sequence[str] = ()) -> tuple[list[str], list[IpAddress]]:
    """DNS names and IP addresses the certificate covers: loopback, host name, LAN, extra."""
    dns = ["localhost"]
    ips: list[IpAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    host = socket.gethostname()
    if host and host != "localhost":
        dns.append(host)
    for item in [*lan_addresses(), *extra]:
        try:
            ip = ipaddress.ip_address(item)
        except ValueError:
            if item not in dns:
                dns.append(item)
            continue
        if ip not in ips:
            ips.append(ip)
    return dns, ips


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SplitRTC local"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Write atomically; a private key is created 0600 so it is never readable by others."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_or_create_ca(out: Path, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    """The CA in ``out`` if both files are there and it is still valid, else a new one."""
    cert_path, key_path = out / "ca.pem", out / "ca.key"
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and cert.not_valid_after_utc > now + dt.timedelta(days=SERVER_DAYS):
            return cert, key, False
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"SplitRTC local CA ({socket.gethostname()}, {now:%Y-%m-%d})")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    _write(key_path, _pem_key(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, True


def issue_server(out: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                 dns: Sequence[str], ips: Sequence[IpAddress], now: dt.datetime) -> x509.Certificate:
    """A server certificate for ``dns`` and ``ips`` signed by the CA; ``server.pem`` holds it
    followed by the CA certificate (the chain a TLS server sends)."""
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([*(x509.DNSName(d) for d in dns), *(x509.IPAddress(i) for i in ips)])
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(_name(dns[-1] if len(dns) > 1 else "localhost"))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(out / "server.key", _pem_key(key), private=True)
    _write(out / "server.pem", cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    return cert


def make(out: Path, extra_hosts: Sequence[str] = ()) -> dict[str, object]:
    """Create (or renew) the CA and server certificate in ``out``; returns what was done."""
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca, ca_key, new_ca = load_or_create_ca(out, now)
    dns, ips = server_names(extra_hosts)
    issue_server(out, ca, ca_key, dns, ips, now)
    return {"ca": out / "ca.pem", "cert": out / "server.pem", "key": out / "server.key",
            "new_ca": new_ca, "dns": dns, "ips": [str(i) for i in ips],
            "cn": ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value}


def main(argv: Sequence[str] | None = None) -> int:
    from splitcore.process import cli

    p = cli.parser("python -m signaling.certs", __doc__)
    p.add_argument("--out", type=Path, default=Path("build/certs"), help="folder to write to (default: %(default)s)")
    p.add_argument("--host", action="append", default=[], metavar="NAME_OR_IP",
                   help="another name or address the certificate must cover (repeat for several)")
    args: argparse.Namespace = p.parse_args(argv)
    try:
        done = make(args.out, args.host)
    except (OSError, ValueError) as exc:
        return cli.fail(p.prog, exc)
    print(f"{'created' if done['new_ca'] else 'kept'} CA {done['ca']}")
    print(f"server certificate {done['cert']} (key {done['key']}) for "
          f"{', '.join(map(str, [*done['dns'], *done['ips']]))}")  # type: ignore[misc]
    print()
    print(TRUST_HELP.format(**done))
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
