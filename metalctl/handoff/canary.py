"""The canary: one real guest of the profile's flavor on the new host, checked against
the plan, then deleted, before the host is declared handed off.

Placement's inventories prove the numbers; the canary proves the promise. Through Nova
(host-targeted create, microversion 2.74+), with no network and a tiny image named by
the site, the guest must go ACTIVE; then, over the hand-off's SSH session, its libvirt
domain and QEMU process are read on the host and checked:

* ``vcpu-pinning``: every ``<vcpupin>`` inside ``cpu_dedicated_set``
  (``hw:cpu_policy=dedicated``);
* ``emulator-threads``: ``<emulatorpin>`` where the flavor's
  ``hw:emulator_threads_policy`` puts them (``share``: ``cpu_shared_set``);
* ``hugepages``: ``<hugepages><page size=...>`` of the planned size on a NUMA node the
  plan gives pages, and QEMU's memory really mapped from hugetlbfs on that node
  (``/proc/<pid>/numa_maps``), when the flavor asks for a page size;
* ``svirt-label``: confined by the host's LSM with a label of its own (AppArmor
  ``libvirt-<uuid>``; SELinux ``svirt_t`` with an MCS pair). A kernel without an LSM can
  give only a DAC label: the check is then ``unavailable`` with exactly that, never a
  pass, and it does not fail the canary (the audit's LSM rules judge that host);
* ``placement``: the guest's allocation is ``PCPU`` (not ``VCPU``) for a dedicated flavor;
* the audit's runtime rules (``VRT-002``: guests confined by sVirt with distinct
  categories), which the hand-off's audit could not judge before any guest ran
  (:mod:`.canary_audit`), named after the rule.

Deleted, its allocation must be gone (``cleanup``). A failed check fails the host's
hand-off; :mod:`.stage` then disables its compute service with the reason.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from metalctl import cpulist, poll, ssh
from metalctl.errors import CloudError, CloudUnavailable, WaitTimeout
from metalctl.handoff import canary_audit
from metalctl.handoff.nova_api import NovaApi
from metalctl.handoff.novaconf import NovaConf

POLL_S = 0.5
#: the LSMs that give a guest a label of its own (``/sys/kernel/security/lsm``)
SVIRT_LSMS = ("apparmor", "selinux")
#: the disabled reason the canary leaves; a later hand-off may lift only this one
REASON_PREFIX = "metalctl canary failed: "


@dataclass
class Check:
    """One comparison of the running guest against the plan."""

    name: str
    status: str  # pass | fail | unavailable (the host cannot show it; says why)
    expected: str
    actual: str

    def to_dict(self) -> dict[str, str]:
        """Plain data for the evidence."""
        return dict(self.__dict__)


@dataclass
class CanaryReport:
    """What the canary did and found."""

    server: str | None = None
    flavor: str = ""
    timeline_s: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    #: the error is Nova's or Placement's (5xx, unreachable), not the host's: the host
    #: fails this hand-off but is not disabled for it
    cloud_error: bool = False

    @property
    def ok(self) -> bool:
        """True when the guest ran, no check failed and it was cleaned up."""
        return self.error is None and not any(c.status == "fail" for c in self.checks)

    def failures(self) -> str:
        """The reason in one line (what the disabled reason and the result say)."""
        bad = [f"{c.name}: expected {c.expected}, found {c.actual}" for c in self.checks
               if c.status == "fail"]
        return "; ".join(([self.error] if self.error else []) + bad)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the evidence."""
        return {"server": self.server, "flavor": self.flavor, "ok": self.ok,
                "timeline_s": self.timeline_s, "checks": [c.to_dict() for c in self.checks],
                "notes": self.notes, "error": self.error, "cloud_error": self.cloud_error}


class CanaryFailed(Exception):
    """Internal: the canary cannot go on (the message says why)."""


@dataclass
class GuestFacts:
    """The guest as the host shows it: the live domain XML, QEMU's numa_maps, its LSM
    label, and the host's LSMs."""

    xml: str
    numa_maps: str
    label: str
    lsms: list[str]


