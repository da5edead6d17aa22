"""Derive a node's exact performance settings from its topology and a profile.

Baseline: TripleO's derive-parameters (host cores = the core holding each node's
lowest thread, PMD cores on the DPDK NICs' nodes, socket memory formula,
dedicated = all - host - PMD, isolcpus = all - host) and OpenShift PPC's rules
(whole cores only, siblings never split, range checks). Where metalctl goes
further (see docs/profiles.md):

* hugepages are planned per NUMA node and emitted per node, not as one kernel-wide
  count the kernel splits evenly;
* DPDK socket memory is reserved from the pages of the node that needs it;
* nodes holding kernel-served NICs can keep extra host cores, so their IRQs stay
  node-local;
* a requested workload (vCPUs, memory, VFs on one NUMA node) is checked against
  what each node can give, and the failure names node, need and have;
* :func:`compare` re-derives against a live host after apply.

Everything here is pure: same facts + profile = same plan.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from metalctl import cpulist
from metalctl.errors import FactsIncomplete, ProfileUnsatisfiable
from metalctl.model.topology import Nic, Topology
from metalctl.profile.library import Profile

PAGE_MIB = {"2M": 2, "1G": 1024}
PAGE_KIB = {"2M": 2048, "1G": 1048576}
NOVA_PAGE = {"2M": "2MB", "1G": "1GB"}
#: TripleO OVS-DPDK constants (derive-ovs-dpdk-parameters): per-MTU overhead and
#: buffer count, then 512 MiB, rounded up to whole GiB
DPDK_OVERHEAD = 800
DPDK_BUFFERS_BYTES = 4096 * 64
DPDK_BASE_MIB = 512


@dataclass
class NumaPlan:
    """What one NUMA node gives to whom."""

    node: int
    host_cpus: list[int] = field(default_factory=list)
    pmd_cpus: list[int] = field(default_factory=list)
    guest_cpus: list[int] = field(default_factory=list)
    offline_cpus: list[int] = field(default_factory=list)
    memory_mib: int | None = None
    hugepages: int = 0
    dpdk_socket_mib: int = 0
    dpdk_reserved_pages: int = 0
    vfs: int = 0


@dataclass
class VfPlan:
    """The SR-IOV virtual functions planned on one NIC and how Nova exposes them."""
    nic: str
    pci_address: str | None
    numa_node: int | None
    vfs: int
    max_vfs: int
    physical_network: str
    vendor_id: str | None
    vf_device_id: str | None
    trusted: bool = False


@dataclass
class ProfilePlan:
    """The exact, per-node result. ``to_dict`` is the JSON/YAML contract."""

    node: str
    profile: str
    facts_source: str
    cpu_vendor: str | None
    numa: list[NumaPlan]
    host_cpus: str
    isolated_cpus: str
    pmd_cpus: str
    offline_cpus: str
    hugepage_size: str | None
    kernel_args: list[str]
    tuned: dict[str, Any]
    nova: dict[str, Any]
    flavor_extra_specs: dict[str, str]
    vfs: list[VfPlan]
    dpdk: dict[str, Any]
    bios_intent: dict[str, Any]
    workload: dict[str, Any] | None
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as a plain dict for the store and renderers."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfilePlan:
        """The inverse of :meth:`to_dict` (plans kept in the store)."""
        return cls(**{**data, "numa": [NumaPlan(**p) for p in data["numa"]],
                      "vfs": [VfPlan(**v) for v in data["vfs"]]})


def derive(topo: Topology, profile: Profile, node: str = "node") -> ProfilePlan:
    """Plan ``profile`` for ``topo``.

    Raises:
        FactsIncomplete: the facts lack CPU ids, memory per node or NIC placement that
            this profile needs.
        ProfileUnsatisfiable: the hardware cannot honour the profile; the message says
            what is needed where and what is there.
    """
    return _Deriver(topo, profile, node).run()


class _Deriver:
    def __init__(self, topo: Topology, profile: Profile, node: str) -> None:
        self.t, self.p, self.node = topo, profile, node
        self.notes: list[str] = []

    def fail(self, need: str, have: str) -> ProfileUnsatisfiable:
        """Return the error saying the profile needs ``need`` where the node has ``have``."""
        return ProfileUnsatisfiable(node=self.node, need=need, have=have)

    # --- facts ---------------------------------------------------------------------------

    def _check_facts(self) -> None:
        if not self.t.online():
            raise FactsIncomplete(
                node=self.node,
                reason=f"facts from {self.t.source} lack CPU ids and thread siblings (a BMC "
                       "never reports them); collect in-band facts with `metalctl profile "
                       "facts NODE --ssh HOST` or from Ironic inspection data")
        if self.p.get("hugepages") and any(self.t.node(n).memory_mib is None
                                           for n in self.t.node_ids()):
            raise FactsIncomplete(node=self.node,
                                  reason=f"facts from {self.t.source} lack memory per NUMA "
                                         "node, which per-node hugepages need")

    def _nic_node(self, nic: Nic, why: str) -> int:
        if nic.numa_node is not None:
            return nic.numa_node
        nodes = self.t.node_ids()
        if len(nodes) == 1:
            return nodes[0]  # one node: the only place the NIC can be
        raise FactsIncomplete(node=self.node,
                              reason=f"NUMA node of NIC {nic.name} unknown ({why} needs it)")

    # --- NIC selection -------------------------------------------------------------------

    def _select(self, section: str) -> list[tuple[Nic, dict[str, Any]]]:
        chosen: list[tuple[Nic, dict[str, Any]]] = []
        for i, rule in enumerate(self.p.get(f"{section}.nics") or []):
            hits = [n for n in self.t.nics if _matches(n, rule["match"])]
            if not hits:
                have = ", ".join(f"{n.name} ({n.driver}, {n.speed_mbps or '?'} Mb/s)"
                                 for n in self.t.nics) or "no NICs"
                raise self.fail(f"a NIC matching {section}.nics[{i}].match {rule['match']}",
                                f"it has {have}")
            chosen.extend((n, rule) for n in hits)
        return chosen

    # --- CPUs ----------------------------------------------------------------------------

    def _cores(self) -> tuple[dict[int, list[tuple[int, ...]]], list[int]]:
        """Usable cores per node, and CPUs offlined for hyperthreading=false."""
        ht = self.p.get("cpu.hyperthreading", True)
        per_node: dict[int, list[tuple[int, ...]]] = {}
        offline: list[int] = []
        for n in self.t.node_ids():
            cores = self.t.cores(n)
            if not ht:
                offline.extend(t for c in cores for t in c[1:])
                cores = [c[:1] for c in cores]
            per_node[n] = cores
        if not ht and offline:
            self.notes.append("hyperthreading off: sibling threads are listed as offline; "
                              "after the BIOS change re-collect facts and re-derive, since "
                              "CPU numbering can change")
        return per_node, offline

    def run(self) -> ProfilePlan:
        """Derive the plan: NIC selection, CPU split, hugepages, kernel args and Nova options.

        Raises:
            FactsIncomplete: the facts lack what derivation needs.
            ProfileUnsatisfiable: the node's topology cannot satisfy the profile.
        """
        self._check_facts()
        sriov = self._select("sriov")
        dpdk = self._select("dpdk")
        both = {n.name for n, _ in sriov} & {n.name for n, _ in dpdk}
        if both:
            raise self.fail("separate NICs for SR-IOV and DPDK",
                            f"{', '.join(sorted(both))} matched by both")
        cores, offline = self._cores()
        dpdk_nodes = {self._nic_node(n, "DPDK") for n, _ in dpdk}
        claimed = {n.name for n, _ in sriov} | {n.name for n, _ in dpdk}
        host_nic_nodes = {n.numa_node for n in self.t.nics
                          if n.name not in claimed and n.numa_node is not None}
        offline_set = set(offline)
        plans = {n: NumaPlan(node=n, offline_cpus=sorted(t for c in self.t.cores(n)
                                                         for t in c if t in offline_set),
                             memory_mib=self.t.node(n).memory_mib)
                 for n in self.t.node_ids()}
        host_per = self.p.get("cpu.host_cores_per_numa", 1)
        near = self.p.get("cpu.host_cores_near_host_nics", 0)
        for n, node_cores in cores.items():
            want_host = host_per + (near if n in host_nic_nodes else 0)
            want_pmd = 0
            if dpdk:
                want_pmd = self.p.get("cpu.pmd_cores_per_numa_with_nic", 0) if n in dpdk_nodes \
                    else self.p.get("cpu.pmd_cores_per_other_numa", 0)
            if len(node_cores) < want_host + want_pmd + 1:
                what = f"{want_host} host" + (f" + {want_pmd} PMD" if want_pmd else "")
                raise self.fail(f"{what} cores and at least 1 guest core on NUMA node {n}",
                                f"it has {len(node_cores)} usable core(s) there")
            # lowest cores first: the core holding the node's lowest thread (CPU 0 on
            # node 0, which keeps non-movable kernel work) stays with the host
            plans[n].host_cpus = sorted(t for c in node_cores[:want_host] for t in c)
            plans[n].pmd_cpus = sorted(t for c in node_cores[want_host:want_host + want_pmd]
                                       for t in c)
            plans[n].guest_cpus = sorted(t for c in node_cores[want_host + want_pmd:] for t in c)
        self._memory(plans, dpdk)
        vfs = self._vfs(sriov, plans)
        host = sorted(t for p in plans.values() for t in p.host_cpus)
        pmd = sorted(t for p in plans.values() for t in p.pmd_cpus)
        guest = sorted(t for p in plans.values() for t in p.guest_cpus)
        isolation = self.p.get("cpu.isolation", "none")
        isolated = sorted(pmd + guest) if isolation != "none" else []
        size = self.p.get("hugepages.size")
        workload = self._workload(plans, vfs)
        return ProfilePlan(
            node=self.node, profile=self.p.name, facts_source=self.t.source,
            cpu_vendor=self.t.cpu_vendor, numa=[plans[n] for n in sorted(plans)],
            host_cpus=cpulist.format(host), isolated_cpus=cpulist.format(isolated),
            pmd_cpus=cpulist.format(pmd), offline_cpus=cpulist.format(offline),
            hugepage_size=size,
            kernel_args=self._kernel_args(plans, isolated, host, offline),
            tuned=self._tuned(isolated), nova=self._nova(plans, host, guest, vfs),
            flavor_extra_specs=self._flavor(vfs), vfs=vfs,
            dpdk=self._dpdk_out(plans, dpdk, pmd, host),
            bios_intent=bios_intent(self.p), workload=workload, notes=self.notes,
        )

    # --- memory --------------------------------------------------------------------------

    def _memory(self, plans: dict[int, NumaPlan], dpdk: list[tuple[Nic, dict[str, Any]]]) -> None:
        size = self.p.get("hugepages.size")
        keep = self.p.get("memory.host_reserved_mib_per_numa", 0)
        mtus: dict[int, set[int]] = {}
        for nic, rule in dpdk:
            mtus.setdefault(self._nic_node(nic, "DPDK"), set()).add(rule.get("mtu", 1500))
        for n, plan in plans.items():
            if dpdk:
                plan.dpdk_socket_mib = _socket_memory(
                    mtus.get(n, set()), self.p.get("dpdk.socket_memory_min_mib", 1024))
        if not size:
            if dpdk:
                raise self.fail("hugepages (OVS-DPDK allocates its socket memory from them)",
                                "the profile sets no hugepages.size")
            # without hugepages, only a node whose memory is known can be checked (the
            # BMC's partial view often lacks per-NUMA memory)
            if all(p.memory_mib is not None for p in plans.values()):
                self._host_reserved(plans, 0)
            return
        if size == "1G" and self.t.cpu_flags and "pdpe1gb" not in self.t.cpu_flags:
            raise self.fail("1G hugepages (CPU flag pdpe1gb)",
                            f"CPU {self.t.cpu_model or '?'} lacks pdpe1gb; use size 2M")
        page = PAGE_MIB[size]
        for n, plan in plans.items():
            total = plan.memory_mib or 0
            if total < keep:
                raise self.fail(f"{keep} MiB kept for the host on NUMA node {n} "
                                "(memory.host_reserved_mib_per_numa)",
                                f"the node has {total} MiB")
            free = total - keep
            exact = self.p.get("hugepages.gib_per_numa")
            exact_mib = exact * 1024 if exact else self.p.get("hugepages.mib_per_numa")
            if exact_mib:
                if exact_mib % page:
                    raise self.fail(f"hugepages.mib_per_numa in whole {size} pages",
                                    f"{exact_mib} MiB is not a multiple of {page} MiB")
                what = f"{exact} GiB" if exact else f"{exact_mib} MiB"
                if exact_mib > free:
                    raise self.fail(f"{what} of {size} pages on NUMA node {n}",
                                    f"{free / 1024:.0f} GiB free there after the host's "
                                    f"{keep} MiB" if exact else
                                    f"{free} MiB free there after the host's {keep} MiB")
                plan.hugepages = exact_mib // page
            else:
                plan.hugepages = int(free * self.p.get("hugepages.percent_per_numa") / 100) // page
            if plan.dpdk_socket_mib:
                plan.dpdk_reserved_pages = math.ceil(plan.dpdk_socket_mib / page)
                if plan.dpdk_reserved_pages > plan.hugepages:
                    raise self.fail(f"{plan.dpdk_socket_mib} MiB of DPDK socket memory in "
                                    f"{size} pages on NUMA node {n}",
                                    f"{plan.hugepages} page(s) planned there")
        self._host_reserved(plans, page)

    def _host_reserved(self, plans: dict[int, NumaPlan], page: int) -> None:
        """Nova's reserved_host_memory_mb must fit in the memory outside hugepages."""
        small = sum((p.memory_mib or 0) - p.hugepages * page for p in plans.values())
        reserved = self.p.get("memory.host_reserved_mib", 0)
        if reserved > small:
            raise self.fail(f"{reserved} MiB of small-page memory for the host "
                            "(memory.host_reserved_mib)",
                            f"{small} MiB are left outside hugepages")

    # --- SR-IOV --------------------------------------------------------------------------

    def _vfs(self, sriov: list[tuple[Nic, dict[str, Any]]],
             plans: dict[int, NumaPlan]) -> list[VfPlan]:
        out = []
        for nic, rule in sriov:
            if nic.max_vfs is None:
                raise FactsIncomplete(node=self.node,
                                      reason=f"maximum VFs of NIC {nic.name} unknown")
            if nic.max_vfs == 0:
                raise self.fail(f"SR-IOV on NIC {nic.name}",
                                "it has no SR-IOV capability (sriov_totalvfs absent)")
            want = nic.max_vfs if rule["vfs"] == "max" else rule["vfs"]
            if want > nic.max_vfs:
                raise self.fail(f"{want} VFs on NIC {nic.name}",
                                f"it supports at most {nic.max_vfs}")
            node = self._nic_node(nic, "SR-IOV NUMA affinity")
            plans[node].vfs += want
            out.append(VfPlan(nic=nic.name, pci_address=nic.pci_address, numa_node=node,
                              vfs=want, max_vfs=nic.max_vfs,
                              physical_network=rule["physical_network"],
                              vendor_id=nic.vendor_id, vf_device_id=nic.vf_device_id,
                              trusted=bool(rule.get("trusted", False))))
        return out

    # --- renderings ----------------------------------------------------------------------

    def _kernel_args(self, plans: dict[int, NumaPlan], isolated: list[int],
                     host: list[int], offline: list[int]) -> list[str]:
        args: list[str] = []
        if self.p.get("kernel.iommu"):
            if self.t.cpu_vendor == "amd":
                # AMD-Vi is on whenever firmware enables it; amd_iommu=on is not a
                # documented value. Passthrough mode is what matters for host DMA.
                args.append("iommu=pt")
            else:
                args += ["intel_iommu=on", "iommu=pt"]
        size = self.p.get("hugepages.size")
        if size:
            default = self.p.get("hugepages.default_size", size)
            if default != size:
                self.notes.append(f"default_hugepagesz={default} but only {size} pages are "
                                  "reserved: the default pool starts empty")
            args.append(f"default_hugepagesz={default}")
            args.append(f"hugepagesz={size}")
            counts = [plans[n].hugepages for n in sorted(plans)]
            if len(set(counts)) == 1:
                # equal per node: the kernel's even split gives exactly this everywhere
                args.append(f"hugepages={sum(counts)}")
            else:
                args.append("hugepages=" + ",".join(f"{n}:{plans[n].hugepages}"
                                                    for n in sorted(plans)))
                self.notes.append("per-node hugepages on the command line need Linux >= 5.16 "
                                  "(or a vendor backport); otherwise apply the per-node sysfs "
                                  "counts at boot before libvirt starts")
        if offline:
            args.append("nosmt")
        isolation = self.p.get("cpu.isolation", "none")
        iso = cpulist.format(isolated)
        if isolation == "kernel" and iso:
            args += [f"isolcpus=managed_irq,domain,{iso}", f"nohz_full={iso}",
                     f"rcu_nocbs={iso}", f"irqaffinity={cpulist.format(host)}"]
        if self.p.get("kernel.low_latency") and iso:
            if isolation != "kernel":
                args += [f"nohz_full={iso}", f"rcu_nocbs={iso}"]
            args += ["tsc=nowatchdog", "nosoftlockup", "nmi_watchdog=0", "skew_tick=1"]
        args += list(self.p.get("kernel.extra_args") or [])
        return args

    def _tuned(self, isolated: list[int]) -> dict[str, Any]:
        profile = self.p.get("kernel.tuned_profile")
        out: dict[str, Any] = {"profile": profile}
        if profile == "cpu-partitioning":
            if not isolated:
                # tuned #294: an empty isolated_cores yields a bare "isolcpus="
                raise self.fail("isolated CPUs for tuned cpu-partitioning",
                                "the profile isolates none (cpu.isolation is none)")
            out["variables_file"] = "/etc/tuned/cpu-partitioning-variables.conf"
            out["variables"] = {"isolated_cores": cpulist.format(isolated)}
            self.notes.append("tuned cpu-partitioning adds nohz=on, nohz_full and rcu_nocbs "
                              "for isolated_cores to the boot command line itself")
        return out

    def _nova(self, plans: dict[int, NumaPlan], host: list[int], guest: list[int],
              vfs: list[VfPlan]) -> dict[str, Any]:
        compute: dict[str, str] = {}
        if self.p.get("cpu.guest_cpus", "shared") == "dedicated":
            compute["cpu_dedicated_set"] = cpulist.format(guest)
            # emulator threads (hw:emulator_threads_policy=share) run on the host cores
            compute["cpu_shared_set"] = cpulist.format(host)
        else:
            compute["cpu_shared_set"] = cpulist.format(guest)
        default: dict[str, Any] = {
            "reserved_host_memory_mb": self.p.get("memory.host_reserved_mib", 512)}
        size = self.p.get("hugepages.size")
        reserved_pages = [f"node:{p.node},size:{PAGE_KIB[size]},count:{p.dpdk_reserved_pages}"
                          for p in plans.values() if size and p.dpdk_reserved_pages]
        if reserved_pages:
            # a MultiOpt of [DEFAULT], not [compute]
            default["reserved_huge_pages"] = reserved_pages
        out: dict[str, Any] = {"DEFAULT": default, "compute": compute}
        if vfs:
            specs = []
            for v in vfs:
                spec: dict[str, str] = {"physical_network": v.physical_network}
                # a PF's address (or name) matches every VF under it
                if v.pci_address and v.pci_address.count(":") == 2:
                    spec["address"] = v.pci_address
                else:
                    spec["devname"] = v.nic
                if v.trusted:
                    spec["trusted"] = "true"
                specs.append(spec)
            aliases: dict[str, dict[str, str]] = {}
            for v in vfs:
                if not (v.vendor_id and v.vf_device_id):
                    continue
                name = f"{v.physical_network}-{v.vendor_id}-{v.vf_device_id}"
                aliases[name] = {"name": name, "device_type": "type-VF",
                                 "vendor_id": v.vendor_id, "product_id": v.vf_device_id,
                                 "numa_policy": self.p.get("nova.pci_numa_policy", "required")}
            out["pci"] = {"device_spec": specs, "alias": list(aliases.values())}
        return out

    def _flavor(self, vfs: list[VfPlan]) -> dict[str, str]:
        specs: dict[str, str] = {}
        if self.p.get("cpu.guest_cpus", "shared") == "dedicated":
            specs["hw:cpu_policy"] = "dedicated"
            specs["hw:cpu_thread_policy"] = "prefer" if self.p.get("cpu.hyperthreading", True) \
                else "isolate"
            specs["hw:emulator_threads_policy"] = "share"
        else:
            specs["hw:cpu_policy"] = "shared"
        if self.p.get("hugepages.size"):
            specs["hw:mem_page_size"] = NOVA_PAGE[self.p.get("hugepages.size")]
        specs["hw:numa_nodes"] = str(self.p.get("workload.numa_nodes", 1))
        if vfs:
            specs["hw:pci_numa_affinity_policy"] = self.p.get("nova.pci_numa_policy", "required")
        specs.update(self.p.get("nova.flavor_extra_specs") or {})
        return specs

    def _dpdk_out(self, plans: dict[int, NumaPlan], dpdk: list[tuple[Nic, dict[str, Any]]],
                  pmd: list[int], host: list[int]) -> dict[str, Any]:
        if not dpdk:
            return {}
        return {
            "nics": [{"nic": n.name, "numa_node": self._nic_node(n, "DPDK"),
                      "mtu": r.get("mtu", 1500)} for n, r in dpdk],
            "pmd_cpus": cpulist.format(pmd),
            "lcore_cpus": cpulist.format(host),  # OvsDpdkCoreList = host CPUs (TripleO)
            "socket_mem": ",".join(str(plans[n].dpdk_socket_mib) for n in sorted(plans)),
        }

    def _workload(self, plans: dict[int, NumaPlan], vfs: list[VfPlan]) -> dict[str, Any] | None:
        w = self.p.get("workload")
        if not w:
            return None
        span = w.get("numa_nodes", 1)
        nodes = sorted(plans)
        if span > len(nodes):
            raise self.fail(f"a guest spread over {span} NUMA nodes",
                            f"the host has {len(nodes)}")
        size = self.p.get("hugepages.size")
        page = PAGE_MIB[size] if size else None
        per = {"vcpus": math.ceil(w["vcpus"] / span),
               "memory_mib": math.ceil(w.get("memory_gib", 0) * 1024 / span),
               "vfs": math.ceil(w.get("vfs", 0) / span)}
        fits: dict[int, int] = {}
        lacking: dict[int, str] = {}
        for n in nodes:
            p = plans[n]
            limits = [len(p.guest_cpus) // per["vcpus"]]
            if per["memory_mib"] and page:
                free_mib = (p.hugepages - p.dpdk_reserved_pages) * page
                limits.append(free_mib // per["memory_mib"])
                if free_mib < per["memory_mib"]:
                    lacking[n] = (f"{free_mib // 1024} GiB of {size} pages for guests")
            if per["vfs"]:
                limits.append(p.vfs // per["vfs"])
                if p.vfs < per["vfs"]:
                    lacking[n] = f"{p.vfs} VFs on its NICs"
            if len(p.guest_cpus) < per["vcpus"]:
                lacking[n] = f"{len(p.guest_cpus)} guest CPUs"
            fits[n] = max(min(limits), 0)
        # a guest spans `span` nodes, each contributing its share
        capacity = sum(sorted(fits.values(), reverse=True)[:span]) // span if span > 1 \
            else sum(fits.values())
        if capacity == 0:
            need = (f"{per['vcpus']} guest CPUs" + (f", {per['memory_mib'] // 1024} GiB of "
                                                    f"{size} pages" if per["memory_mib"] else "")
                    + (f" and {per['vfs']} VFs" if per["vfs"] else "")
                    + f" on each of {span} NUMA node(s) for the workload")
            have = "; ".join(f"node {n} has {why}" for n, why in sorted(lacking.items()))
            raise self.fail(need, have or "no node fits")
        return {"request": w, "per_numa_node": per, "guests_per_node": fits,
                "guests_per_host": capacity}


def bios_intent(profile: Profile) -> dict[str, Any]:
    """The profile's vendor-neutral BIOS intent, completed from what the rest of it needs
    (SMT from cpu.hyperthreading, SR-IOV when VFs are asked for, VT-d with the IOMMU);
    needs no topology."""
    intent = dict(profile.get("bios") or {})
    if profile.get("cpu.hyperthreading") is not None:
        intent.setdefault("hyperthreading", profile.get("cpu.hyperthreading"))
    if profile.get("sriov.nics"):
        intent.setdefault("sriov", True)
    if profile.get("kernel.iommu"):
        intent.setdefault("vtd", True)
    return intent


def _matches(nic: Nic, match: dict[str, Any]) -> bool:
    for key, want in match.items():
        if key == "name":
            if not fnmatch.fnmatch(nic.name, want):
                return False
        elif key in ("vendor_id", "device_id"):
            if (getattr(nic, key) or "").lower() != str(want).lower():
                return False
        elif key == "min_speed_mbps":
            if not nic.speed_mbps or nic.speed_mbps < want:
                return False
        elif getattr(nic, key) != want:
            return False
    return True


def _socket_memory(mtus: set[int], minimum: int) -> int:
    """TripleO's OvsDpdkSocketMemory for one node, in MiB (rounded up to whole GiB)."""
    if not mtus:
        mib = minimum
    else:
        mib = sum((math.ceil(m / 1024) * 1024 + DPDK_OVERHEAD) * DPDK_BUFFERS_BYTES / 2**20
                  for m in mtus) + DPDK_BASE_MIB
    return math.ceil(mib / 1024) * 1024 if mib else 0


@dataclass
class PlanCheck:
    """One comparison of the plan against a live host.

    ``pending``: not judged yet: only a boot with the plan's kernel arguments can pass
    it, and the host was installed before its plan existed (``ok`` stays False).
    """

    check: str
    expected: str
    actual: str
    ok: bool
    pending: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The run report's row: ``ok`` is None while ``pending``."""
        return {"name": self.check, "want": self.expected, "got": self.actual,
                "ok": None if self.pending else self.ok}


#: checks only a boot with the plan's kernel arguments passes (see PlanCheck.pending)
BOOT_CHECKS = ("kernel argument ", "isolated CPUs", "tuned isolated_cores")


def compare(plan: ProfilePlan, live: Topology, profile: Profile) -> list[PlanCheck]:
    """Re-derive on the live host's facts and compare with what was planned and with
    what the host actually runs (nfv-tempest-plugin's validation pattern, per node).

    A different re-derivation means the topology changed since planning (an SMT or
    sub-NUMA BIOS change renumbers CPUs): the plan must be re-derived, not applied.
    """
    checks: list[PlanCheck] = []
    try:
        again = derive(live, profile, plan.node)
        for key in ("host_cpus", "isolated_cpus", "pmd_cpus"):
            want, got = getattr(plan, key), getattr(again, key)
            checks.append(PlanCheck(f"re-derived {key}", want, got, want == got))
    except (ProfileUnsatisfiable, FactsIncomplete) as exc:
        checks.append(PlanCheck("re-derivation", "succeeds", str(exc), False))
    cmdline = (live.cmdline or "").split()
    for arg in plan.kernel_args:
        checks.append(PlanCheck(f"kernel argument {arg.split('=')[0]}", arg,
                            next((a for a in cmdline if a.split("=")[0] == arg.split("=")[0]),
                                 "absent"), arg in cmdline))
    isolation = profile.get("cpu.isolation", "none")
    if isolation == "kernel":
        checks.append(PlanCheck("isolated CPUs (/sys/devices/system/cpu/isolated)",
                            plan.isolated_cpus, live.isolated or "", _same_cpus(
                                plan.isolated_cpus, live.isolated or "")))
    elif isolation == "tuned" and plan.isolated_cpus:
        nohz = next((a.split("=", 1)[1] for a in cmdline if a.startswith("nohz_full=")), "")
        checks.append(PlanCheck("tuned isolated_cores (nohz_full on the command line)",
                            plan.isolated_cpus, nohz or "absent",
                            _same_cpus(plan.isolated_cpus, nohz)))
    if plan.hugepage_size:
        kib = PAGE_KIB[plan.hugepage_size]
        for p in plan.numa:
            have = live.node(p.node).hugepages.get(kib, 0)
            checks.append(PlanCheck(f"{plan.hugepage_size} hugepages on NUMA node {p.node}",
                                str(p.hugepages), str(have), have == p.hugepages))
    live_nics = {n.name: n for n in live.nics}
    for v in plan.vfs:
        nic = live_nics.get(v.nic)
        have = str(nic.current_vfs) if nic and nic.current_vfs is not None else "absent"
        checks.append(PlanCheck(f"VFs on {v.nic}", str(v.vfs), have, have == str(v.vfs)))
    return checks


def _same_cpus(a: str, b: str) -> bool:
    try:
        return cpulist.parse(a) == cpulist.parse(b)
    except ValueError:
        return False
