"""The SSH-managed hosts of a site: the hosts inventory, the site policy, and what every
stage that works over SSH (harden, audit, later hand-off) derives from them the same way:
the SSH target with the site's host-key policy, the host's PKI material, and one
round-trip fact gathering for the rules engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from metalctl import data as datafiles
from metalctl import ssh
from metalctl.data.merge import deep_merge
from metalctl.data.paths import data_dir
from metalctl.errors import InputError
from metalctl.pki import SitePKI
from metalctl.rules import gather


@dataclass(frozen=True)
class HostSpec:
    """One host of the inventory."""

    name: str
    ssh: str  # [user@]host[:port]
    mgmt_address: str
    names: tuple[str, ...] = ()
    #: the node's key in the store, when the host is one of its nodes (a run's): the
    #: stages' results carry it (the stage contract)
    key: str | None = None

    @property
    def target_host(self) -> str:
        return ssh.SshTarget.parse(self.ssh).host


def load_hosts(path: Path) -> list[HostSpec]:
    """``inventory/hosts.yaml``: ``hosts: [{name, ssh, mgmt_address, names}]`` (schema
    ``hosts``; a misspelt key such as ``mgmt_adress`` is an error, never ignored).

    Raises:
        InputError: naming the file, the field and the line.
    """
    data, lines = datafiles.load_with_lines(path, "hosts")
    out = []
    for i, h in enumerate(data["hosts"]):
        target = parse_ssh(h["ssh"], str(path), f"hosts[{i}].ssh", lines.get(("hosts", i, "ssh")))
        out.append(HostSpec(name=h["name"], ssh=h["ssh"],
                            mgmt_address=h.get("mgmt_address") or target.host,
                            names=tuple(h.get("names") or ())))
    return out


def parse_ssh(spec: str, label: str, field: str, line: int | None = None) -> ssh.SshTarget:
    """``[user@]host[:port]`` as an :class:`~metalctl.ssh.SshTarget`, or an InputError."""
    try:
        target = ssh.SshTarget.parse(spec)
    except ValueError:
        raise InputError(label, field, f"{spec!r} is not [user@]host[:port]", line) from None
    if not target.host or not 0 < target.port < 65536:
        raise InputError(label, field, f"{spec!r} is not [user@]host[:port] (port 1-65535)",
                         line)
    return target


def load_site(path: Path | None) -> dict[str, Any]:
    """The shipped ``hardening/site.yaml`` with ``path`` merged over it (schema ``site``;
    the file is validated on its own first, so an error names its line).

    Raises:
        InputError: naming the file, the field and the line.
    """
    site = datafiles.load(data_dir("hardening") / "site.yaml", "site") or {}
    if path:
        over = datafiles.load(path, "site") or {}
        site = deep_merge(site, over)
        datafiles.validate(site, "site", str(path))
    return site


def allowed_dns(hosts: list[HostSpec], pki: SitePKI | None, site: dict[str, Any],
                peers: tuple[str, ...] = ()) -> list[str]:
    """libvirtd's ``tls_allowed_dn_list``: the client certificates of the hosts worked on
    and of their ``peers`` (the site's other compute hosts: live migration connects from
    them), then the site's extra DNs."""
    names = [h.name for h in hosts] + [p for p in peers if p not in {h.name for h in hosts}]
    dns = [pki.client_dn(n) for n in names] if pki else []
    return dns + list(site.get("libvirt", {}).get("extra_allowed_dns") or [])


def pki_material(host: HostSpec, pki: SitePKI | None, issue: bool = True) -> dict[str, str]:
    """The host's certificates from the site PKI, issued when missing (names + management
    address) unless ``issue`` is false (audit: compare with what exists, never issue).

    Keys: ``ca``, ``server_cert``/``_key``, ``client_cert``/``_key`` (libvirt and QEMU
    migration TLS, the site CA), ``console_ca``, ``vnc_server_cert``/``_key`` (VNC, the
    console CA: :mod:`metalctl.pki` says why it is a CA of its own).
    """
    if pki is None or not pki.exists():
        return {}
    try:
        certs = pki.host(host.name)
    except InputError:
        if not issue:
            return {"ca": pki.ca_cert_path.read_text()}
        certs = pki.issue(host.name, list(host.names), [host.mgmt_address])
    out = {"ca": pki.ca_cert_path.read_text(), "server_cert": certs.server_cert.read_text(),
           "server_key": certs.server_key.read_text(),
           "client_cert": certs.client_cert.read_text(),
           "client_key": certs.client_key.read_text()}
    try:
        console = pki.console(host.name)
    except InputError:  # certificates issued before the console CA existed
        if not issue:
            return out
        console = pki.issue_console(host.name, list(host.names), [host.mgmt_address])
    out.update(console_ca=console.ca_cert.read_text(),
               vnc_server_cert=console.server_cert.read_text(),
               vnc_server_key=console.server_key.read_text())
    return out


class SshOptions(Protocol):
    """The SSH policy fields harden's and audit's options share."""

    key_file: Path | None
    known_hosts: Path | None
    sudo: bool
    connect_timeout_s: float


def ssh_target(host: HostSpec, opts: SshOptions) -> ssh.SshTarget:
    return ssh.SshTarget.parse(host.ssh, key_file=opts.key_file, known_hosts=opts.known_hosts,
                               sudo=opts.sudo, connect_timeout_s=opts.connect_timeout_s)


def gather_facts(conn: Any, target: ssh.SshTarget, spec: gather.GatherSpec,
                 label: str) -> gather.HostFacts:
    return gather.parse(ssh.run_script(conn, target, gather.script(spec)), label)
