"""Kickstart rendering and validation: a node's plan and the site, to a kickstart anaconda
accepts, checked before any machine is powered.

* :func:`load_site` reads the site's ``kickstart:`` section (schema ``kickstart-site``),
  matches its repositories with the ones harden enforces, reads the operator's keys and
  turns the root password into a SHA-512 crypt hash once per run.
* :func:`variables_for` builds a template's variables from the node's stored plan
  (``Store.get_data(key, "plan")``: kernel arguments, tuned variables), the site, the
  node (its provisioning NIC, address, host name) and the install's callback (URL and
  one-time token).
* :func:`render` renders a Jinja2 template from ``kickstart/`` with ``StrictUndefined``:
  a missing variable, or one metalctl does not document, is an :class:`InputError`
  naming the template, its line and the variable, never an empty string.
* :func:`validate` parses the text with pykickstart (anaconda's own parser) for the
  target OS, checks the shell syntax of every script section, and checks what
  pykickstart does not look inside: every kernel argument of the plan on
  ``bootloader --append``, each well formed, no key given twice with two values.

Secrets (the crypted root password, the callback token) are :class:`Secret` values in
the variables; :class:`Rendered` keeps them apart so :meth:`Rendered.masked` can show a
kickstart with ``***`` in their place, and its ``repr`` never shows the text.

Specs: the kickstart grammar is pykickstart 3.78's (RHEL3-RHEL11, FC3-F46); the Ironic
template follows Ironic 39's ``ironic/drivers/modules/ks.cfg.template`` and its
``pxe_utils.validate_kickstart_template``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes
import jinja2.sandbox
from pykickstart.errors import KickstartError
from pykickstart.parser import KickstartParser
from pykickstart.version import makeVersion, versionMap

from metalctl.credentials import MASK, Secret
from metalctl.data import data_dir, fields, read_text
from metalctl.data import validate as validate_data
from metalctl.errors import InputError
from metalctl.provision import shacrypt
from metalctl.provision.tokens import TOKEN_PLACEHOLDER

__all__ = ["IRONIC_VALIDATION_OPTIONS", "REPEATABLE", "VARIABLES", "Callback", "KickstartNode",
           "KickstartSite", "Rendered", "TargetOS", "Variable", "check_append", "for_ironic",
           "ironic_preview", "list_templates", "load_site", "render", "render_checked",
           "target_os", "validate", "variables_for"]

SUFFIX = ".ks.j2"
SECTION = "kickstart"  # the site's section this module reads

# --- the variables every template may use ------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """One documented template variable (kickstart/README.md lists them all)."""

    type: str
    source: str  # plan | site | node | token | render
    doc: str


VARIABLES: dict[str, Variable] = {
    "template": Variable("str", "render", "the template's name, e.g. rhel9-kvm"),
    "node": Variable("mapping", "node", "name, hostname"),
    "profile": Variable("str", "plan", "the profile the plan was derived from"),
    "kernel_args": Variable("list[str]", "plan", "the plan's kernel arguments, in order"),
    "tuned": Variable("mapping", "plan", "profile, variables_file, variables (name -> value)"),
    "extra_kernel_args": Variable("list[str]", "site", "site arguments after the plan's"),
    "network": Variable("mapping", "node+site", "device, bootproto, ip, netmask, gateway, "
                                                "nameservers, hostname, ipv6, ipv6_gateway"),
    "install": Variable("mapping", "site", "kind (liveimg|url), url, checksum"),
    "repos": Variable("list[mapping]", "site", "id, kind (baseurl|mirrorlist|metalink), url, "
                                               "gpgkey"),
    "rootpw": Variable("Secret or None", "site", "SHA-512 crypt hash; None locks root"),
    "ssh_keys": Variable("list[mapping]", "site", "user, key (the operator's public keys)"),
    "lang": Variable("str", "site", "installer and system language"),
    "keyboard": Variable("str", "site", "keyboard layout"),
    "timezone": Variable("str", "site", "time zone (the hardware clock is UTC)"),
    "ntp_servers": Variable("list[str]", "site", "NTP servers"),
    "disk": Variable("mapping", "site", "drives, autopart, parts"),
    "packages": Variable("list[str]", "site", "extra packages (installation trees only)"),
    "callback": Variable("mapping", "token", "url, token (Secret): the install's callbacks"),
}

DEFAULTS: dict[str, Any] = {"lang": "en_US.UTF-8", "keyboard": "us", "timezone": "UTC",
                            "ntp_servers": [], "nameservers": [], "packages": [],
                            "kernel_args": [], "disk": {}, "repositories": {}}

# --- target operating systems ------------------------------------------------------------

_OS = re.compile(r"^(?P<name>rhel|redhat|red hat enterprise linux|rocky|rocky linux|rockylinux|"
                 r"alma|almalinux|alma linux|centos|centos stream|centosstream|fedora|f)"
                 r"[\s_-]*(?P<major>\d{1,3})(?:\.\d+)?$")
_FEDORA = {"fedora", "f"}


@dataclass(frozen=True)
class TargetOS:
    """A target operating system and the pykickstart version that parses its kickstarts."""

    name: str
    family: str  # "rhel" (RHEL, Rocky, Alma, CentOS Stream) or "fedora"
    major: int
    version: str  # pykickstart's name: RHEL9, F40

    @property
    def default_template(self) -> str:
        """The shipped template for this OS (RHEL 8 lacks ``timesource``)."""
        return "rhel8-kvm" if self.family == "rhel" and self.major <= 8 else "rhel9-kvm"


def target_os(name: str) -> TargetOS:
    """Map ``RHEL9``, ``Rocky 9.4``, ``AlmaLinux-8``, ``Fedora 40``, ``F41``... to pykickstart.

    Rocky, Alma and CentOS Stream parse as the RHEL release of the same major version.

    Raises:
        InputError: a name metalctl does not map, or a release pykickstart does not know.
    """
    m = _OS.match(name.strip().lower())
    if not m:
        raise InputError("--os", name, "not a known OS; use RHEL8/9/10, Rocky N, Alma N, "
                                       "CentOS Stream N or Fedora NN")
    major = int(m.group("major"))
    fedora = m.group("name") in _FEDORA
    version = f"F{major}" if fedora else f"RHEL{major}"
    if version not in versionMap:
        known = sorted((v for v in versionMap if v.startswith("F" if fedora else "RHEL")),
                       key=lambda v: int(re.sub(r"\D", "", v)))
        raise InputError("--os", name, f"pykickstart knows {known[0]}..{known[-1]} only")
    return TargetOS(name=name, family="fedora" if fedora else "rhel", major=major,
                    version=version)


# --- the site ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KickstartSite:
    """The site's kickstart settings, checked, with the root password already hashed."""

    install: dict[str, Any]
    repos: list[dict[str, str]]
    rootpw: Secret | None
    ssh_keys: list[dict[str, str]]
    lang: str
    keyboard: str
    timezone: str
    ntp_servers: list[str]
    nameservers: list[str]
    domain: str | None
    disk: dict[str, Any]
    packages: list[str]
    kernel_args: list[str]


