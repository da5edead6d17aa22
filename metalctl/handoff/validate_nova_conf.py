"""Check a nova.conf against Nova's own option definitions (run by the Nova venv's python).

This file is package data: metalctl runs it as a script with an interpreter that has
``nova`` installed (``metalctl.handoff.novaopts``); it imports nothing from metalctl.
The configuration comes on stdin (with ``--batch``, a JSON ``{"documents": [...]}``, answered
with ``{"results": [{"errors", "warnings"}, ...], ...}``); the answer is one JSON object on
stdout::

    {"errors": [{"section": "libvirt", "option": "virt_type", "reason": "..."}],
     "warnings": [...], "nova_version": "34.0.0", "namespaces": [...],
     "missing_namespaces": [...], "elapsed_s": 2.9}

What is checked (measured in reference/lab-host-recipes.md section 6: oslo-config-validator
only checks names and accepted every bad value below):

1. names: every section and option must be registered by one of the namespaces Nova's
   own config generator uses (``etc/nova/nova-config-generator.conf``), plus the
   keystoneauth plugin options of a section that sets ``auth_type`` and oslo.privsep's
   options in the section of each privsep context (``[nova_sys_admin]``...);
2. values: ``opt.type(value)`` for each value (repeated keys of a MultiOpt are each
   checked: ``cfg.ConfigParser`` keeps them), which covers types, ranges and choices;
3. Nova's own parsers where oslo.config sees only a string: ``parse_cpu_spec`` for the
   CPU sets (and that the sets are disjoint: nova-compute logs CRITICAL and hangs on
   overlap), ``json.loads`` plus Nova's ``Whitelist`` for ``[pci] device_spec`` and its
   alias parser for ``[pci] alias``;
4. metalctl's allow-list where Nova takes any string (``ALLOWED``), and the compute
   policy: no database sections (a standalone compute; with them it tries DB access);
   consoles, when ``[vnc] enabled``: QEMU listens on ``server_listen`` and the proxy
   connects to ``server_proxyclient_address``, so both are the management address
   (``my_ip``): not loopback (no proxy elsewhere reaches it; Nova's default), not a
   wildcard (consoles on tenant and public networks too).
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import tempfile
import time
import warnings
from typing import Any

NAMESPACES = [
    "nova.conf", "oslo.log", "oslo.messaging", "oslo.policy", "oslo.privsep",
    "oslo.service.periodic_task", "oslo.service.service", "oslo.db", "oslo.middleware",
    "oslo.concurrency", "oslo.reports", "oslo.cache", "oslo.limit", "oslo.versionedobjects",
    "keystonemiddleware.auth_token", "os_vif", "osprofiler",
]

#: options Nova declares as free strings, where only these values make sense for a
#: metalctl-managed libvirt compute. Nova builds ``qemu+<scheme>://<dest>/system`` from
#: live_migration_scheme, so a typo ("tsl") is only found when a migration runs.
ALLOWED = {
    ("libvirt", "live_migration_scheme"): ("tls", "tcp", "ssh"),
    ("DEFAULT", "compute_driver"): ("libvirt.LibvirtDriver",),
}
#: sections a compute's configuration must not have (standalone compute)
FORBIDDEN_SECTIONS = {"database": "nova-compute must not access the database directly",
                      "api_database": "nova-compute must not access the database directly"}
CPU_SETS = ("cpu_dedicated_set", "cpu_shared_set")


class Checker:
    """Collects errors and warnings about one configuration."""

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []
        self.warnings: list[dict[str, str]] = []

    def error(self, section: str, option: str, reason: str) -> None:
        """Record an error about ``option`` in ``section`` (``option`` empty for the section)."""
        self.errors.append({"section": section, "option": option, "reason": reason})

    def warn(self, section: str, option: str, reason: str) -> None:
        """Record a warning about ``option`` in ``section``."""
        self.warnings.append({"section": section, "option": option, "reason": reason})


def _group_name(group: Any) -> str:
    name = getattr(group, "name", group)
    return name or "DEFAULT"


def load_options(namespaces: list[str]) -> tuple[dict[str, dict[str, Any]],
                                                 dict[tuple[str, str], tuple[str, Any]],
                                                 list[str]]:
    """Nova's registered options: ``{group: {key: opt}}``, deprecated aliases, and the
    namespaces that are not installed (those add no options)."""
    from importlib.metadata import entry_points

    from oslo_config import generator

    installed = {e.name for e in entry_points(group="oslo.config.opts")}
    present = [n for n in namespaces if n in installed]
    groups: dict[str, dict[str, Any]] = {}
    aliases: dict[tuple[str, str], tuple[str, Any]] = {}
    for _namespace, listing in generator._list_opts(present):
        for group, opts in listing:
            gname = _group_name(group)
            for opt in opts:
                _register(groups, aliases, gname, opt)
    return groups, aliases, [n for n in namespaces if n not in installed]


def _register(groups: dict[str, dict[str, Any]],
              aliases: dict[tuple[str, str], tuple[str, Any]], gname: str, opt: Any) -> None:
    groups.setdefault(gname, {})[opt.dest] = opt
    for dep in getattr(opt, "deprecated_opts", None) or []:
        dgroup = dep.group or gname
        dname = (dep.name or opt.dest).replace("-", "_")
        aliases[(dgroup, dname)] = (gname, opt)


#: modules that define the privsep contexts a compute runs; each context registers
#: oslo.privsep's options under its own section at import (not in any generator namespace)
PRIVSEP_MODULES = ("nova.privsep", "vif_plug_ovs.privsep", "vif_plug_linux_bridge.privsep")


def _privsep_options(groups: dict[str, dict[str, Any]],
                     aliases: dict[tuple[str, str], tuple[str, Any]]) -> None:
    """``[nova_sys_admin]``, ``[vif_plug_ovs_privileged]``...: oslo.privsep's options."""
    import importlib

    from oslo_privsep import priv_context

    for name in PRIVSEP_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for value in vars(module).values():
            if isinstance(value, priv_context.PrivContext):
                for opt in priv_context.OPTS:
                    _register(groups, aliases, value.cfg_section, opt)


