"""A self-signed TLS certificate for a test or a loopback deployment, made with ``cryptography``.

For production give ``veil serve`` a certificate from your CA. This one is its own CA: a client
trusts it with ``veil client --ca server.crt``. The private key is written mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from veil.io import write_bytes
from veil.secretfile import write_private


def write_self_signed(cert_path: str | Path, key_path: str | Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
                      days: int = 30) -> tuple[Path, Path]:
    """An EC P-256 certificate valid for ``hosts`` (IP addresses or DNS names) and its key; returns both paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"veil serve {hosts[0]}")])
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path = Path(cert_path)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    key_path = write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return cert_path, key_path