_SSH_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|"
                      r"sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)"
                      r" [A-Za-z0-9+/]{40,}={0,3}( [^\"\\\r\n`$]{0,200})?$")


def load_site(site: Mapping[str, Any], *, label: str = "site",
              root_password: Secret | None = None,
              environ: Mapping[str, str] | None = None) -> KickstartSite:
    """Check the site's ``kickstart:`` section and prepare it for every node.

    Args:
        site: the whole site policy (``metalctl.hosts.load_site``): ``kickstart`` and
            ``repositories.dnf`` (the repositories harden enforces) are read.
        label: the site file's name, for errors.
        root_password: a clear password to hash, overriding the section's
            ``root_password`` (e.g. from a credentials file).
        environ: where ``root_password.env`` is looked up (``os.environ`` by default).

    Raises:
        InputError: a schema violation, a repository harden does not declare (or one it
            declares without a source), an unreadable or malformed SSH key, an unset
            password variable.
    """
    section = site.get(SECTION)
    if not isinstance(section, Mapping):
        raise InputError(label, SECTION, "missing: the site has no kickstart section")
    validate_data(dict(section), "kickstart-site", label, base=(SECTION,))
    conf = {**DEFAULTS, **section}
    install = dict(conf["install"])
    kind = "liveimg" if "liveimg" in install else "url"
    install_v = {"kind": kind, "url": install[kind], "checksum": install.get("checksum")}
    return KickstartSite(
        install=install_v, repos=_repos(site, conf["repositories"], label),
        rootpw=_rootpw(conf["root_password"], root_password, label, environ),
        ssh_keys=[_ssh_key(k, i, label) for i, k in enumerate(conf["ssh_keys"])],
        lang=conf["lang"], keyboard=conf["keyboard"], timezone=conf["timezone"],
        ntp_servers=list(conf["ntp_servers"]),
        nameservers=[_ip(n, label, f"{SECTION}.nameservers") for n in conf["nameservers"]],
        domain=conf.get("domain"), disk=_disk(conf["disk"]), packages=list(conf["packages"]),
        kernel_args=[_kernel_arg(a, label, f"{SECTION}.kernel_args") for a in
                     conf["kernel_args"]])