def _plugin_options(chk: Checker, groups: dict[str, dict[str, Any]],
                    aliases: dict[tuple[str, str], tuple[str, Any]],
                    sections: dict[str, dict[str, list[str]]]) -> None:
    """keystoneauth plugin options of each section that names an ``auth_type``."""
    from keystoneauth1 import exceptions as ks_exc
    from keystoneauth1 import loading

    for section, opts in sections.items():
        values = opts.get("auth_type")
        if not values:
            continue
        try:
            plugin = loading.get_plugin_loader(values[-1])
        except ks_exc.NoMatchingPlugin:
            chk.error(section, "auth_type", f"no keystoneauth plugin named {values[-1]!r}")
            continue
        for opt in loading.get_auth_plugin_conf_options(plugin):
            if opt.dest not in groups.get(section, {}):
                _register(groups, aliases, section, opt)


def _lookup(groups: dict[str, dict[str, Any]], aliases: dict[tuple[str, str], tuple[str, Any]],
            section: str, key: str) -> tuple[Any, str | None]:
    """(opt, the canonical ``[group] name`` when ``key`` is a deprecated alias)."""
    norm = key.replace("-", "_")
    opt = groups.get(section, {}).get(norm)
    if opt is not None:
        return opt, None
    if (section, norm) in aliases:
        gname, opt = aliases[(section, norm)]
        return opt, f"[{gname}] {opt.dest}"
    return None, None


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_names_and_values(chk: Checker, groups: dict[str, dict[str, Any]],
                           aliases: dict[tuple[str, str], tuple[str, Any]],
                           sections: dict[str, dict[str, list[str]]]) -> None:
    """Check every section and option is registered by Nova and each value parses.

    Forbidden sections (database ones) are errors; deprecated names resolve through ``aliases``.
    """
    known_sections = set(groups) | {g for g, _ in aliases}
    for section, opts in sections.items():
        if section in FORBIDDEN_SECTIONS:
            chk.error(section, "", FORBIDDEN_SECTIONS[section])
            continue
        if section not in known_sections:
            chk.error(section, "", "unknown section: no Nova option is registered in it"
                      + _hint(section, sorted(known_sections)))
            continue
        for key, values in opts.items():
            opt, canonical = _lookup(groups, aliases, section, key)
            if opt is None:
                chk.error(section, key, "unknown option"
                          + _hint(key, sorted(groups.get(section, {}))))
                continue
            if canonical:
                chk.warn(section, key, f"deprecated name; Nova reads it as {canonical}")
            if getattr(opt, "deprecated_for_removal", False):
                chk.warn(section, key, "deprecated for removal in this Nova release")
            if len(values) > 1 and not getattr(opt, "multi", False):
                chk.warn(section, key, f"set {len(values)} times; only the last counts")
            for value in values:
                _check_value(chk, section, key, opt, value)


def _check_value(chk: Checker, section: str, key: str, opt: Any, value: str) -> None:
    try:
        opt.type(value)
    except (ValueError, TypeError) as exc:
        chk.error(section, key, f"{value!r} is not valid: {exc}")
        return
    allowed = ALLOWED.get((section, key))
    if allowed and value not in allowed:
        chk.error(section, key, f"{value!r} is not one of {', '.join(allowed)} "
                                "(metalctl's allow-list; Nova accepts any string here)")


def check_cpu_sets(chk: Checker, sections: dict[str, dict[str, list[str]]]) -> None:
    """Check the CPU sets with Nova's ``parse_cpu_spec`` and that they are disjoint."""
    from nova import exception
    from nova.virt import hardware

    parsed: dict[str, set[int]] = {}
    for key in CPU_SETS:
        values = sections.get("compute", {}).get(key)
        if not values:
            continue
        try:
            parsed[key] = set(hardware.parse_cpu_spec(values[-1]))
        except exception.Invalid as exc:
            chk.error("compute", key, str(exc))
    if len(parsed) == 2 and parsed[CPU_SETS[0]] & parsed[CPU_SETS[1]]:
        both = sorted(parsed[CPU_SETS[0]] & parsed[CPU_SETS[1]])
        chk.error("compute", "cpu_dedicated_set", f"overlaps cpu_shared_set on CPUs {both} "
                  "(nova-compute logs CRITICAL 'must be disjoint' and does not start)")


