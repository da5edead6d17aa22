"""The site PKI for libvirt TLS: a CA (created or imported) and per-host certificates,
and a second CA for VNC consoles only.

Layout of the PKI directory (0700; every key 0600)::

    ca/cacert.pem  ca/cakey.pem
    hosts/<host>/servercert.pem  hosts/<host>/serverkey.pem
    hosts/<host>/clientcert.pem  hosts/<host>/clientkey.pem
    console-ca/cacert.pem  console-ca/cakey.pem
    hosts/<host>/vnc-servercert.pem  hosts/<host>/vnc-serverkey.pem
    console-proxies/<name>/clientcert.pem  console-proxies/<name>/clientkey.pem

Why consoles have a CA of their own: QEMU's VNC server (``vnc_tls_x509_verify``)
accepts any client certificate its ``ca-cert.pem`` issued and has no DN allow-list, as
libvirtd has (``tls_allowed_dn_list``). Were the VNC CA the site CA, every compute
host's migration client certificate would open every guest's console. With their own
CA, only a console proxy's certificate (nova-novncproxy's ``[vnc] vencrypt_client_*``)
does, and the proxy's certificate opens no libvirtd (Nova's own advice, "remote console
access": a dedicated CA for VNC).

What libvirt/GnuTLS check (virNetTLSContextCheckCert*, reference/lab-host-recipes.md
§1a): CA ``basicConstraints CA:TRUE`` + ``keyCertSign``; leaves with
``digitalSignature, keyEncipherment`` and EKU serverAuth (server) / clientAuth
(client); the server certificate's SANs must match the URI host (names and
addresses). Client DNs are what ``tls_allowed_dn_list`` matches, written in the order
``virt-pki-query-dn`` prints them (``C=..,O=..,CN=..``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from metalctl.data.loader import read_text
from metalctl.errors import InputError

KEY_BITS = 3072
CA_DAYS = 3650
LEAF_DAYS = 365
PEM_MAX_BYTES = 1 << 20  # a CA certificate or key is a few KiB


#: a host name that is also a safe file name: no separator, no leading dot
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")
_LABEL = r"[A-Za-z0-9][A-Za-z0-9-]{0,62}"
_DNS_NAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")


def check_host_name(host: str) -> str:
    """``host`` when it is a host name safe to use as a file name.

    Raises:
        InputError: anything else (path separators, ``..``, leading dots, empty).
    """
    if not isinstance(host, str) or not _HOST_NAME.match(host) or ".." in host:
        raise InputError("host", repr(host), "not a host name (letters, digits, '.', '-', '_'; "
                                             "no path separators)")
    return host


def _string_list(field: str, value: Sequence[str]) -> list[str]:
    """A list of strings; one string is refused, never split into characters."""
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise InputError(field, repr(value)[:60], "must be a list of strings")
    return list(value)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write_private(path: Path, data: bytes) -> None:
    """Create with 0600 from the first byte (no window with wider permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class HostCerts:
    host: str
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_dn: str
    not_after: dt.datetime


@dataclass(frozen=True)
class ConsoleCerts:
    """A host's VNC server certificate, from the console CA."""

    host: str
    ca_cert: Path
    server_cert: Path
    server_key: Path


class SitePKI:
    """A site CA in ``directory`` that issues libvirt server/client certificates."""

    def __init__(self, directory: Path, organization: str = "metalctl site",
                 country: str = "US") -> None:
        self.dir = Path(directory)
        self.organization, self.country = organization, country

    @property
    def ca_cert_path(self) -> Path:
        return self.dir / "ca" / "cacert.pem"

    @property
    def ca_key_path(self) -> Path:
        return self.dir / "ca" / "cakey.pem"

    def exists(self) -> bool:
        return self.ca_cert_path.exists() and self.ca_key_path.exists()

    @property
    def console_ca_cert_path(self) -> Path:
        return self.dir / "console-ca" / "cacert.pem"

    @property
    def console_ca_key_path(self) -> Path:
        return self.dir / "console-ca" / "cakey.pem"

    def init(self, common_name: str | None = None) -> Path:
        """Create the CA unless one exists (idempotent), and the console CA beside it;
        returns the CA certificate path."""
        if not self.exists():
            self._new_ca(self.ca_cert_path, self.ca_key_path, common_name or self.organization)
        self.init_console()
        return self.ca_cert_path

    def init_console(self) -> Path:
        """Create the console (VNC) CA unless one exists (idempotent; a PKI made before
        it existed gets one here); returns its certificate path."""
        if not (self.console_ca_cert_path.exists() and self.console_ca_key_path.exists()):
            self._new_ca(self.console_ca_cert_path, self.console_ca_key_path,
                         f"{self.organization} console CA")
        return self.console_ca_cert_path

    def _new_ca(self, cert_path: Path, key_path: Path, common_name: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir.chmod(0o700)
        key = _key()
        # CN of the CA = O of the leaves: what virt-pki-validate compares
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, self.country),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization),
                          x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        _write_private(key_path, _pem_key(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))

    def import_ca(self, cert_file: Path, key_file: Path) -> Path:
        """Take an existing CA (certificate + unencrypted PEM key).

        Raises:
            InputError: either file unreadable, too large, not PEM, or not a CA.
        """
        cert_pem = read_text(cert_file, max_bytes=PEM_MAX_BYTES).encode()
        key_pem = read_text(key_file, max_bytes=PEM_MAX_BYTES).encode()
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise InputError(str(cert_file), "ca", f"not a PEM certificate: {exc}") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise InputError(str(key_file), "key", f"not an unencrypted PEM key: {exc}") from None
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise InputError(str(cert_file), "basicConstraints", "not a CA certificate")
        if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
            raise InputError(str(key_file), "key", "does not match the CA certificate")
        _write_private(self.ca_key_path, key_pem)
        _write_public(self.ca_cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return self.ca_cert_path

    def _ca(self, console: bool = False) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        if not self.exists():
            raise InputError(str(self.dir), "ca", "no site CA: run `metalctl pki init` first")
        if console:
            self.init_console()
        cert_path, key_path = ((self.console_ca_cert_path, self.console_ca_key_path) if console
                               else (self.ca_cert_path, self.ca_key_path))
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return cert, key  # type: ignore[return-value]

    def client_dn(self, host: str) -> str:
        return f"C={self.country},O={self.organization},CN={host}"

    def host_dir(self, host: str) -> Path:
        """``hosts/<host>`` under the PKI directory; ``host`` is validated first.

        Raises:
            InputError: the name is not a host name (``../x``, ``a/b``, empty...).
        """
        return self.dir / "hosts" / check_host_name(host)

    def issue(self, host: str, names: Sequence[str], addresses: Sequence[str],
              days: int = LEAF_DAYS) -> HostCerts:
        """(Re)issue the host's server and client certificates, and its VNC server
        certificate from the console CA (same names).

        Raises:
            InputError: a bad host name, DNS name, address or validity; nothing written.
        """
        d = self.host_dir(host)
        sans = self._sans(host, names, addresses, days)
        ca = self._ca()
        console = self._ca(console=True)
        for prefix, role, issuer in (("", "server", ca), ("", "client", ca),
                                     ("vnc-", "server", console)):
            cert, key = self._leaf(issuer, host, sans, role, days)
            _write_private(d / f"{prefix}{role}key.pem", _pem_key(key))
            _write_public(d / f"{prefix}{role}cert.pem",
                          cert.public_bytes(serialization.Encoding.PEM))
        return self.host(host)

    def issue_console(self, host: str, names: Sequence[str], addresses: Sequence[str],
                      days: int = LEAF_DAYS) -> ConsoleCerts:
        """(Re)issue only the host's VNC server certificate (a host whose libvirt
        certificates predate the console CA).

        Raises:
            InputError: as :meth:`issue`.
        """
        d = self.host_dir(host)
        sans = self._sans(host, names, addresses, days)
        cert, key = self._leaf(self._ca(console=True), host, sans, "server", days)
        _write_private(d / "vnc-serverkey.pem", _pem_key(key))
        _write_public(d / "vnc-servercert.pem", cert.public_bytes(serialization.Encoding.PEM))
        return self.console(host)

    def console(self, host: str) -> ConsoleCerts:
        """The host's VNC server certificate.

        Raises:
            InputError: none issued yet.
        """
        d = self.host_dir(host)
        if not (d / "vnc-servercert.pem").exists():
            raise InputError(str(d), "vnc-servercert.pem",
                             f"no console certificate issued for {host}")
        return ConsoleCerts(host, self.console_ca_cert_path, d / "vnc-servercert.pem",
                            d / "vnc-serverkey.pem")

    def issue_console_proxy(self, name: str, days: int = LEAF_DAYS) -> tuple[Path, Path]:
        """A console proxy's client certificate and key from the console CA (nova-novncproxy's
        ``[vnc] vencrypt_client_cert``/``vencrypt_client_key``; its ``vencrypt_ca_certs``
        is :attr:`console_ca_cert_path`). Returns (certificate, key) paths.

        Raises:
            InputError: a bad name or validity.
        """
        d = self.dir / "console-proxies" / check_host_name(name)
        sans = self._sans(name, [], [], days)
        cert, key = self._leaf(self._ca(console=True), name, sans, "client", days)
        _write_private(d / "clientkey.pem", _pem_key(key))
        _write_public(d / "clientcert.pem", cert.public_bytes(serialization.Encoding.PEM))
        return d / "clientcert.pem", d / "clientkey.pem"

    def _sans(self, host: str, names: Sequence[str], addresses: Sequence[str],
              days: int) -> list[x509.GeneralName]:
        check_host_name(host)
        names = _string_list("names", names)
        addresses = _string_list("addresses", addresses)
        for n in names:
            if not _DNS_NAME.match(n):
                raise InputError("names", n, "not a DNS name")
        if not 0 < days <= 3650:
            raise InputError("days", str(days), "must be 1-3650")
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys([host, *names])]
        for a in addresses:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(a)))
            except ValueError:
                raise InputError("addresses", a, "not an IP address") from None
        return sans

    def _leaf(self, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey], host: str,
              sans: list[x509.GeneralName], role: str, days: int
              ) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        ca_cert, ca_key = issuer
        eku = ExtendedKeyUsageOID.SERVER_AUTH if role == "server" \
            else ExtendedKeyUsageOID.CLIENT_AUTH
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, self.country),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization),
                             x509.NameAttribute(NameOID.COMMON_NAME, host)])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(subject)
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=True, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return cert, key

    def host(self, host: str) -> HostCerts:
        d = self.host_dir(host)
        cert_path = d / "servercert.pem"
        if not cert_path.exists():
            raise InputError(str(d), "servercert.pem", f"no certificates issued for {host}")
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        return HostCerts(host, cert_path, d / "serverkey.pem", d / "clientcert.pem",
                         d / "clientkey.pem", self.client_dn(host), cert.not_valid_after_utc)

    def hosts(self) -> list[HostCerts]:
        root = self.dir / "hosts"
        if not root.exists():
            return []
        return [self.host(p.name) for p in sorted(root.iterdir())
                if _HOST_NAME.match(p.name) and (p / "servercert.pem").exists()]

    def due(self, within_days: int) -> list[HostCerts]:
        """Hosts whose certificates expire within ``within_days`` (renewal candidates)."""
        limit = _now() + dt.timedelta(days=within_days)
        return [h for h in self.hosts() if h.not_after <= limit]

    def sans(self, host: str) -> tuple[list[str], list[str]]:
        cert = x509.load_pem_x509_certificate(self.host(host).server_cert.read_bytes())
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return ([n for n in ext.get_values_for_type(x509.DNSName)],
                [str(a) for a in ext.get_values_for_type(x509.IPAddress)])

    def renew(self, within_days: int, days: int = LEAF_DAYS) -> list[HostCerts]:
        """Reissue (new keys, same names) every host certificate expiring soon."""
        out = []
        for h in self.due(within_days):
            names, addresses = self.sans(h.host)
            out.append(self.issue(h.host, [n for n in names if n != h.host], addresses, days))
        return out