def _repos(site: Mapping[str, Any], sources: Mapping[str, Any],
           label: str) -> list[dict[str, str]]:
    # The installed host gets exactly the repositories harden will enforce, with the
    # keys harden pins: an id harden does not declare would be disabled by its first run.
    declared = (site.get("repositories") or {}).get("dnf") or []
    ids = [r.get("id") for r in declared]
    for rid in sources:
        if rid not in ids:
            raise InputError(label, f"{SECTION}.repositories.{rid}",
                             "not a repository the site declares in repositories.dnf "
                             "(harden would disable it)")
    out = []
    for repo in declared:
        rid = repo.get("id")
        if not isinstance(rid, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", rid):
            raise InputError(label, "repositories.dnf", f"bad repository id {rid!r}")
        if rid not in sources:
            raise InputError(label, f"{SECTION}.repositories.{rid}",
                             "missing: repositories.dnf declares it; give its baseurl, "
                             "mirrorlist or metalink")
        (kind, url), = sources[rid].items()
        gpgkey = repo.get("gpgkey")
        if not gpgkey or not re.match(r"^(https://|file:///)[^\s'\"`$;&|<>]+$", gpgkey):
            raise InputError(label, f"repositories.dnf[{ids.index(rid)}].gpgkey",
                             "a pinned https:// or file:/// key is required (harden "
                             "checks signatures with it)")
        out.append({"id": rid, "kind": kind, "url": url, "gpgkey": gpgkey})
    return out


def _rootpw(spec: Mapping[str, Any], clear: Secret | None, label: str,
            environ: Mapping[str, str] | None) -> Secret | None:
    if clear is None and "lock" in spec:
        return None
    if clear is None and "hash" in spec:
        if not shacrypt.is_sha512_crypt(spec["hash"]):
            # the value itself is never echoed: it may be a pasted clear password
            raise InputError(label, f"{SECTION}.root_password.hash",
                             "not a SHA-512 crypt hash ($6$[rounds=N$]salt$86 characters)")
        return Secret(spec["hash"])
    if clear is None:
        env = os.environ if environ is None else environ
        value = env.get(spec["env"])
        if not value:
            raise InputError(label, f"{SECTION}.root_password.env",
                             f"${spec['env']} is not set")
        clear = Secret(value)
    return Secret(shacrypt.sha512_crypt(clear))


def _ssh_key(spec: Mapping[str, Any], i: int, label: str) -> dict[str, str]:
    where = f"{SECTION}.ssh_keys[{i}]"
    if "key_file" in spec:
        path = fields.check_path(Path(spec["key_file"]).expanduser(), label,
                                 f"{where}.key_file", "file")
        text = read_text(path, max_bytes=16384).strip()
        where = str(path)
    else:
        text = str(spec["key"]).strip()
    if not _SSH_KEY.match(text):
        raise InputError(label, where, "not one OpenSSH public key (type, base64, optional "
                                       "comment without quotes)")
    return {"user": spec["user"], "key": text}


def _disk(spec: Mapping[str, Any]) -> dict[str, Any]:
    parts = [{"mount": p["mount"], "fstype": p["fstype"], "size": p.get("size"),
              "grow": bool(p.get("grow"))} for p in spec.get("parts") or []]
    return {"drives": list(spec.get("drives") or []), "parts": parts,
            "autopart": spec.get("autopart", "lvm")}


def _ip(text: str, label: str, where: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InputError(label, where, f"{text!r} is not an IP address") from None


def _interface(text: str, label: str, where: str,
               version: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """``address/prefix`` of IP ``version`` (4 or 6), or an input error naming the field."""
    try:
        return ipaddress.IPv4Interface(text) if version == 4 else ipaddress.IPv6Interface(text)
    except ValueError:
        raise InputError(label, where, f"{text!r} is not an IPv{version} "
                                       "address/prefix") from None


# --- the node ----------------------------------------------------------------------------

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
_CALLBACK_URL = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/%-]*)?$")


@dataclass(frozen=True)
class KickstartNode:
    """The node being installed: its name and its provisioning network.

    ``address`` is an interface address (``10.0.0.5/24``); without it the NIC uses DHCP.
    ``hostname`` defaults to ``name`` (lower-cased) in the site's domain.
    """

    name: str
    mac: str
    hostname: str | None = None
    address: str | None = None
    gateway: str | None = None
    nameservers: tuple[str, ...] = ()
    address6: str | None = None
    gateway6: str | None = None


@dataclass(frozen=True)
class Callback:
    """Where the installer reports (``POST url`` with ``Authorization: Bearer token``)."""

    url: str
    token: Secret


def _network(node: KickstartNode, site: KickstartSite) -> dict[str, Any]:
    where = f"node {node.name}"
    mac = node.mac.lower().replace("-", ":")
    if not _MAC.match(mac):
        raise InputError(where, "mac", f"{node.mac!r} is not a MAC address")
    hostname = (node.hostname or (f"{node.name}.{site.domain}" if site.domain
                                  else node.name)).lower()
    if not _HOSTNAME.match(hostname) or len(hostname) > 253:
        raise InputError(where, "hostname", f"{hostname!r} is not a valid host name")
    net: dict[str, Any] = {"device": mac, "hostname": hostname, "bootproto": "dhcp",
                           "ip": None, "netmask": None, "gateway": None, "ipv6": None,
                           "ipv6_gateway": None,
                           "nameservers": [_ip(n, where, "nameservers") for n in
                                           node.nameservers] or list(site.nameservers)}
    if node.address:
        iface = _interface(node.address, where, "address", 4)
        net.update(bootproto="static", ip=str(iface.ip), netmask=str(iface.netmask))
        if node.gateway:
            gw = ipaddress.IPv4Address(_ip(node.gateway, where, "gateway"))
            if gw not in iface.network:
                raise InputError(where, "gateway", f"{gw} is outside {iface.network}")
            net["gateway"] = str(gw)
    elif node.gateway:
        raise InputError(where, "gateway", "a gateway needs a static address (DHCP gives one)")
    if node.address6:
        net["ipv6"] = _interface(node.address6, where, "address6", 6).with_prefixlen
        if node.gateway6:
            net["ipv6_gateway"] = _ip(node.gateway6, where, "gateway6")
    return net


def _plan_of(plan_or_row: Mapping[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """The plan dict and its profile name, from a stored plan record or a plan dict."""
    if "plan" in plan_or_row and isinstance(plan_or_row["plan"], Mapping):
        plan = dict(plan_or_row["plan"])
        profile = str(plan_or_row.get("profile") or plan.get("profile") or "")
    else:
        plan = dict(plan_or_row)
        profile = str(plan.get("profile") or "")
    if not isinstance(plan.get("kernel_args"), list) or not isinstance(plan.get("tuned"),
                                                                       Mapping):
        raise InputError(where, "plan", "not a profile plan (kernel_args and tuned missing); "
                                        "run `metalctl profile derive NODE -p PROFILE` "
                                        "first")
    return plan, profile


def variables_for(plan_or_row: Mapping[str, Any], site: KickstartSite | Mapping[str, Any],
                  node: KickstartNode, *, callback: Callback) -> dict[str, Any]:
    """Every variable of the shipped templates, for one node and one install.

    Args:
        plan_or_row: the stored plan record (``Store.get_data(key, "plan")``, with
            ``profile`` and ``plan``) or the plan dict itself.
        site: a :class:`KickstartSite`, or the site policy to load it from.
        node: the node and its provisioning network.
        callback: the install's callback URL and one-time token.

    Raises:
        InputError: a malformed kernel argument or tuned variable in the plan, a bad
            MAC, address, host name, callback URL or token.
    """
    where = f"node {node.name}"
    if not _NODE_NAME.match(node.name):
        raise InputError(where, "name", "node names are letters, digits, '.', '_', '-'")
    ks_site = site if isinstance(site, KickstartSite) else load_site(site)
    plan, profile = _plan_of(plan_or_row, where)
    args = [_kernel_arg(a, where, "plan.kernel_args") for a in plan["kernel_args"]]
    _append_conflicts(args + ks_site.kernel_args, where)
    tuned = _tuned(plan["tuned"], where)
    if not _CALLBACK_URL.match(callback.url):
        raise InputError(where, "callback.url", f"{callback.url!r} is not an http(s) URL "
                                                "metalctl can quote safely")
    if callback.token.reveal() != TOKEN_PLACEHOLDER and not _TOKEN.match(callback.token.reveal()):
        raise InputError(where, "callback.token", "not a URL-safe token of 16-256 characters")
    network = _network(node, ks_site)
    return {
        "node": {"name": node.name, "hostname": network["hostname"]},
        "profile": profile or "none",
        "kernel_args": args,
        "tuned": tuned,
        "extra_kernel_args": list(ks_site.kernel_args),
        "network": network,
        "install": dict(ks_site.install),
        "repos": [dict(r) for r in ks_site.repos],
        "rootpw": ks_site.rootpw,
        "ssh_keys": [dict(k) for k in ks_site.ssh_keys],
        "lang": ks_site.lang,
        "keyboard": ks_site.keyboard,
        "timezone": ks_site.timezone,
        "ntp_servers": list(ks_site.ntp_servers),
        "disk": ks_site.disk,
        "packages": list(ks_site.packages),
        "callback": {"url": callback.url, "token": callback.token},
    }


def _tuned(tuned: Mapping[str, Any], where: str) -> dict[str, Any]:
    profile = tuned.get("profile")
    if profile is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", profile):
        raise InputError(where, "plan.tuned.profile", f"{profile!r} is not a tuned profile name")
    variables = dict(tuned.get("variables") or {})
    for name, value in variables.items():
        if not re.match(r"^[a-z_][a-z0-9_]{0,63}$", str(name)) or \
                not re.match(r"^[A-Za-z0-9_.,:/-]{1,512}$", str(value)):
            # an empty isolated_cores is tuned bug #294 (a bare "isolcpus=")
            raise InputError(where, f"plan.tuned.variables.{name}",
                             f"{value!r} is not a plain tuned variable value")
    vfile = tuned.get("variables_file")
    if variables and (not vfile or not re.match(r"^/etc/tuned/[A-Za-z0-9_.-]+\.conf$", vfile)):
        raise InputError(where, "plan.tuned.variables_file",
                         f"{vfile!r}: variables need a file under /etc/tuned/")
    return {"profile": profile, "variables_file": vfile, "variables": variables}


# --- kernel arguments --------------------------------------------------------------------

_ARG = re.compile(r"^(?P<key>[A-Za-z0-9_][A-Za-z0-9_.-]*)(=(?P<value>[A-Za-z0-9_.,:/=+@%-]+))?$")
# keys the kernel takes more than once; hugepages counts belong to the hugepagesz before them
REPEATABLE = frozenset({"console", "hugepagesz", "memmap", "earlycon"})


def _kernel_arg(arg: Any, label: str, where: str) -> str:
    if not isinstance(arg, str) or not _ARG.match(arg):
        raise InputError(label, where, f"{arg!r} is not a kernel argument (key or key=value; "
                                       "no spaces, quotes, empty values or shell characters)")
    return arg


def _append_conflicts(args: Sequence[str], label: str) -> list[str]:
    """Refuse a key given twice with two values; return warnings for plain repeats."""
    seen: dict[str, str | None] = {}
    warns: list[str] = []
    size = ""
    for arg in args:
        m = _ARG.match(arg)
        assert m is not None  # every caller checked the form first
        key, value = m.group("key"), m.group("value")
        if key == "hugepagesz":
            size = value or ""
        if key in REPEATABLE:
            continue
        scoped = f"{key}@{size}" if key == "hugepages" else key
        if scoped in seen:
            if seen[scoped] != value:
                raise InputError(label, "bootloader --append",
                                 f"{key} given twice with different values: "
                                 f"{key}={seen[scoped]} and {arg}")
            warns.append(f"bootloader --append: {arg} given twice")
        seen[scoped] = value
    return warns


def check_append(append: str | None, kernel_args: Sequence[str] | None,
                 label: str) -> list[str]:
    """Check ``bootloader --append``: well formed, consistent, and carrying the plan.

    Args:
        append: the ``--append`` value as anaconda receives it (None: no ``--append``).
        kernel_args: the plan's arguments, each of which must be present verbatim.
        label: template and node, for errors.

    Returns:
        Warnings (an argument repeated with the same value).

    Raises:
        InputError: an argument that is not ``key``/``key=value`` of plain characters, a
            key with two values, or a plan argument missing.
    """
    tokens = (append or "").split()
    for tok in tokens:
        _kernel_arg(tok, label, "bootloader --append")
    warns = _append_conflicts(tokens, label)
    missing = [a for a in kernel_args or [] if a not in tokens]
    if missing:
        raise InputError(label, "bootloader --append",
                         f"the plan's kernel arguments are missing: {' '.join(missing)}")
    return warns


# --- rendering ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """A rendered kickstart. ``text`` holds the secrets; show :meth:`masked` instead."""

    template: str
    path: str
    node: str
    text: str = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False, default=())

    def masked(self) -> str:
        """The text with the crypted root password and every token replaced by ``***``."""
        out = self.text
        for value in sorted(self.secrets, key=len, reverse=True):
            out = out.replace(value, MASK)
        # belt and braces: any crypt hash or bearer token the variables did not mark
        out = re.sub(r"\$[1256y]\$[^\s\"']+", MASK, out)
        return re.sub(r"(Authorization: Bearer )[^\s'\"]+", rf"\g<1>{MASK}", out)


def list_templates(template_dirs: Sequence[Path] | None = None) -> list[str]:
    """Template names (without ``.ks.j2``) in the directories; ``_`` names are partials."""
    names: set[str] = set()
    for d in _dirs(template_dirs):
        names.update(p.name[: -len(SUFFIX)] for p in d.glob(f"*{SUFFIX}")
                     if not p.name.startswith("_"))
    return sorted(names)


def _dirs(template_dirs: Sequence[Path] | None) -> list[Path]:
    return [Path(d) for d in template_dirs] if template_dirs else [data_dir("kickstart")]


def _refuse_none(value: Any) -> Any:
    if value is None:
        raise _NoneRendered
    return value


class _NoneRendered(Exception):
    """A variable that is None reached the output (caught and reported with its line)."""


@lru_cache(maxsize=16)
def _environment(dirs: tuple[Path, ...]) -> jinja2.Environment:
    # One environment per template path: Jinja caches compiled templates in it and
    # reloads a template whose file changed. Kickstart is not HTML, so autoescape would
    # corrupt it; values are checked instead (variables_for), and the sandbox keeps a
    # site's own template from reaching into Python.
    return jinja2.sandbox.SandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
        undefined=jinja2.StrictUndefined, autoescape=False,  # noqa: S701
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        finalize=_refuse_none)


def _stamp(dirs: Sequence[Path]) -> tuple[tuple[str, int], ...]:
    """Names and modification times of the templates: a cache key that sees edits."""
    return tuple(sorted((str(p), p.stat().st_mtime_ns) for d in dirs
                        for p in d.glob("*.j2") if p.is_file()))


@lru_cache(maxsize=64)
def _names_used(dirs: tuple[Path, ...], name: str,
                stamp: tuple[tuple[str, int], ...]) -> dict[str, str]:
    return _used_names(_environment(dirs), name, set())


def _used_names(env: jinja2.Environment, name: str, seen: set[str]) -> dict[str, str]:
    """Top-level names a template and the templates it extends/includes/imports use."""
    if name in seen:
        return {}
    seen.add(name)
    assert env.loader is not None
    source, path, _ = env.loader.get_source(env, name)
    ast = env.parse(source, name, path)
    # names a template binds itself (imports, macros, top-level sets) are not variables;
    # Jinja's analysis reports them when a block uses them
    bound = {n.target for n in ast.find_all(jinja2.nodes.Import)}
    bound |= {a if isinstance(a, str) else a[1] for n in ast.find_all(jinja2.nodes.FromImport)
              for a in n.names}
    bound |= {n.name for n in ast.find_all(jinja2.nodes.Macro)}
    bound |= {t.name for n in ast.body if isinstance(n, jinja2.nodes.Assign)
              for t in n.find_all(jinja2.nodes.Name)}
    used = {v: name for v in jinja2.meta.find_undeclared_variables(ast) if v not in bound}
    for ref in jinja2.meta.find_referenced_templates(ast):
        if ref is None:
            raise InputError(path or name, "(template)", "includes a computed template name; "
                                                         "metalctl cannot check its variables")
        for var, where in _used_names(env, ref, seen).items():
            used.setdefault(var, where)
    return used


def _reveal(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, Secret):
        secrets.append(value.reveal())
        return value.reveal()
    if isinstance(value, Mapping):
        return {k: _reveal(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reveal(v, secrets) for v in value]
    return value


def _template_line(exc: BaseException, names: Iterable[str]) -> tuple[str | None, int | None]:
    """The template file and line the render failed at (Jinja rewrites tracebacks)."""
    tb = exc.__traceback__
    found: tuple[str | None, int | None] = (None, None)
    wanted = tuple(names)
    while tb is not None:
        fname = tb.tb_frame.f_code.co_filename
        if fname.endswith(SUFFIX) or fname in wanted:
            found = (fname, tb.tb_lineno)
        tb = tb.tb_next
    return found


def render(template_name: str, variables: Mapping[str, Any], *,
           template_dirs: Sequence[Path] | None = None) -> Rendered:
    """Render a kickstart template.

    Args:
        template_name: ``rhel9-kvm`` or ``rhel9-kvm.ks.j2``.
        variables: from :func:`variables_for` (``template`` is set here).
        template_dirs: where templates are looked up, first match wins (the shipped
            ``kickstart/`` when omitted).

    Raises:
        InputError: the template is unknown or malformed, uses a variable metalctl does
            not document, or a variable it uses is missing or None (naming the template,
            its line and the variable).
    """
    dirs = tuple(_dirs(template_dirs))
    name = template_name if template_name.endswith(SUFFIX) else template_name + SUFFIX
    short = name[: -len(SUFFIX)]
    node = str((variables.get("node") or {}).get("name", "?"))
    if name.startswith("_") or "/" in name or "\\" in name:
        raise InputError("--template", template_name, "not a template name (partials "
                                                       "start with '_')")
    unknown = sorted(set(variables) - set(VARIABLES))
    if unknown:
        raise InputError(name, f"variable {unknown[0]}", "unknown: not a documented kickstart "
                                                          "variable (kickstart/README.md)")
    env = _environment(dirs)
    try:
        used = _names_used(dirs, name, _stamp(dirs))
        template = env.get_template(name)
    except jinja2.TemplateNotFound as exc:
        if exc.name != name:
            raise InputError(name, "(template)", f"uses {exc.name}, which is not in "
                                                 f"{', '.join(map(str, dirs))}") from None
        raise InputError("--template", template_name,
                         f"not found; templates: {', '.join(list_templates(dirs)) or 'none'}"
                         ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(exc.filename or name, "(syntax)", exc.message or "syntax error",
                         exc.lineno) from None
    for var, where in sorted(used.items()):
        if var not in VARIABLES:
            raise InputError(where, f"variable {var}", "unknown: not a documented kickstart "
                                                       "variable (kickstart/README.md)")
        if var != "template" and var not in variables:
            raise InputError(where, f"variable {var}", f"missing for node {node} (never "
                                                       "rendered as an empty string)")
    secrets: list[str] = []
    values = _reveal({**variables, "template": short}, secrets)
    try:
        text = template.render(values)
    except jinja2.UndefinedError as exc:
        path, line = _template_line(exc, [name])
        raise InputError(path or name, "variable", f"missing for node {node}: {exc.message}",
                         line) from None
    except _NoneRendered as exc:
        path, line = _template_line(exc, [name])
        raise InputError(path or name, "variable", f"renders as None for node {node}; "
                                                   "guard it with {% if %}", line) from None
    tpath = str(next((d / name for d in dirs if (d / name).is_file()), name))
    return Rendered(template=short, path=tpath, node=node, text=text,
                    secrets=tuple(s for s in secrets if s))


# --- validation --------------------------------------------------------------------------

# What Ironic renders the template with when it validates one (pxe_utils), kept exact:
# every value must appear in the result.
IRONIC_VALIDATION_OPTIONS = {"liveimg_url": "fake_image_url", "agent_token": "fake_token",
                             "config_drive": "", "heartbeat_url": "fake_heartbeat_url"}


def ironic_preview(text: str, label: str) -> str:
    """Render a kickstart that Ironic will render again, as Ironic validates it.

    Ironic's anaconda deploy renders ``ks_template`` with ``ks_options`` (the agent
    token, heartbeat URL, image URL, config drive) in a sandbox, strictly when it
    validates, and requires each option to be used.

    Raises:
        InputError: a Jinja error, an unknown ``ks_options`` key, or an option unused.
    """
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    try:
        out = env.from_string(text).render(ks_options=dict(IRONIC_VALIDATION_OPTIONS))
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(label, "Ironic's rendering", exc.message or "syntax error",
                         exc.lineno) from None
    except jinja2.UndefinedError as exc:
        raise InputError(label, "Ironic's rendering", f"{exc.message}; Ironic's options are "
                         f"{', '.join(IRONIC_VALIDATION_OPTIONS)}") from None
    missing = [k for k, v in IRONIC_VALIDATION_OPTIONS.items() if v and v not in out]
    if missing:
        raise InputError(label, "Ironic's rendering", f"ks_options unused: {', '.join(missing)}"
                         " (Ironic refuses the template)")
    return out


def for_ironic(text: str) -> bool:
    """Whether the kickstart is a template Ironic renders (it uses ``ks_options``)."""
    return "ks_options" in text


def validate(text: str, os_version: str | TargetOS, label: str, *,
             kernel_args: Sequence[str] | None = None) -> list[str]:
    """Validate a kickstart for a target OS; return warnings, raise on errors.

    Ironic templates (``ks_options``) are first rendered as Ironic validates them. Then
    pykickstart parses the text for the OS's version, ``bash -n`` checks every script
    section, the root password must be locked or a SHA-512 crypt hash, and
    :func:`check_append` checks ``bootloader --append`` against ``kernel_args``.

    Args:
        text: the kickstart (a :attr:`Rendered.text`).
        os_version: ``RHEL9``, ``Rocky 9``, ``Fedora 40``..., or a :class:`TargetOS`.
        label: the template and node, e.g. ``rhel9-kvm for node n1`` (errors start so).
        kernel_args: the plan's kernel arguments; each must be on ``--append``.

    Raises:
        InputError: naming the label, the kickstart line and pykickstart's reason.
    """
    target = os_version if isinstance(os_version, TargetOS) else target_os(os_version)
    if for_ironic(text):
        label = f"{label} (as Ironic renders it)"
        text = ironic_preview(text, label)
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        if re.match(r"^\s*%(include|ksappend)\b", line):
            raise InputError(label, _snippet(line), "metalctl renders one whole kickstart; "
                                                    "%include/%ksappend cannot be validated", n)
    parser = KickstartParser(makeVersion(target.version), followIncludes=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser.readKickstartFromString(text)
        except KickstartError as exc:
            n = getattr(exc, "lineno", None)
            where = _snippet(lines[n - 1]) if n and 0 < n <= len(lines) else "(kickstart)"
            reason = getattr(exc, "message", None) or str(exc)
            raise InputError(label, where, f"{target.version}: {reason.strip()}", n) from None
    warns = [f"{target.version}: {w.message}" for w in caught
             if issubclass(w.category, UserWarning | DeprecationWarning)]
    handler = parser.handler
    if handler.rootpw.password and not handler.rootpw.lock:
        if not handler.rootpw.isCrypted:
            raise InputError(label, "rootpw", "a clear root password; use --iscrypted with a "
                                              "SHA-512 crypt hash")
        if not shacrypt.is_sha512_crypt(handler.rootpw.password):
            raise InputError(label, "rootpw", "the crypted password is not SHA-512 crypt ($6$)")
    warns += _check_scripts(handler.scripts, label)
    warns += check_append(handler.bootloader.appendLine, kernel_args, label)
    if target.family == "rhel" and target.major <= 9 and \
            re.search(r"(^|\s)hugepages=\d+:", handler.bootloader.appendLine or ""):
        warns.append(f"{target.version}: per-NUMA-node hugepages= on the command line need "
                     "Linux 5.16 or a backport; an older kernel reserves none")
    return warns


def render_checked(template_name: str, variables: Mapping[str, Any],
                   os_version: str | TargetOS, *,
                   template_dirs: Sequence[Path] | None = None) -> tuple[Rendered, list[str]]:
    """Render and validate in one step (what ``provision --check`` shows, masked).

    The plan's kernel arguments are ``variables["kernel_args"]``; errors are labelled
    ``<template> for node <name>``.

    Raises:
        InputError: from :func:`render` or :func:`validate`.
    """
    rendered = render(template_name, variables, template_dirs=template_dirs)
    warns = validate(rendered.text, os_version, f"{rendered.template} for node {rendered.node}",
                     kernel_args=variables.get("kernel_args") or [])
    return rendered, warns


def _snippet(line: str) -> str:
    line = line.strip()
    # a rootpw or token line is never echoed whole into an error
    if line.startswith("rootpw") or "Bearer" in line:
        return line.split()[0]
    return line if len(line) <= 80 else line[:77] + "..."


def _check_scripts(scripts: Sequence[Any], label: str) -> list[str]:
    """``bash -n`` on every %pre/%post/%onerror body written for a shell.

    All bodies go to one ``bash -n`` (each inside a brace group); only when that fails is
    each checked alone, to name the section and line.
    """
    bash = shutil.which("bash")
    if bash is None:
        return ["bash not found: script sections were not syntax-checked"]
    shell = [s for s in scripts if (s.interp or "/bin/sh").endswith(("/sh", "/bash"))]
    if not shell or _bash_n(bash, "".join(f"{{\n{s.script}\n}}\n" for s in shell)) is None:
        return []
    for script in shell:
        error = _bash_n(bash, script.script)
        if error is not None:
            m = re.search(r"line (\d+)", error)
            line = script.lineno + int(m.group(1)) if m else script.lineno
            kind = {0: "%pre", 1: "%post", 2: "%traceback", 3: "%pre-install",
                    4: "%onerror"}.get(script.type, "script")
            raise InputError(label, f"{kind} section", f"shell syntax: "
                                                       f"{error.split(': ', 2)[-1]}", line)
    return []


def _bash_n(bash: str, text: str) -> str | None:
    """bash's first syntax complaint about ``text``, or None."""
    proc = subprocess.run([bash, "-n"], input=text, capture_output=True, text=True,
                          timeout=30, check=False)
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["syntax error"])[0]
