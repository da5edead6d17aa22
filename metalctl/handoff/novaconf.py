"""nova-compute's configuration, rendered from the profile plan, the site and the PKI.

Option names are Nova's (nova 34.0.0, 2026.1 "Gazpacho"; ``nova/conf/*.py``). Where each
value comes from:

* the node's stored profile plan (``plan["nova"]``, from ``profile/derive.py``):
  ``[compute] cpu_dedicated_set``/``cpu_shared_set``, ``[DEFAULT]
  reserved_host_memory_mb``/``reserved_huge_pages``, ``[pci] device_spec``/``alias``
  (JSON, one line per entry: Nova's MultiStrOpts keep repeated keys);
* the site's ``nova:`` section (schema ``site-nova``): ``transport_url`` and the
  ``[placement]`` keystoneauth options, with passwords by reference to a credential set
  (:mod:`metalctl.credentials`), the libvirt driver and live migration, ``state_path``;
* the host: ``[DEFAULT] host`` (its name) and ``my_ip`` (its management address), which
  also receives live migrations (``[libvirt] live_migration_inbound_addr``) and serves
  the guests' VNC consoles (``[vnc] server_listen``, ``server_proxyclient_address``:
  Nova's default is 127.0.0.1, which no console proxy on another machine reaches, and
  which a live migration carries to the destination as it is);
* the site PKI: native-TLS live migration uses QEMU's and libvirt's default certificate
  directories, which the harden stage fills from ``metalctl pki`` (rules LVT-*, QMU-002);
  Nova has no option naming them, so rendering checks instead that the host's
  certificates exist and that the server certificate names the migration address, the
  host name Nova puts in ``qemu+tls://<addr>/system``.

The result is standalone: no ``[database]``/``[api_database]`` sections (with them
nova-compute tries database access; LAB.md) and no ``[keystone_authtoken]`` (the compute
serves no API). Secrets stay :class:`~metalctl.credentials.Secret` until
:meth:`NovaConf.reveal`, which only the writer calls; ``str()`` and :meth:`NovaConf.masked`
show ``***``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from metalctl import credentials
from metalctl.credentials import MASK, Secret
from metalctl.data import validate
from metalctl.errors import InputError
from metalctl.pki import SitePKI
from metalctl.store import Store

COMPUTE_DRIVER = "libvirt.LibvirtDriver"


@dataclass(frozen=True)
class _UrlPart:
    """A secret that goes into a URL: percent-quoted when revealed."""

    secret: Secret


Part = str | Secret | _UrlPart
Value = tuple[Part, ...]  # one option line's value, in pieces so secrets stay apart


@dataclass(frozen=True)
class NovaSite:
    """The site's ``nova:`` section, validated, with its credentials resolved."""

    transport_hosts: tuple[str, ...]
    transport_user: str
    transport_password: Secret
    virtual_host: str
    placement: Mapping[str, Any]
    placement_user: str | None
    placement_secret: Secret | None
    virt_type: str = "kvm"
    connection_uri: str | None = None
    migration_scheme: str = "tls"
    native_tls: bool = True
    state_path: str = "/var/lib/nova"
    cpu_allocation_ratio: float | None = None
    ram_allocation_ratio: float | None = None
    pci_report_in_placement: bool = False
    graceful_shutdown_timeout: int | None = None
    vnc_enabled: bool = True
    novncproxy_base_url: str | None = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def site_from_dict(data: Mapping[str, Any] | None, label: str = "site",
                   credentials_file: Path | None = None,
                   lines: Mapping[tuple[str | int, ...], int] | None = None) -> NovaSite:
    """Validate a site's ``nova:`` section and resolve its credential sets.

    Args:
        data: the ``nova:`` mapping of the site file.
        label: the site file's name, for errors.
        credentials_file: where the credential sets live (default search path otherwise).
        lines: the site file's line map (``metalctl.data.load_with_lines``), for errors.

    Raises:
        InputError: the section is missing or invalid (names ``nova.<field>``), or a
            credential set it names cannot be found.
    """
    if data is None:
        raise InputError(label, "nova", "missing: the site must say how computes reach "
                                        "the message bus and Placement")
    validate(data, "site-nova", label, lines, base=("nova",))
    t, p = data["transport"], data["placement"]
    rabbit = _first(t["credentials"], credentials_file, label,
                    ("nova", "transport", "credentials"), lines)
    user, secret = (None, None)
    if p.get("credentials"):
        cred = _first(p["credentials"], credentials_file, label,
                      ("nova", "placement", "credentials"), lines)
        user, secret = cred.username, cred.password
    lv = data.get("libvirt") or {}
    mig = lv.get("live_migration") or {}
    vnc = data.get("vnc") or {}
    return NovaSite(
        transport_hosts=tuple(t["hosts"]), transport_user=rabbit.username,
        transport_password=rabbit.password, virtual_host=t.get("virtual_host", "/"),
        placement={k: v for k, v in p.items() if k != "credentials"},
        placement_user=user, placement_secret=secret,
        virt_type=lv.get("virt_type", "kvm"), connection_uri=lv.get("connection_uri"),
        migration_scheme=mig.get("scheme", "tls"), native_tls=mig.get("native_tls", True),
        state_path=data.get("state_path", "/var/lib/nova"),
        cpu_allocation_ratio=data.get("cpu_allocation_ratio"),
        ram_allocation_ratio=data.get("ram_allocation_ratio"),
        pci_report_in_placement=data.get("pci_report_in_placement", False),
        graceful_shutdown_timeout=data.get("graceful_shutdown_timeout"),
        vnc_enabled=vnc.get("enabled", True),
        novncproxy_base_url=vnc.get("novncproxy_base_url"),
        options=data.get("options") or {})


