"""TLS for the registry: a server SSL context from a cert/key pair, or a self-signed pair.

``--tls-self-signed`` is for local use (a test registry, a lab): the pair is generated once
(ECDSA P-256, valid for a year, for ``localhost``, ``127.0.0.1``, ``::1`` and the listen host)
and kept, so clients can pin it across restarts (``--cert-dir`` for skopeo/podman,
``/etc/docker/certs.d/<host:port>/ca.crt`` for docker).  :func:`self_signed` regenerates it
when it is missing, unreadable, expiring within a day, or not valid for every host asked for;
the key file is written 0600.

API used by the auth tests (tests/integration/test_registry_auth.py): ``self_signed(cert, key,
hosts=None) -> bool`` (True when it wrote a new pair) and ``server_ssl_context(cert, key)``
(InvalidArgument for a missing file — "no such file" — or a key that does not match).
The CLI (``dockyard registry serve``) picks the files from the configuration and calls these.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from dockyard.errors import InvalidArgument

__all__ = ["DEFAULT_HOSTS", "self_signed", "server_ssl_context"]

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def _covers(cert_file: Path, hosts: Sequence[str]) -> bool:
    """True if the certificate names every host and is valid for more than a day."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have = {str(n) for n in san.get_values_for_type(x509.DNSName)}
    have |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    return set(hosts) <= have and left > dt.timedelta(days=1)


def self_signed(cert_file: Path, key_file: Path, hosts: Sequence[str] | None = None) -> bool:
    """Make sure ``cert_file``/``key_file`` hold a self-signed pair for ``hosts``.

    Returns True if a new pair was written, False if the existing one was kept.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_file, key_file = Path(cert_file), Path(key_file)
    names = list(dict.fromkeys(hosts if hosts is not None else DEFAULT_HOSTS))
    if key_file.exists() and _covers(cert_file, names):
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard registry (self-signed)")])
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    for path in (cert_file, key_file):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp_key = key_file.with_name(key_file.name + ".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(tmp_key, 0o600)
    tmp_key.replace(key_file)
    tmp_cert = cert_file.with_name(cert_file.name + ".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp_cert.replace(cert_file)
    return True


def server_ssl_context(cert_file: Path | str, key_file: Path | str) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the pair; InvalidArgument naming what is wrong."""
    for f in (cert_file, key_file):
        if not Path(f).is_file():
            raise InvalidArgument(f"tls: {f}: no such file")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"tls: cannot use {cert_file} with {key_file}: {exc}") from exc
    return ctx
