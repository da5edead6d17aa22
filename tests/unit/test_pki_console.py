"""The console CA of the site PKI: the VNC certificates qemu.conf demands
(``vnc_tls_x509_cert_dir``), the console proxy's client certificate, and why they come
from a CA of their own (a compute host's migration certificate must open no console)."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from metalctl.errors import InputError
from metalctl.hosts import HostSpec, pki_material
from metalctl.pki import SitePKI

HOST = HostSpec("c1", "root@192.0.2.10", "192.0.2.10", ("c1.example",))


@pytest.fixture
def pki(tmp_path: Path) -> SitePKI:
    site = SitePKI(tmp_path / "pki", organization="Site")
    site.init()
    return site


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_vnc_certificates_come_from_the_console_ca(pki: SitePKI):
    certs = pki.issue(HOST.name, list(HOST.names), [HOST.mgmt_address])
    console = pki.console(HOST.name)
    ca, console_ca = _cert(pki.ca_cert_path), _cert(pki.console_ca_cert_path)
    assert ca.subject != console_ca.subject
    vnc = _cert(console.server_cert)
    vnc.verify_directly_issued_by(console_ca)
    _cert(certs.server_cert).verify_directly_issued_by(ca)
    assert ExtendedKeyUsageOID.SERVER_AUTH in \
        vnc.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    sans = vnc.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["c1", "c1.example"]
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]
    for key in (pki.console_ca_key_path, console.server_key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    cert, key = pki.issue_console_proxy("novncproxy-1")
    _cert(cert).verify_directly_issued_by(console_ca)
    assert ExtendedKeyUsageOID.CLIENT_AUTH in \
        _cert(cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    with pytest.raises(InputError):
        pki.issue_console_proxy("../escape")


def test_harden_material_has_the_vnc_files_also_for_an_older_pki(pki: SitePKI):
    material = pki_material(HOST, pki)
    assert {"ca", "server_cert", "server_key", "client_cert", "client_key", "console_ca",
            "vnc_server_cert", "vnc_server_key"} == set(material)
    assert material["console_ca"] == pki.console_ca_cert_path.read_text()
    # a PKI whose host certificates predate the console CA: harden issues the VNC pair
    (pki.host_dir(HOST.name) / "vnc-servercert.pem").unlink()
    (pki.host_dir(HOST.name) / "vnc-serverkey.pem").unlink()
    assert "vnc_server_cert" not in pki_material(HOST, pki, issue=False)  # audit never issues
    again = pki_material(HOST, pki)
    assert again["server_cert"] == material["server_cert"]  # libvirt's pair kept
    assert again["vnc_server_cert"] != material["vnc_server_cert"]


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str | None:
    """A TLS handshake over a socket pair; the server's error, or None."""
    a, b = socket.socketpair()
    errors: list[str] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=HOST.mgmt_address) as c:
            c.sendall(b"x")
            c.recv(1)  # the server's alert, when it refuses the client certificate
    except (ssl.SSLError, OSError):
        pass
    thread.join(10)
    return errors[0] if errors else None


def test_only_a_console_proxy_certificate_opens_a_console(pki: SitePKI):
    """QEMU's VNC server as qemu.conf configures it (``vnc_tls_x509_verify``: any client
    certificate of ``ca-cert.pem``), played by Python's TLS with the same files; the
    client is Nova's VeNCrypt proxy (``ssl.PROTOCOL_TLS_CLIENT`` with its
    ``vencrypt_*`` files)."""
    certs = pki.issue(HOST.name, list(HOST.names), [HOST.mgmt_address])
    console = pki.console(HOST.name)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(console.server_cert, console.server_key)
    server.load_verify_locations(console.ca_cert)  # /etc/pki/libvirt-vnc/ca-cert.pem
    server.verify_mode = ssl.CERT_REQUIRED

    def client(cert: Path, key: Path) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(pki.console_ca_cert_path)  # [vnc] vencrypt_ca_certs
        return ctx

    proxy_cert, proxy_key = pki.issue_console_proxy("novncproxy-1")
    assert _handshake(server, client(proxy_cert, proxy_key)) is None
    # a compute host's migration client certificate (site CA): refused by the console
    refused = _handshake(server, client(certs.client_cert, certs.client_key))
    assert refused is not None
    assert "certificate" in refused.lower()