def check_pci(chk: Checker, sections: dict[str, dict[str, list[str]]]) -> None:
    """Check ``[pci] device_spec`` and ``alias`` are JSON that Nova's own parsers accept."""
    pci = sections.get("pci", {})
    good: dict[str, list[str]] = {}
    for key in ("device_spec", "alias"):
        for value in pci.get(key, []):
            try:
                json.loads(value)
            except json.JSONDecodeError as exc:
                chk.error("pci", key, f"not JSON ({exc.msg} at column {exc.colno}): {value}")
                continue
            good.setdefault(key, []).append(value)
    if not good:
        return
    from nova import exception
    from nova.conf import CONF
    from nova.pci import request, whitelist

    if good.get("device_spec"):
        try:
            whitelist.Whitelist(good["device_spec"])
        except exception.NovaException as exc:
            chk.error("pci", "device_spec", str(exc))
    if good.get("alias"):
        CONF.set_override("alias", good["alias"], group="pci")
        # nova caches the parsed aliases (functools.cache): one parse per document
        request.get_alias_from_config.cache_clear()
        try:
            request.get_alias_from_config()
        except exception.NovaException as exc:
            chk.error("pci", "alias", str(exc))
        finally:
            CONF.clear_override("alias", group="pci")


def _last(sections: dict[str, dict[str, list[str]]], section: str, option: str,
          default: str | None = None) -> str | None:
    values = sections.get(section, {}).get(option)
    return values[-1] if values else default


def check_consoles(chk: Checker, sections: dict[str, dict[str, list[str]]]) -> None:
    """``[vnc]`` on the management address (module docstring, point 4)."""
    import ipaddress

    from oslo_config import types

    if not types.Boolean()(_last(sections, "vnc", "enabled", "true")):
        return
    my_ip = _last(sections, "DEFAULT", "my_ip")
    for option in ("server_listen", "server_proxyclient_address"):
        value = _last(sections, "vnc", option, "127.0.0.1")  # Nova's default
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            address = None  # a host name: Nova's HostAddressOpt already judged it
        if value == "localhost" or (address is not None and address.is_loopback):
            chk.error("vnc", option, f"{value} is loopback: no console proxy on another "
                                     "machine reaches it; use the management address (my_ip)")
        elif address is not None and address.is_unspecified:
            chk.error("vnc", option, f"{value} listens on every network, tenant and public "
                                     "ones too; use the management address (my_ip)")
        elif my_ip and value != my_ip:
            chk.warn("vnc", option, f"{value} is not [DEFAULT] my_ip ({my_ip})")


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """Parse configuration text with oslo.config into section -> option -> values."""
    from oslo_config import cfg

    sections: dict[str, dict[str, list[str]]] = {}
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write(text)
    try:
        cfg.ConfigParser(f.name, sections).parse()
    finally:
        os.unlink(f.name)
    return sections


def check_document(text: str, groups: dict[str, dict[str, Any]],
                   aliases: dict[tuple[str, str], tuple[str, Any]]) -> dict[str, Any]:
    """Errors and warnings of one configuration (plugin options are per document)."""
    chk = Checker()
    try:
        sections = parse(text)
    except Exception as exc:  # noqa: BLE001 - oslo's parse errors have no common base
        chk.error("", "", f"not an INI document: {exc}")
        sections = {}
    groups = {name: dict(opts) for name, opts in groups.items()}
    aliases = dict(aliases)
    _plugin_options(chk, groups, aliases, sections)
    check_names_and_values(chk, groups, aliases, sections)
    check_cpu_sets(chk, sections)
    check_pci(chk, sections)
    check_consoles(chk, sections)
    return {"errors": chk.errors, "warnings": chk.warnings}


def main() -> int:
    """One document on stdin, or with ``--batch`` a JSON ``{"documents": [...]}`` (the
    option discovery, most of the run time, is then paid once for all of them)."""
    started = time.monotonic()
    warnings.simplefilter("ignore")  # eventlet/oslo deprecation noise on stderr
    import logging
    logging.disable(logging.WARNING)  # stevedore's "Could not load osprofiler"
    payload = sys.stdin.read()
    batch = "--batch" in sys.argv[1:]
    documents = json.loads(payload)["documents"] if batch else [payload]
    groups, aliases, missing = load_options(NAMESPACES)
    _privsep_options(groups, aliases)
    results = [check_document(text, groups, aliases) for text in documents]
    from importlib.metadata import version
    common = {"nova_version": version("nova"), "namespaces": NAMESPACES,
              "missing_namespaces": missing,
              "elapsed_s": round(time.monotonic() - started, 3)}
    json.dump({"results": results, **common} if batch else {**results[0], **common},
              sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
