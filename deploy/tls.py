"""The front door's TLS, on the controller: a CA made once, and a certificate per host it signs.

The CA lives in ``tls_ca_dir`` on the controller (``ca.key`` mode 0600, ``ca.crt`` for clients) and
never goes to a host. Each host gets a key and a certificate for its names and addresses, kept in
``<tls_ca_dir>/hosts/`` (keys 0600) so that a second run uploads the same files; a certificate is
issued again only when its names change or it is within ``RENEW_DAYS`` of its end.
An operator's own certificate and key (``tls_cert_file``/``tls_key_file``) replace all of this.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
HOST_DAYS = 397  # the longest a publicly trusted server certificate may be valid (CA/B Forum)
RENEW_DAYS = 30
# every host certificate also names this, so that a gateway can check any backend by one name
FLEET_NAME = "vllm-backend.fleet"


@dataclass
class HostTls:
    """PEM texts for one host: certificate chain, key (secret), and the CA clients should trust."""

    cert_pem: str
    key_pem: str
    ca_pem: str | None


def _write_private(path: Path, data: bytes) -> None:
    """Write a file that exists with mode 0600 before a byte of it is written."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ensure_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The controller's CA: loaded from ``ca_dir``, or made there once (key 0600)."""
    key_path, cert_path = ca_dir / "ca.key", ca_dir / "ca.crt"
    if key_path.is_file() and cert_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vLLM deploy CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gpt-oss vLLM deploy")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(cert_path, 0o644)
    return cert, key


def _san(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def cert_names(cert: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(a) for a in san.get_values_for_type(x509.IPAddress)}


def host_names(host: str, client_address: str, extra: list[str]) -> list[str]:
    """What a host's certificate names: its inventory name, its client address, ``tls_names``,
    the fleet name (for a gateway's checks) and loopback (for checks on the host itself)."""
    return list(dict.fromkeys([host, client_address, *extra, FLEET_NAME, "localhost", "127.0.0.1"]))


def issue_host_cert(ca_dir: Path, host: str, names: list[str]) -> HostTls:
    """This host's key and certificate signed by the CA; reused while its names and dates fit."""
    ca_cert, ca_key = ensure_ca(ca_dir)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    key_path, cert_path = ca_dir / "hosts" / f"{host}.key", ca_dir / "hosts" / f"{host}.crt"
    if key_path.is_file() and cert_path.is_file():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=RENEW_DAYS)
        same_ca = cert.issuer == ca_cert.subject
        if fresh and same_ca and cert_names(cert) == {str(n) for n in names}:
            return HostTls(cert_path.read_text(), key_path.read_text(), ca_pem)
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=HOST_DAYS))
            .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return HostTls(cert_path.read_text(), key_path.read_text(), ca_pem)


def operator_tls(cert_file: str, key_file: str) -> HostTls:
    """The operator's own certificate chain and key, read on the controller."""
    return HostTls(Path(os.path.expanduser(cert_file)).read_text(),
                   Path(os.path.expanduser(key_file)).read_text(), None)
