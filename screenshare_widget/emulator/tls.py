"""A throwaway self-signed TLS certificate for the emulator.

Internal module. The google-genai SDK always connects to Live over ``wss://``, so the
emulator must speak TLS. :func:`make_certificate` writes a fresh P-256 key and a self-signed
certificate (IP SAN 127.0.0.1 and ::1, DNS localhost) into a new private temp directory; the
caller trusts the certificate PEM as a CA file and deletes the directory when done. No key is
ever committed or reused.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

#: How long the certificate is valid (days). It lives only as long as the emulator anyway.
CERT_VALID_DAYS: Final = 7
#: Backdating of ``not_valid_before`` (minutes), to tolerate small clock differences.
CERT_BACKDATE_MIN: Final = 5


@dataclass(frozen=True)
class Certificate:
    """Paths of a throwaway certificate: ``cert`` (PEM, also the CA file) and ``key`` (PEM)."""

    directory: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context presenting this certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client-side TLS context that trusts this certificate (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def remove(self) -> None:
        """Delete the directory holding the certificate and key (idempotent)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def make_certificate(prefix: str = "live-emulator-") -> Certificate:
    """Create a new key and self-signed certificate in a fresh private temp directory.

    Takes a few milliseconds (an EC key, not RSA). The directory is created with mode 0700
    and the key file with 0600.
    """
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key)
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    logger.debug("made a throwaway certificate in %s", directory)
    return Certificate(directory=directory, cert=cert_path, key=key_path)


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """A certificate for localhost, 127.0.0.1 and ::1, signed by ``key`` itself."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=CERT_BACKDATE_MIN))
        .not_valid_after(now + dt.timedelta(days=CERT_VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