def read_guest(conn: Any, target: ssh.SshTarget, instance: str) -> GuestFacts:
    """One round trip: ``virsh dumpxml``, QEMU's numa_maps and label, the LSM list.

    Raises:
        CanaryFailed: the domain is not there.
    """
    q = shlex.quote(instance)
    script = f"""
# stderr only when it failed: a host's warnings (a missing locale's setlocale) are not XML
echo '### xml'
LC_ALL=C virsh -c qemu:///system dumpxml {q} 2>/dev/null || \
  LC_ALL=C virsh -c qemu:///system dumpxml {q} 2>&1 | tail -n 3
pid=$(cat /run/libvirt/qemu/{q}.pid 2>/dev/null)
echo '### numa'; [ -n "$pid" ] && grep huge /proc/$pid/numa_maps 2>/dev/null
echo '### label'; [ -n "$pid" ] && cat /proc/$pid/attr/current 2>/dev/null; echo
echo '### lsm'; cat /sys/kernel/security/lsm 2>/dev/null; echo
"""
    out = ssh.run_script(conn, target, script)

    def part(name: str) -> str:
        m = re.search(rf"^### {name}\n(.*?)(?=^### |\Z)", out, re.S | re.M)
        return m.group(1).strip() if m else ""

    xml = part("xml")
    if not xml.startswith("<domain"):
        raise CanaryFailed(f"libvirt on the host has no domain {instance}: {xml[:200]}")
    return GuestFacts(xml, part("numa"), part("label").strip("\0 \n"),
                      [x for x in part("lsm").split(",") if x])


def parse_domain(xml: str) -> ElementTree.Element:
    """Parse a domain XML read from the host: bounded, and without a DOCTYPE (libvirt
    never writes one; entity tricks need it), so the stdlib parser is safe here.

    Raises:
        CanaryFailed: too large, a DOCTYPE, or not XML.
    """
    if len(xml) > 1_000_000 or "<!DOCTYPE" in xml.upper() or "<!ENTITY" in xml.upper():
        raise CanaryFailed("the host's domain XML is too large or has a DOCTYPE")
    try:
        return ElementTree.fromstring(xml)  # noqa: S314 - bounded, no DOCTYPE (above)
    except ElementTree.ParseError as exc:
        raise CanaryFailed(f"the host's domain XML does not parse: {exc}") from None


def _cpus(text: str | None) -> set[int]:
    return set(cpulist.parse(text)) if text else set()


def check_pinning(dom: ElementTree.Element, specs: dict[str, str], dedicated: set[int],
                  shared: set[int]) -> list[Check]:
    """vCPU and emulator pinning against the CPU sets (dedicated flavors only)."""
    if specs.get("hw:cpu_policy") != "dedicated":
        return []
    pins = [p.get("cpuset") for p in dom.findall("./cputune/vcpupin")]
    pinned = set().union(*(_cpus(p) for p in pins)) if pins else set()
    out = [Check("vcpu-pinning", "pass" if pins and pinned <= dedicated else "fail",
                 f"inside cpu_dedicated_set {cpulist.format(sorted(dedicated))}",
                 ",".join(p or "" for p in pins) or "no <vcpupin>")]
    emu = dom.find("./cputune/emulatorpin")
    emu_cpus = _cpus(emu.get("cpuset") if emu is not None else None)
    policy = specs.get("hw:emulator_threads_policy")
    where = shared if policy == "share" and shared else pinned
    what = ("cpu_shared_set" if policy == "share" and shared else "the guest's own CPUs")
    out.append(Check("emulator-threads", "pass" if emu_cpus and emu_cpus <= where else "fail",
                     f"inside {what} {cpulist.format(sorted(where))}",
                     cpulist.format(sorted(emu_cpus)) if emu_cpus else "no <emulatorpin>"))
    return out


