"""Rule cases: recorded host facts under which a rule's claim holds (``pass``) or is
false (``fail``), in the manner of ansible-lint's pass/fail examples.

``tests/data/rule-cases/*.yaml`` map a rule id to ``pass:`` and ``fail:`` lists of
cases; a case is::

    - name: what the host looks like (where it was seen)
      host: debian | rhel          # the base facts (below), default debian
      facts: {...}                 # HostFacts fields over the base (files: path -> text
                                   # or {mode, owner, group, content})
      probe_files: {id: path}      # (optional) probe outputs recorded in files beside the
                                   # cases (e.g. ``nft -j list ruleset``)
      site: {...}                  # site policy over SITE (optional)
      pki: false                   # (optional) audit without the site PKI (default: PKI)
      expect: pass | fail | notchecked | notapplicable | error   # the audit status
      actual: text                 # (optional) a substring of the evidence's actual
      detail: text                 # (optional) a substring of the evidence's detail
      remediation: text            # (optional) a substring of the remediation
      not_in_remediation: [text]   # (optional) substrings the remediation must not carry

A BMC rule's case (platform ``bmc``) gives what the BMC said instead of host facts:
its format is in :mod:`bmccases` (``bmc.yaml``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import bmccases
import yaml

from metalctl.audit import run as audit_run
from metalctl.audit.model import Result
from metalctl.rules import engine
from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import FileFact, HostFacts
from metalctl.rules.plan import sha256_text

CASES_DIR = Path(__file__).parent.parent / "data" / "rule-cases"
SITE: dict[str, Any] = {
    "lsm": "auto",
    "libvirt": {"tls_priority": "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2",
                "extra_allowed_dns": []},
    "updates": {"apply": "no"},
    "sysctl": {"shared_kernel_hosts": []},
    "repositories": {"dnf": [{"id": "baseos", "gpgkey": "file:///etc/pki/rpm-gpg/site"}],
                     "apt": [{"uri": "http://deb.example/debian",
                              "signed_by": "/usr/share/keyrings/site.gpg"}]},
}
BASE: dict[str, dict[str, Any]] = {
    "debian": {"os_id": "debian", "version": "12", "family": "debian", "init": "sysv",
               "pkg": {"apt"}, "groups": {"root", "libvirt-qemu"},
               "binaries": {"libvirtd"}, "own_netns": False},
    "rhel": {"os_id": "rhel", "os_like": "fedora", "version": "9.4", "family": "rhel",
             "init": "systemd", "selinux_enabled": True, "getenforce": "Enforcing",
             "pkg": {"dnf"}, "groups": {"root", "qemu"}, "binaries": {"virtproxyd"}},
}
SETS = ("pkg", "groups", "processes", "listening", "binaries")
#: the site PKI material a case's host is compared with (``pki:NAME`` sources)
PKI = {n: f"-----BEGIN {n}-----\n-----END {n}-----\n"
       for n in ("ca", "server_cert", "server_key", "client_cert", "client_key", "console_ca",
                 "vnc_server_cert", "vnc_server_key")}


def load() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every case file, merged: rule id -> {"pass": [...], "fail": [...]}."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for rid, sides in (yaml.safe_load(path.read_text()) or {}).items():
            for side, cases in sides.items():
                for case in cases:
                    case.setdefault("file", path.name)
                out.setdefault(rid, {}).setdefault(side, []).extend(cases)
    return out


def host_facts(case: dict[str, Any]) -> HostFacts:
    """The HostFacts of a case: its base host with the case's facts over it."""
    kw = copy.deepcopy(BASE[case.get("host", "debian")])
    kw.update(copy.deepcopy(case.get("facts") or {}))
    files = kw.pop("files", {}) or {}
    for probe, path in (case.get("probe_files") or {}).items():
        kw.setdefault("probes", {})[probe] = (CASES_DIR / path).read_text()
    f = HostFacts()
    for key, value in kw.items():
        setattr(f, key, set(value) if key in SETS else value)
    if "apparmor_enabled" not in kw and "apparmor_module" in kw:
        f.apparmor_enabled = f.apparmor_module == "Y" and (
            f.lsms is None or "apparmor" in f.lsms)
    for path, spec in files.items():
        if not isinstance(spec, dict):
            spec = {"content": spec}
        content = spec.get("content")
        if "content_file" in spec:
            content = (CASES_DIR / spec["content_file"]).read_text()
        f.files[path] = FileFact(True, str(spec.get("mode", "644")), spec.get("owner", "root"),
                                 spec.get("group", "root"),
                                 None if content is None else sha256_text(content), content)
    return f


def site_of(case: dict[str, Any]) -> dict[str, Any]:
    """SITE with the case's site policy over it (one level deep)."""
    site = copy.deepcopy(SITE)
    for key, value in (case.get("site") or {}).items():
        if isinstance(value, dict) and isinstance(site.get(key), dict):
            site[key] = {**site[key], **value}
        else:
            site[key] = value
    return site


def judge(rule: Rule, case: dict[str, Any]) -> Result:
    """The audit result of ``rule`` on the case's host (or BMC)."""
    if "bmc" in rule.platforms:
        return bmccases.judge(rule, case)
    ctx = engine.Context(host=case.get("hostname", "c1"), mgmt_address="192.0.2.10",
                         allowed_dns=["C=US,O=site,CN=c1"], site=site_of(case),
                         pki=dict(PKI) if case.get("pki", True) else {})
    plan = engine.evaluate([rule], host_facts(case), ctx)
    [o] = plan.outcomes
    return audit_run.to_result("c1", rule, o)