def _first(name: str, file: Path | None, label: str = "site",
           where: tuple[str, ...] = (), lines: Mapping[Any, int] | None = None
           ) -> credentials.Credential:
    """The set's first credential; a set found nowhere names the site's field."""
    return credential_of(name, file, label, where, lines).entries[0]


def credential_of(name: str, file: Path | None, label: str, where: tuple[str, ...],
                  lines: Mapping[Any, int] | None = None) -> credentials.CredentialSet:
    """Resolve the set a site file names at ``where``.

    Raises:
        CredentialsError: naming the site file and the field (and, in the reason, where
            the set was looked for).
    """
    try:
        return credentials.resolve(name, file, interactive=False)
    except credentials.CredentialsError as exc:
        if exc.kwargs.get("field") != name:  # the credentials file itself is invalid
            raise
        raise credentials.CredentialsError(
            label, ".".join(where), f"credential set {name!r}: {exc.kwargs.get('reason')} "
                                    f"(looked in {exc.kwargs.get('path')})",
            (lines or {}).get(where)) from None


@dataclass
class NovaConf:
    """An INI document of ordered sections; a repeated option is a MultiOpt."""

    sections: dict[str, list[tuple[str, Value]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # why something was left out

    def set(self, section: str, option: str, *parts: Part) -> None:
        """Add ``option`` to ``section``.

        Its value is ``parts`` concatenated, kept apart so secrets stay masked.
        """
        self.sections.setdefault(section, []).append((option, parts))

    def options(self) -> set[tuple[str, str]]:
        """Return every (section, option) set."""
        return {(s, o) for s, opts in self.sections.items() for o, _ in opts}

    def get(self, section: str, option: str) -> list[str]:
        """The masked values of ``[section] option`` (one per line)."""
        return [_join(v, reveal=False) for o, v in self.sections.get(section, []) if o == option]

    def masked(self) -> str:
        """The document with every secret shown as ``***`` (display, ``--check``, validation)."""
        return self._text(reveal=False)

    def reveal(self) -> str:
        """The document with the real secrets: only for writing the file on the host."""
        return self._text(reveal=True)

    def secrets(self) -> list[Secret]:
        """Every secret in the document (for the log redaction filter)."""
        out = []
        for opts in self.sections.values():
            for _, value in opts:
                out += [p.secret if isinstance(p, _UrlPart) else p for p in value
                        if isinstance(p, Secret | _UrlPart)]
        return out

    def _text(self, *, reveal: bool) -> str:
        blocks = []
        for section, opts in self.sections.items():
            body = "".join(f"{o} = {_join(v, reveal=reveal)}\n" for o, v in opts)
            blocks.append(f"[{section}]\n{body}")
        return "\n".join(blocks)

    def __str__(self) -> str:
        return self.masked()


def _join(value: Value, *, reveal: bool) -> str:
    out = []
    for part in value:
        if isinstance(part, _UrlPart):
            out.append(quote(part.secret.reveal(), safe="") if reveal else MASK)
        elif isinstance(part, Secret):
            out.append(part.reveal() if reveal else MASK)
        else:
            out.append(part)
    return "".join(out)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return json.dumps(value)
    return str(value)


def stored_plan(store: Store, key: str, label: str) -> dict[str, Any]:
    """The profile plan the profile stage kept for node ``key`` (``node_data`` "plan").

    Raises:
        InputError: the node has no derived plan.
    """
    stored = store.get_data(key, "plan")
    if not stored or "plan" not in stored:
        raise InputError("plan", label, "no derived plan; run `metalctl profile derive` first")
    return stored["plan"]


def render(plan: Mapping[str, Any], site: NovaSite, host: str, my_ip: str,
           pki: SitePKI | None) -> NovaConf:
    """nova-compute's configuration for one host.

    Args:
        plan: the node's profile plan (``ProfilePlan.to_dict()``; its ``nova`` key).
        site: the site's Nova settings.
        host: the host's name, Nova's ``[DEFAULT] host`` (its service record).
        my_ip: the host's management address.
        pki: the site PKI; required when live migration uses TLS.

    Raises:
        InputError: the plan has no Nova options, the site's ``options`` override what
            the plan or metalctl sets, or TLS migration lacks the host's certificates.
    """
    nova = plan.get("nova") or {}
    if not (nova.get("compute") or {}):
        raise InputError("plan", host, "the plan has no [compute] CPU sets; re-derive it")
    if site.migration_scheme == "tls" or site.native_tls:
        _check_certificates(pki, host, my_ip)
    conf = NovaConf()
    _default(conf, site, host, my_ip)
    for option, value in (nova.get("DEFAULT") or {}).items():
        _set_plan(conf, "DEFAULT", option, value)
    for section, opts in nova.items():
        if section == "DEFAULT":
            continue
        for option, value in opts.items():
            _set_plan(conf, section, option, value)
    _report_in_placement(conf, site, nova.get("pci") or {})
    _libvirt(conf, site, my_ip)
    _vnc(conf, site, my_ip)
    _placement(conf, site)
    conf.set("oslo_concurrency", "lock_path", str(Path(site.state_path, "locks")))
    _site_options(conf, site, host)
    return conf


def _set_plan(conf: NovaConf, section: str, option: str, value: Any) -> None:
    for item in value if isinstance(value, list) else [value]:
        conf.set(section, option, _scalar(item))


def _default(conf: NovaConf, site: NovaSite, host: str, my_ip: str) -> None:
    conf.set("DEFAULT", "host", host)
    conf.set("DEFAULT", "my_ip", my_ip)
    conf.set("DEFAULT", "state_path", site.state_path)
    conf.set("DEFAULT", "compute_driver", COMPUTE_DRIVER)
    url: list[Part] = ["rabbit://"]
    for i, hostport in enumerate(site.transport_hosts):
        url += [("," if i else ""), quote(site.transport_user, safe=""), ":",
                _UrlPart(site.transport_password), "@", hostport]
    vhost = "" if site.virtual_host == "/" else quote(site.virtual_host, safe="")
    url.append("/" + vhost)
    conf.set("DEFAULT", "transport_url", *url)
    for name in ("cpu_allocation_ratio", "ram_allocation_ratio", "graceful_shutdown_timeout"):
        value = getattr(site, name)
        if value is not None:
            conf.set("DEFAULT", name, _scalar(value))


def _report_in_placement(conf: NovaConf, site: NovaSite, pci: Mapping[str, Any]) -> None:
    """``[pci] report_in_placement`` only where it applies: nova 34 skips every device
    whose spec has a ``physical_network`` (Neutron SR-IOV ports;
    ``compute/pci_placement_translator.py`` ``_add_dev``), and the option cannot be
    turned off again once a compute started with it (LAB.md)."""
    if not site.pci_report_in_placement or not pci.get("device_spec"):
        return
    if all("physical_network" in spec for spec in pci["device_spec"]):
        conf.notes.append("[pci] report_in_placement left out: every device_spec has a "
                          "physical_network (Neutron SR-IOV), which Nova does not report "
                          "to Placement")
        return
    conf.set("pci", "report_in_placement", "true")


def _libvirt(conf: NovaConf, site: NovaSite, my_ip: str) -> None:
    conf.set("libvirt", "virt_type", site.virt_type)
    if site.connection_uri:
        conf.set("libvirt", "connection_uri", site.connection_uri)
    conf.set("libvirt", "live_migration_scheme", site.migration_scheme)
    conf.set("libvirt", "live_migration_with_native_tls", _scalar(site.native_tls))
    conf.set("libvirt", "live_migration_inbound_addr", my_ip)


def _vnc(conf: NovaConf, site: NovaSite, my_ip: str) -> None:
    """Consoles on the management address, as ``my_ip``: QEMU listens there (with TLS
    and client certificates of the console CA, rule QMU-005/007) and the console proxy
    connects there. A live migration moves the listen address to the destination's
    ``server_listen``."""
    conf.set("vnc", "enabled", _scalar(site.vnc_enabled))
    if not site.vnc_enabled:
        return
    conf.set("vnc", "server_listen", my_ip)
    conf.set("vnc", "server_proxyclient_address", my_ip)
    if site.novncproxy_base_url:
        conf.set("vnc", "novncproxy_base_url", site.novncproxy_base_url)


def _placement(conf: NovaConf, site: NovaSite) -> None:
    p = site.placement
    conf.set("placement", "auth_type", p["auth_type"])
    if p["auth_type"] == "admin_token":
        # keystoneauth's token_endpoint plugin: a fixed endpoint and X-Auth-Token
        conf.set("placement", "endpoint", p["endpoint"])
        conf.set("placement", "token", site.placement_secret or Secret(""))
    else:
        conf.set("placement", "auth_url", p["auth_url"])
        conf.set("placement", "username", site.placement_user or "")
        conf.set("placement", "password", site.placement_secret or Secret(""))
        for key in ("project_name", "user_domain_name", "project_domain_name"):
            if key in p:
                conf.set("placement", key, p[key])
    for key in ("region_name", "cafile"):
        if key in p:
            conf.set("placement", key, p[key])
    if p.get("valid_interfaces"):
        conf.set("placement", "valid_interfaces", ",".join(p["valid_interfaces"]))


def _site_options(conf: NovaConf, site: NovaSite, host: str) -> None:
    taken = conf.options()
    for section, opts in site.options.items():
        for option, value in opts.items():
            if (section, option) in taken:
                raise InputError("site", f"nova.options.{section}.{option}",
                                 f"[{section}] {option} is set by metalctl from the plan "
                                 f"or the site's nova keys for {host}; change it there")
            _set_plan(conf, section, option, value)


def _check_certificates(pki: SitePKI | None, host: str, my_ip: str) -> None:
    """Native TLS migration connects to ``qemu+tls://<my_ip>/system`` and QEMU's own
    TLS endpoint: both verify the destination's server certificate by that address."""
    if pki is None:
        raise InputError("site", "nova.libvirt.live_migration",
                         "TLS live migration needs the site PKI (`metalctl pki init`)")
    pki.host(host)  # InputError naming the missing certificates
    names, addresses = pki.sans(host)
    if my_ip not in addresses and my_ip not in names:
        raise InputError(str(pki.host_dir(host)), "servercert.pem",
                         f"does not name {my_ip}, the address live migrations to {host} "
                         "use; reissue with `metalctl pki issue` including it")