def check_hugepages(dom: ElementTree.Element, numa_maps: str, specs: dict[str, str],
                    plan: dict[str, Any]) -> list[Check]:
    """Hugepage backing of the planned size on a node the plan gives pages."""
    size = specs.get("hw:mem_page_size")
    if not size or size in ("small", "any"):
        return []
    want_kib = {"2MB": 2048, "1GB": 1048576, "2M": 2048, "1G": 1048576}.get(size)
    nodes = sorted(n["node"] for n in plan.get("numa", []) if n.get("hugepages"))
    pages = dom.findall("./memoryBacking/hugepages/page")
    got = [(p.get("size"), p.get("unit"), p.get("nodeset")) for p in pages]
    size_ok = bool(pages) and all(p.get("unit", "KiB") == "KiB" and
                                  (want_kib is None or p.get("size") == str(want_kib))
                                  for p in pages)
    placed = {n for p in pages for n in _cpus(p.get("nodeset"))}
    tune = dom.find("./numatune/memory")
    mapped = {int(n) for n in re.findall(r"\bN(\d+)=\d+", numa_maps)}
    expected = f"{want_kib or size} KiB pages on NUMA node(s) {nodes} (plan)"
    actual = (f"<page> {got}; numatune {tune.get('nodeset') if tune is not None else None};"
              f" QEMU hugetlb mappings on node(s) {sorted(mapped) or 'none'}")
    ok = size_ok and bool(mapped) and mapped <= set(nodes) and placed <= set(nodes)
    return [Check("hugepages", "pass" if ok else "fail", expected, actual)]


def check_label(dom: ElementTree.Element, facts: GuestFacts) -> Check:
    """The guest's own sVirt label, or exactly why the host cannot give one."""
    labels = {s.get("model"): (s.findtext("label") or "")
              for s in dom.findall("./seclabel")}
    uuid = dom.findtext("uuid") or ""
    lsm = next((m for m in SVIRT_LSMS if m in facts.lsms), None)
    if lsm is None:
        return Check("svirt-label", "unavailable",
                     "a label of the host's LSM (AppArmor libvirt-<uuid> or SELinux "
                     "svirt_t with an MCS pair)",
                     f"this host's kernel has no LSM (/sys/kernel/security/lsm: "
                     f"{','.join(facts.lsms) or 'empty'}): only a DAC label is possible: "
                     f"{labels.get('dac') or 'none'}")
    label = labels.get(lsm, "")
    if lsm == "apparmor":
        ok = label == f"libvirt-{uuid}" and facts.label.startswith(f"libvirt-{uuid}")
        want = f"AppArmor profile libvirt-{uuid}"
    else:
        ok = ":svirt_t:" in facts.label and bool(re.search(r":s0:c\d+,c\d+$", facts.label))
        want = "SELinux svirt_t with an MCS pair of its own"
    return Check("svirt-label", "pass" if ok else "fail", want,
                 f"domain {lsm} label {label or 'none'}; QEMU runs as {facts.label or '?'}")


def check_allocation(allocations: dict[str, Any], specs: dict[str, str],
                     vcpus: int) -> Check:
    """PCPU, not VCPU, for a dedicated flavor (VCPU otherwise)."""
    resources: dict[str, int] = {}
    for alloc in allocations.values():
        for rc, n in alloc["resources"].items():
            resources[rc] = resources.get(rc, 0) + n
    rc = "PCPU" if specs.get("hw:cpu_policy") == "dedicated" else "VCPU"
    other = "VCPU" if rc == "PCPU" else "PCPU"
    ok = resources.get(rc) == vcpus and other not in resources
    return Check("placement", "pass" if ok else "fail", f"{rc}: {vcpus}, no {other}",
                 str(dict(sorted(resources.items()))) if resources else "no allocation")


def _wait(what: str, timeout_s: float, probe: Any) -> Any:
    try:
        return poll.wait_for(probe, timeout_s=timeout_s, interval_s=POLL_S, what=what)
    except WaitTimeout:
        raise CanaryFailed(f"{what} within {timeout_s:g} s") from None


def _active(api: NovaApi, server_id: str) -> Any:
    def probe() -> dict[str, Any] | None:
        s = api.server(server_id)
        if s is None:
            raise CanaryFailed("the server vanished before it was ACTIVE")
        if s["status"] == "ERROR":
            fault = (s.get("fault") or {}).get("message", "no fault recorded")
            raise CanaryFailed(f"the server went to ERROR: {fault}")
        return s if s["status"] == "ACTIVE" else None
    return probe


@dataclass
class CanaryRequest:
    """What one canary boots, where, and what it is checked against."""

    host: str               # the compute's [DEFAULT] host
    flavor: str             # the canary flavor's name
    image: str              # Glance image id (kernel + initramfs: the site's)
    conf: NovaConf          # the rendering: cpu_dedicated_set, cpu_shared_set
    plan: dict[str, Any]    # the profile plan: hugepages per NUMA node
    timeout_s: float = 120.0
    mgmt_address: str = ""  # the host's management address (the runtime rules' context)


def run(api: NovaApi, conn: Any, target: ssh.SshTarget, req: CanaryRequest) -> CanaryReport:
    """Boot, check, delete: see the module docstring. Never raises for the guest's own
    failures (they are in the report); the server is deleted whatever happened."""
    started = time.monotonic()
    rep = CanaryReport(flavor=req.flavor)

    def mark(name: str) -> None:
        rep.timeline_s[name] = round(time.monotonic() - started, 1)

    try:
        flavor = next((f for f in api.flavors() if f["name"] == req.flavor), None)
        if flavor is None:
            raise CanaryFailed(f"Nova has no flavor {req.flavor}")
        specs = flavor.get("extra_specs") or {}
        if any(v.get("vfs") for v in req.plan.get("vfs") or []) and \
                not any(k.startswith("pci_passthrough:") for k in specs):
            rep.notes.append("the plan has VFs but the canary asks for none (its flavor "
                             "carries no PCI alias): VFs are not proven by the canary")
        name = f"metalctl-canary-{req.host}"
        for stale in api.servers_named(name):
            # an earlier hand-off that died or timed out left its canary holding the
            # host's dedicated CPUs: without this, every later canary is "No valid host"
            _delete(api, CanaryReport(flavor=req.flavor, server=stale["id"]), req.timeout_s)
            rep.notes.append(f"removed the canary an earlier hand-off left ({stale['id']})")
        server = api.create_server({"name": name,
                                    "imageRef": req.image, "flavorRef": flavor["id"],
                                    "networks": "none", "host": req.host})
        rep.server = server["id"]
        mark("created")
        active = _wait("not ACTIVE", req.timeout_s, _active(api, rep.server))
        mark("active")
        facts = read_guest(conn, target, active["OS-EXT-SRV-ATTR:instance_name"])
        dom = parse_domain(facts.xml)
        dedicated = _cpus(_one(req.conf, "compute", "cpu_dedicated_set"))
        shared = _cpus(_one(req.conf, "compute", "cpu_shared_set"))
        rep.checks += check_pinning(dom, specs, dedicated, shared)
        rep.checks += check_hugepages(dom, facts.numa_maps, specs, req.plan)
        rep.checks.append(check_label(dom, facts))
        rep.checks.append(check_allocation(api.allocations(rep.server), specs,
                                           flavor["vcpus"]))
        rep.checks += [Check(*v) for v in canary_audit.judge(conn, target, req.host,
                                                              req.mgmt_address)]
        mark("checked")
    except CloudUnavailable as exc:
        rep.error, rep.cloud_error = str(exc), True
    except (CanaryFailed, CloudError) as exc:
        rep.error = str(exc)
    finally:
        if rep.server:
            _delete(api, rep, req.timeout_s)
            mark("deleted")
    return rep


def _delete(api: NovaApi, rep: CanaryReport, timeout_s: float) -> None:
    assert rep.server is not None
    try:
        api.delete_server(rep.server)
        _wait("not deleted", timeout_s, lambda: True if api.server(rep.server) is None
              else None)
        left = api.allocations(rep.server)
    except (CanaryFailed, CloudError) as exc:
        rep.checks.append(Check("cleanup", "fail", "the canary deleted", str(exc)))
        return
    rep.checks.append(Check("cleanup", "fail" if left else "pass",
                            "no allocation left", str(left) if left else "none"))


def _one(conf: NovaConf, section: str, option: str) -> str | None:
    values = conf.get(section, option)
    return values[-1] if values else None
